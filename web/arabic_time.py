"""Arabic display of numbers, counted nouns and times. Pure functions: no Flask, no clock.

Digits: "arabic" (Arabic-Indic ٠١٢٣٤٥٦٧٨٩, the default: what Gulf and Levant news sites
print, and what the reader of an Arabic page expects) or "latin" (0-9, as Maghreb sites and
some Egyptian ones print). The app reads AGG_DIGITS; every function here takes `digits`.

Counted nouns follow the Arabic rules (CLDR's plural categories for "ar"):
  1        the noun alone            مصدر، منذ دقيقة
  2        the dual, no numeral      مصدران (nominative), منذ دقيقتين (genitive after منذ)
  3–10     numeral + broken plural   ٣ مصادر، منذ ٥ دقائق
  11–99    numeral + singular (acc.) ١١ مصدرًا، منذ ١٥ دقيقة
  100, 101, 102, 200 … (n % 100 in 0..2)  numeral + singular (gen.)  ١٠٠ مصدر
  and n % 100 in 3..10 / 11..99 above 100 behave like 3..10 / 11..99 (١٠٣ مصادر، ١١١ مصدرًا).
Zero is "لا <plural>" style or numeral + plural; we print "٠ مصادر" only where a count is
shown next to others and let callers avoid zero in prose.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo

from hijridate import Gregorian

ARABIC_INDIC = "٠١٢٣٤٥٦٧٨٩"
_TO_ARABIC = str.maketrans("0123456789", ARABIC_INDIC)

WEEKDAYS = ("الاثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة", "السبت", "الأحد")  # Monday=0

# Two month-name traditions are in everyday use; "gregorian" (يناير…) is read everywhere,
# "levantine" (كانون الثاني…) is what Syrian, Lebanese, Iraqi and Jordanian outlets print.
MONTHS = {
    "gregorian": ("يناير", "فبراير", "مارس", "أبريل", "مايو", "يونيو", "يوليو", "أغسطس",
                  "سبتمبر", "أكتوبر", "نوفمبر", "ديسمبر"),
    "levantine": ("كانون الثاني", "شباط", "آذار", "نيسان", "أيار", "حزيران", "تموز", "آب",
                  "أيلول", "تشرين الأول", "تشرين الثاني", "كانون الأول"),
}


def digits_of(text: str | int, digits: str = "arabic") -> str:
    """Western digits in `text` rendered in the chosen digit set."""
    text = str(text)
    return text.translate(_TO_ARABIC) if digits == "arabic" else text


@dataclass(frozen=True)
class Noun:
    """The forms an Arabic counted noun takes."""

    one: str  # مصدر
    two: str  # مصدران (nominative dual)
    two_gen: str  # مصدرين (genitive/accusative dual, after منذ)
    few: str  # مصادر (3–10)
    many: str  # مصدرًا (11–99, accusative singular)
    other: str  # مصدر (100, 101, 102…: genitive singular)


SOURCE = Noun("مصدر", "مصدران", "مصدرين", "مصادر", "مصدرًا", "مصدر")
REPORT = Noun("تقرير", "تقريران", "تقريرين", "تقارير", "تقريرًا", "تقرير")
STORY = Noun("قصة", "قصتان", "قصتين", "قصص", "قصة", "قصة")
ITEM = Noun("خبر", "خبران", "خبرين", "أخبار", "خبرًا", "خبر")
ERROR = Noun("خطأ", "خطآن", "خطأين", "أخطاء", "خطأً", "خطأ")
SECOND = Noun("ثانية", "ثانيتان", "ثانيتين", "ثوانٍ", "ثانية", "ثانية")
MINUTE = Noun("دقيقة", "دقيقتان", "دقيقتين", "دقائق", "دقيقة", "دقيقة")
HOUR = Noun("ساعة", "ساعتان", "ساعتين", "ساعات", "ساعة", "ساعة")
DAY = Noun("يوم", "يومان", "يومين", "أيام", "يومًا", "يوم")
WEEK = Noun("أسبوع", "أسبوعان", "أسبوعين", "أسابيع", "أسبوعًا", "أسبوع")
MONTH = Noun("شهر", "شهران", "شهرين", "أشهر", "شهرًا", "شهر")
YEAR = Noun("سنة", "سنتان", "سنتين", "سنوات", "سنة", "سنة")
TIMES = Noun("مرة", "مرتان", "مرتين", "مرات", "مرة", "مرة")


def plural_category(n: int) -> str:
    """CLDR plural category for Arabic: zero, one, two, few, many, other."""
    n = abs(int(n))
    if n == 0:
        return "zero"
    if n == 1:
        return "one"
    if n == 2:
        return "two"
    r = n % 100
    if 3 <= r <= 10:
        return "few"
    if 11 <= r <= 99:
        return "many"
    return "other"


def count(n: int, noun: Noun, digits: str = "arabic", genitive: bool = False) -> str:
    """'مصدر', 'مصدران', '٣ مصادر', '١١ مصدرًا', '١٠٠ مصدر'.

    1 and 2 carry no numeral: Arabic says the number with the noun's own form (one source,
    two sources); writing '١ مصدر' or '٢ مصدران' reads as machine text. `genitive` picks the
    dual's oblique form (after a preposition such as منذ).
    """
    cat = plural_category(n)
    if cat == "one":
        return noun.one
    if cat == "two":
        return noun.two_gen if genitive else noun.two
    num = digits_of(n, digits)
    if cat in ("zero", "few"):
        return f"{num} {noun.few}"
    if cat == "many":
        return f"{num} {noun.many}"
    return f"{num} {noun.other}"


def more_sources(n: int, digits: str = "arabic") -> str:
    """The badge after the outlets shown on a card: '+مصدر', '+مصدران', '+٤ مصادر'."""
    return "+" + count(n, SOURCE, digits)


def in_a_row(n: int, digits: str = "arabic") -> str:
    """Consecutive failures: 'أول مرة', 'مرتان متتاليتان', '٣ مرات متتالية', '١١ مرة متتالية'.

    The adjective agrees with the counted noun: dual with the dual, and the feminine singular
    that Arabic uses for a plural (or counted singular) of things."""
    if n == 1:
        return "أول مرة"
    if n == 2:
        return "مرتان متتاليتان"
    return f"{count(n, TIMES, digits)} متتالية"


def duration_ms(ms: float, digits: str = "arabic") -> str:
    """A response time: '٣ ميلي ثانية' below a second, '١٫٢ ثانية' from one on (the Arabic
    decimal separator with Arabic digits). 'ms' beside Arabic digits reads as a foreign
    token and, without an isolate, the bidi algorithm puts it before the number."""
    if round(ms) < 1000:
        return f"{digits_of(round(ms), digits)} ميلي ثانية"
    seconds = f"{ms / 1000:.1f}"
    if digits == "arabic":
        seconds = digits_of(seconds, digits).replace(".", "٫")
    return f"{seconds} ثانية"


def as_utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:  # stored times are UTC; a naive one is a bug upstream, not local time
        return dt.replace(tzinfo=timezone.utc)
    return dt


def relative(when: datetime, now: datetime, digits: str = "arabic") -> str:
    """'الآن', 'منذ دقيقة', 'منذ دقيقتين', 'منذ ٥ دقائق', 'منذ ١١ دقيقة', 'منذ ساعتين', …

    Minutes are floored (a report 119 s old is 'منذ دقيقة', as people count). A time a little
    in the future (feed clocks run ahead) reads 'الآن'; further ahead, 'بعد …'.
    """
    seconds = (as_utc(now) - as_utc(when)).total_seconds()
    prefix = "منذ"
    if seconds < 0:
        if seconds > -120:
            return "الآن"
        prefix, seconds = "بعد", -seconds
    if seconds < 45:
        return "الآن"
    if seconds < 60:
        return "منذ أقل من دقيقة" if prefix == "منذ" else "بعد أقل من دقيقة"
    minutes = int(seconds // 60)
    if minutes < 60:
        unit, n = MINUTE, minutes
    elif minutes < 24 * 60:
        unit, n = HOUR, minutes // 60
    elif minutes < 7 * 24 * 60:
        unit, n = DAY, minutes // (24 * 60)
    elif minutes < 30 * 24 * 60:
        unit, n = WEEK, minutes // (7 * 24 * 60)
    elif minutes < 365 * 24 * 60:
        unit, n = MONTH, minutes // (30 * 24 * 60)
    else:
        unit, n = YEAR, minutes // (365 * 24 * 60)
    return f"{prefix} {count(n, unit, digits, genitive=True)}"


def until(when: datetime, now: datetime, digits: str = "arabic") -> str:
    """A scheduled time (a next poll): 'الآن' when due, 'بعد ٤٠ ثانية', 'بعد دقيقة',
    'بعد ٣ ساعات'. Unlike relative() there is no slack for feed clocks running ahead: a
    poll 90 s away is not 'now'."""
    seconds = (as_utc(when) - as_utc(now)).total_seconds()
    if seconds < 1:
        return "الآن"
    if seconds < 60:
        return "بعد " + count(int(seconds), SECOND, digits, genitive=True)
    if seconds < 120:
        return "بعد " + count(1, MINUTE, digits, genitive=True)
    return relative(when, now, digits)


def zone(name: str | tzinfo | None) -> tzinfo:
    if isinstance(name, tzinfo):
        return name
    return ZoneInfo(name or "Asia/Riyadh")


def local(when: datetime, tz: str | tzinfo | None) -> datetime:
    return as_utc(when).astimezone(zone(tz))


def day_heading(when: datetime, tz: str | tzinfo | None, digits: str = "arabic",
                months: str = "gregorian") -> str:
    """'الثلاثاء ١٣ مارس ٢٠١٨' — the calendar day in the display timezone."""
    d = local(when, tz)
    month = MONTHS.get(months, MONTHS["gregorian"])[d.month - 1]
    return f"{WEEKDAYS[d.weekday()]} {digits_of(d.day, digits)} {month} {digits_of(d.year, digits)}"


def hijri_day(when: datetime, tz: str | tzinfo | None, digits: str = "arabic") -> str | None:
    """'٢٢ محرم ١٤٤٠ هـ' — the Hijri date of the same calendar day, by Umm al-Qura (Saudi
    Arabia's civil calendar: a published table, where an arithmetic calendar drifts a day
    or two from what Gulf readers see printed). None outside the table (1924-2077)."""
    d = local(when, tz)
    try:
        h = Gregorian(d.year, d.month, d.day).to_hijri()
    except OverflowError:
        return None
    return f"{digits_of(h.day, digits)} {h.month_name('ar')} {digits_of(h.year, digits)} هـ"


def clock(when: datetime, tz: str | tzinfo | None, digits: str = "arabic") -> str:
    """'١٣:٠٥' — 24-hour clock: no ص/م ambiguity in a list that spans midnight."""
    d = local(when, tz)
    return digits_of(f"{d.hour:02d}:{d.minute:02d}", digits)


def absolute(when: datetime, tz: str | tzinfo | None, digits: str = "arabic",
             months: str = "gregorian") -> str:
    """'١٣ مارس ٢٠١٨، ١٣:٠٥' — date and time in the display timezone."""
    d = local(when, tz)
    month = MONTHS.get(months, MONTHS["gregorian"])[d.month - 1]
    return f"{digits_of(d.day, digits)} {month} {digits_of(d.year, digits)}، {clock(when, tz, digits)}"


# The zones of the Arab world (and of the outlets' newsrooms abroad) by the city Arabic
# readers know them by; a page says "بتوقيت الرياض", not "Asia/Riyadh".
ZONE_CITIES = {
    "Asia/Riyadh": "الرياض", "Asia/Dubai": "دبي", "Asia/Qatar": "الدوحة",
    "Asia/Bahrain": "المنامة", "Asia/Kuwait": "الكويت", "Asia/Muscat": "مسقط",
    "Asia/Aden": "عدن", "Asia/Baghdad": "بغداد", "Asia/Damascus": "دمشق",
    "Asia/Beirut": "بيروت", "Asia/Amman": "عمّان", "Asia/Jerusalem": "القدس",
    "Asia/Gaza": "غزة", "Asia/Hebron": "الخليل", "Africa/Cairo": "القاهرة",
    "Africa/Khartoum": "الخرطوم", "Africa/Tripoli": "طرابلس", "Africa/Tunis": "تونس",
    "Africa/Algiers": "الجزائر", "Africa/Casablanca": "الدار البيضاء",
    "Africa/Nouakchott": "نواكشوط", "Africa/Mogadishu": "مقديشو", "Africa/Djibouti": "جيبوتي",
    "Indian/Comoro": "موروني", "Asia/Tehran": "طهران", "Europe/Istanbul": "إسطنبول",
    "Europe/London": "لندن", "Europe/Paris": "باريس",
}
GMT = "غرينتش"


def zone_label(name: str | None, when: datetime, digits: str = "arabic") -> str:
    """How the footer names the display timezone at `when`: 'الرياض (غرينتش+٣)'; the IANA
    name for a zone without an Arabic city here ('America/New_York (غرينتش-٥)'); 'غرينتش'
    for UTC. The offset is the one in force at `when` (Beirut and Cairo keep summer time)."""
    name = name or "Asia/Riyadh"
    offset = local(when, name).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    if minutes == 0 and name.upper() in ("UTC", "ETC/UTC", "GMT", "ETC/GMT", "Z"):
        return GMT
    sign = "+" if minutes >= 0 else "-"
    h, m = divmod(abs(minutes), 60)
    hours = digits_of(f"{h}:{m:02d}" if m else h, digits)
    return f"{ZONE_CITIES.get(name, name)} ({GMT}{sign}{hours})"


def day_key(when: datetime, tz: str | tzinfo | None) -> str:
    """The calendar day in the display timezone, for grouping ('2018-03-13')."""
    return local(when, tz).date().isoformat()


def iso(when: datetime) -> str:
    """For <time datetime=…>: UTC, seconds precision."""
    return as_utc(when).astimezone(timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


__all__ = [
    "Noun", "SOURCE", "REPORT", "STORY", "ITEM", "ERROR", "MINUTE", "HOUR", "DAY", "WEEK",
    "MONTH", "YEAR", "SECOND", "plural_category", "count", "more_sources", "relative", "until",
    "day_heading", "clock", "absolute", "day_key", "iso", "digits_of", "local", "zone",
    "zone_label",
]
