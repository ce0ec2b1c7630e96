"""Arabic counted nouns and times: table-driven, no clock, no Flask."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from web import arabic_time as at

UTC = timezone.utc
NOW = datetime(2018, 3, 13, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("n, expected", [
    (1, "مصدر"),
    (2, "مصدران"),
    (3, "٣ مصادر"),
    (4, "٤ مصادر"),
    (10, "١٠ مصادر"),
    (11, "١١ مصدرًا"),
    (25, "٢٥ مصدرًا"),
    (99, "٩٩ مصدرًا"),
    (100, "١٠٠ مصدر"),
    (101, "١٠١ مصدر"),
    (102, "١٠٢ مصدر"),
    (103, "١٠٣ مصادر"),
    (111, "١١١ مصدرًا"),
    (200, "٢٠٠ مصدر"),
    (0, "٠ مصادر"),
])
def test_source_counts(n, expected):
    assert at.count(n, at.SOURCE) == expected


@pytest.mark.parametrize("n, expected", [
    (1, "+مصدر"), (2, "+مصدران"), (4, "+٤ مصادر"), (11, "+١١ مصدرًا"),
])
def test_more_sources_badge(n, expected):
    assert at.more_sources(n) == expected


def test_latin_digits():
    assert at.count(4, at.SOURCE, digits="latin") == "4 مصادر"
    assert at.count(11, at.SOURCE, digits="latin") == "11 مصدرًا"
    assert at.relative(NOW - timedelta(minutes=5), NOW, digits="latin") == "منذ 5 دقائق"


@pytest.mark.parametrize("n, cat", [
    (0, "zero"), (1, "one"), (2, "two"), (3, "few"), (10, "few"), (11, "many"), (99, "many"),
    (100, "other"), (102, "other"), (103, "few"), (1000, "other"), (1011, "many"),
])
def test_plural_categories(n, cat):
    assert at.plural_category(n) == cat


@pytest.mark.parametrize("ago, expected", [
    (timedelta(seconds=0), "الآن"),
    (timedelta(seconds=30), "الآن"),
    (timedelta(seconds=50), "منذ أقل من دقيقة"),
    (timedelta(seconds=60), "منذ دقيقة"),
    (timedelta(seconds=119), "منذ دقيقة"),
    (timedelta(minutes=2), "منذ دقيقتين"),
    (timedelta(minutes=3), "منذ ٣ دقائق"),
    (timedelta(minutes=5), "منذ ٥ دقائق"),
    (timedelta(minutes=10), "منذ ١٠ دقائق"),
    (timedelta(minutes=11), "منذ ١١ دقيقة"),
    (timedelta(minutes=59), "منذ ٥٩ دقيقة"),
    (timedelta(hours=1), "منذ ساعة"),
    (timedelta(hours=2), "منذ ساعتين"),
    (timedelta(hours=3), "منذ ٣ ساعات"),
    (timedelta(hours=11), "منذ ١١ ساعة"),
    (timedelta(hours=23, minutes=59), "منذ ٢٣ ساعة"),
    (timedelta(days=1), "منذ يوم"),
    (timedelta(days=2), "منذ يومين"),
    (timedelta(days=6), "منذ ٦ أيام"),
    (timedelta(days=7), "منذ أسبوع"),
    (timedelta(days=14), "منذ أسبوعين"),
    (timedelta(days=21), "منذ ٣ أسابيع"),
    (timedelta(days=60), "منذ شهرين"),
    (timedelta(days=150), "منذ ٥ أشهر"),
    (timedelta(days=365), "منذ سنة"),
    (timedelta(days=730), "منذ سنتين"),
    (timedelta(days=365 * 8 + 2), "منذ ٨ سنوات"),
    (timedelta(days=365 * 11 + 3), "منذ ١١ سنة"),
    # feed clocks run ahead: a minute in the future is "now", an hour is "in an hour"
    (timedelta(seconds=-60), "الآن"),
    (timedelta(hours=-1), "بعد ساعة"),
    (timedelta(hours=-3), "بعد ٣ ساعات"),
])
def test_relative(ago, expected):
    assert at.relative(NOW - ago, NOW) == expected


@pytest.mark.parametrize("ahead, expected", [
    (timedelta(seconds=-30), "الآن"),  # due (overdue)
    (timedelta(seconds=0), "الآن"),
    (timedelta(seconds=1), "بعد ثانية"),
    (timedelta(seconds=2), "بعد ثانيتين"),
    (timedelta(seconds=40), "بعد ٤٠ ثانية"),
    (timedelta(seconds=90), "بعد دقيقة"),  # relative() says "now" here: feed clocks skew
    (timedelta(minutes=2), "بعد دقيقتين"),
    (timedelta(minutes=7), "بعد ٧ دقائق"),
    (timedelta(hours=3), "بعد ٣ ساعات"),
])
def test_until_a_scheduled_time(ahead, expected):
    assert at.until(NOW + ahead, NOW) == expected


def test_relative_compares_instants_not_wall_clocks():
    riyadh = NOW.astimezone(at.zone("Asia/Riyadh"))
    assert at.relative(riyadh - timedelta(hours=2), NOW) == "منذ ساعتين"


@pytest.mark.parametrize("when, tz, heading", [
    # 2018-03-13 is a Tuesday
    (datetime(2018, 3, 13, 8, 30, tzinfo=UTC), "Asia/Riyadh", "الثلاثاء ١٣ مارس ٢٠١٨"),
    # 23:43 UTC is already Wednesday in Riyadh (UTC+3) but still Tuesday in Casablanca
    (datetime(2018, 3, 13, 23, 43, tzinfo=UTC), "Asia/Riyadh", "الأربعاء ١٤ مارس ٢٠١٨"),
    (datetime(2018, 3, 13, 23, 43, tzinfo=UTC), "Africa/Casablanca", "الثلاثاء ١٣ مارس ٢٠١٨"),
    (datetime(2018, 3, 11, 12, 0, tzinfo=UTC), "UTC", "الأحد ١١ مارس ٢٠١٨"),
])
def test_day_heading(when, tz, heading):
    assert at.day_heading(when, tz) == heading


@pytest.mark.parametrize("when,tz,digits,expected", [
    # Eid al-Adha 1439 and the Hijri new year 1440, as Saudi Arabia announced them
    (datetime(2018, 8, 21, 9, 0, tzinfo=UTC), "Asia/Riyadh", "arabic", "١٠ ذو الحجة ١٤٣٩ هـ"),
    (datetime(2018, 9, 11, 9, 0, tzinfo=UTC), "Asia/Riyadh", "arabic", "١ محرم ١٤٤٠ هـ"),
    # the Hijri day follows the display timezone's calendar day, as the heading does
    (datetime(2018, 3, 13, 23, 43, tzinfo=UTC), "Asia/Riyadh", "latin", "26 جمادى الآخرة 1439 هـ"),
    (datetime(2018, 3, 13, 23, 43, tzinfo=UTC), "Africa/Casablanca", "latin",
     "25 جمادى الآخرة 1439 هـ"),
    # outside the Umm al-Qura table: nothing rather than a guess
    (datetime(1900, 1, 1, tzinfo=UTC), "UTC", "arabic", None),
])
def test_hijri_day_by_umm_al_qura(when, tz, digits, expected):
    assert at.hijri_day(when, tz, digits) == expected


def test_levantine_months_and_latin_digits():
    when = datetime(2018, 3, 13, 8, 30, tzinfo=UTC)
    assert at.day_heading(when, "Asia/Beirut", digits="latin", months="levantine") == \
        "الثلاثاء 13 آذار 2018"


def test_clock_and_absolute_in_display_timezone():
    when = datetime(2018, 3, 13, 10, 5, tzinfo=UTC)
    assert at.clock(when, "Asia/Riyadh") == "١٣:٠٥"
    assert at.absolute(when, "Asia/Riyadh") == "١٣ مارس ٢٠١٨، ١٣:٠٥"
    assert at.clock(when, "Asia/Riyadh", digits="latin") == "13:05"
    assert at.day_key(datetime(2018, 3, 13, 22, 0, tzinfo=UTC), "Asia/Riyadh") == "2018-03-14"
    assert at.iso(when) == "2018-03-13T10:05:00Z"


SUMMER = datetime(2018, 7, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("name, when, digits, expected", [
    ("Asia/Riyadh", NOW, "arabic", "الرياض (غرينتش+٣)"),
    (None, NOW, "arabic", "الرياض (غرينتش+٣)"),  # the default zone
    ("Asia/Riyadh", NOW, "latin", "الرياض (غرينتش+3)"),
    ("Asia/Beirut", NOW, "arabic", "بيروت (غرينتش+٢)"),
    ("Asia/Beirut", SUMMER, "arabic", "بيروت (غرينتش+٣)"),  # summer time in force
    ("Asia/Tehran", NOW, "arabic", "طهران (غرينتش+٣:٣٠)"),
    ("Africa/Casablanca", NOW, "latin", "الدار البيضاء (غرينتش+0)"),
    ("America/New_York", NOW, "latin", "America/New_York (غرينتش-4)"),  # no Arabic city here
    ("UTC", NOW, "arabic", "غرينتش"),
])
def test_zone_label(name, when, digits, expected):
    assert at.zone_label(name, when, digits) == expected


def test_every_zone_city_is_a_zone():
    for name in at.ZONE_CITIES:
        at.zone(name)  # raises for a misspelt IANA name


def test_every_unit_has_all_forms():
    for noun in (at.SOURCE, at.MINUTE, at.HOUR, at.DAY, at.WEEK, at.MONTH, at.YEAR, at.STORY):
        for n in (1, 2, 3, 11, 100):
            assert at.count(n, noun).strip()


@pytest.mark.parametrize("n, expected", [
    (1, "أول مرة"), (2, "مرتان متتاليتان"), (3, "٣ مرات متتالية"), (10, "١٠ مرات متتالية"),
    (11, "١١ مرة متتالية"), (100, "١٠٠ مرة متتالية"), (103, "١٠٣ مرات متتالية"),
])
def test_failures_in_a_row(n, expected):
    assert at.in_a_row(n) == expected


@pytest.mark.parametrize("ms, digits, expected", [
    (3, "arabic", "٣ ميلي ثانية"), (2.6, "arabic", "٣ ميلي ثانية"), (999, "arabic", "٩٩٩ ميلي ثانية"),
    (999.6, "arabic", "١٫٠ ثانية"),
    (1000, "arabic", "١٫٠ ثانية"), (1240, "arabic", "١٫٢ ثانية"), (20000, "latin", "20.0 ثانية"),
    (45, "latin", "45 ميلي ثانية"),
])
def test_duration_ms(ms, digits, expected):
    assert at.duration_ms(ms, digits) == expected
