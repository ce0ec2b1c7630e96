"""Pages over a real Redis with real ANT items: /, stories, topics, sources, OPML, healthz,
embed widgets, security headers. Stories follow the hand labels (GoldGrouper) so each test
knows which outlets a card must show; one test runs the real grouper when it exists."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import lxml.html
import pytest
import redis

from aggregator.store import Store
from aggregator.types import Item, SourceState
from web import create_app
from web.extensions import services

from pages_fixtures import (NOW, GoldGrouper, gold_story_count, item_id, load_rows,
                            make_item)
from pages_fixtures import config, feeds_path, store  # noqa: F401 (fixtures)
from roundtrips import CountingRedis

UTC = timezone.utc
ROWS = load_rows()


def build_app(redis_client, keys, feeds_path, config, grouper=True, **extra):
    app = create_app({
        "TESTING": True, "REDIS_CLIENT": redis_client, "AGG_KEY_PREFIX": keys.prefix,
        "AGG_FEEDS": str(feeds_path), "AGG_NOW": NOW, "AGG_TIMEZONE": "Asia/Riyadh", **extra,
    })
    if grouper:
        with app.app_context():
            services()._grouper = GoldGrouper(ROWS, {s.id: s.rank for s in config.sources})
    return app


@pytest.fixture
def app(redis_client, keys, feeds_path, config, store):
    return build_app(redis_client, keys, feeds_path, config)


@pytest.fixture
def client(app):
    return app.test_client()


def doc(resp):
    assert resp.status_code == 200, resp.status_code
    return lxml.html.fromstring(resp.get_data(as_text=True))


def cards(tree):
    return tree.xpath('//article[contains(concat(" ", @class, " "), " card ")]')


def card_ids(tree):
    return [c.get("data-story") for c in cards(tree)]


def text(el) -> str:
    return " ".join(el.text_content().split())


def card_by_id(tree, sid):
    found = [c for c in cards(tree) if c.get("data-story") == sid]
    assert found, f"no card {sid}"
    return found[0]


# --- the timeline ------------------------------------------------------------------------

def test_index_is_arabic_rtl_and_grouped_by_day_in_display_timezone(client):
    resp = client.get("/")
    body = resp.get_data(as_text=True)
    assert re.search(r'<html lang="ar" dir="rtl">', body)
    assert resp.headers["Content-Type"].startswith("text/html")
    tree = doc(resp)
    headings = [text(h) for h in tree.xpath('//h2[@class="day-heading"]/time')]
    # 23:43 UTC on the 13th is already Wednesday the 14th in Riyadh
    assert headings == ["الأربعاء ١٤ مارس ٢٠١٨", "الثلاثاء ١٣ مارس ٢٠١٨", "الاثنين ١٢ مارس ٢٠١٨"]
    # the page clock is 03:00 on the 14th in Riyadh: today and yesterday are named
    rel = [text(h) for h in tree.xpath('//h2[@class="day-heading"]/span[@class="day-rel"]')]
    assert rel == ["اليوم", "أمس"]
    # each day with its Hijri date (Umm al-Qura), after the Gregorian one
    hijri = [text(h) for h in tree.xpath(
        '//h2[@class="day-heading"]/time/following-sibling::span[@class="hijri"]')]
    assert hijri == ["، ٢٦ جمادى الآخرة ١٤٣٩ هـ", "، ٢٥ جمادى الآخرة ١٤٣٩ هـ",
                     "، ٢٤ جمادى الآخرة ١٤٣٩ هـ"]
    assert len(cards(tree)) == gold_story_count(ROWS)
    first = cards(tree)[0]
    assert first.get("data-story") == "trump-says-iran-behind-middle-east-problems" or \
        "ترامب" in text(first)
    # newest first: 17 minutes before the frozen clock
    assert "منذ ١٧ دقيقة" in text(first)
    assert "٠٢:٤٣" in text(first)  # 23:43 UTC shown in Riyadh time
    # the footer names the zone as a reader knows it, not by its IANA name
    footer = tree.xpath("//footer[@class='footer']")[0]
    assert "الأوقات بتوقيت الرياض (غرينتش+٣)" in text(footer)


def test_cards_show_outlets_with_counted_badges(client):
    tree = doc(client.get("/"))
    gaza = card_by_id(tree, "hamdallah-convoy-bombing-gaza")
    badges = [text(b) for b in gaza.xpath('.//span[contains(@class,"badge")]')]
    # three outlets by name (lead's first), then the other two as a dual
    assert len(badges) == 4 and badges[-1] == "+مصدران"
    assert badges[0] == "بي بي سي عربي"  # ranked first in feeds.yaml
    assert "التغطية الكاملة: ٥ مصادر" in text(gaza)
    link = gaza.xpath('.//h3[@class="headline"]/a')[0]
    assert link.get("href").startswith("http://www.bbc.com/arabic/") or "bbc" in link.get("href")
    assert link.get("dir") == "rtl"  # an Arabic feed's title, whatever its first letter
    assert gaza.xpath('.//a[@class="coverage"]/@href') == ["/stories/hamdallah-convoy-bombing-gaza"]
    # a topic with a single story is not linked from the card (it would lead to this story)
    assert gaza.xpath('.//a[@class="topic"]') == []
    skripal = card_by_id(tree, "uk-security-council-meets-on-skripal")
    assert skripal.xpath('.//a[@class="topic"]/@href') == ["/topics/skripal-poisoning"]
    assert text(skripal.xpath('.//a[@class="topic"]')[0]) == "تسميم الجاسوس سكريبال"
    # "also reported" lines: other outlets (one line each), not the lead's
    also = [text(b) for b in gaza.xpath('.//ul[@class="also"]//bdi')]
    assert also == ["العربية", "فرانس 24"] or (len(also) == 2 and "بي بي سي عربي" not in also)
    nepal = card_by_id(tree, "nepal-us-bangla-plane-crash-kathmandu")
    assert [text(b) for b in nepal.xpath('.//span[contains(@class,"badge")]')][-1] == "+مصدر"
    # outlet names are isolated (Latin inside Arabic: "CNN بالعربية")
    assert tree.xpath('//bdi[text()="CNN بالعربية"]')


LEAD_TITLE = "إيران تشن هجوما صاروخيا على إرهابيي هجوم الأحواز شرق الفرات"


@pytest.mark.parametrize("titles,expected", [
    # wire copy: every outlet carries the lead's headline; the badges already say who
    ({"b": LEAD_TITLE, "c": LEAD_TITLE}, []),
    # the same headline up to spelling (hamza, tatweel, tashkeel) is the same headline
    ({"b": "ايران تشـن هجوماً صاروخيا على ارهابيي هجوم الاحواز شرق الفرات"}, []),
    # an outlet with its own headline keeps its line
    ({"b": LEAD_TITLE, "c": "الحرس الثوري يقصف مقرا للإرهابيين في سوريا"}, ["c"]),
    # two outlets with one headline of their own: one line
    ({"b": "الحرس الثوري يقصف مقرا في سوريا", "c": "الحرس الثوري يقصف مقرا في سوريا",
      "d": "التحالف: الصواريخ سقطت قرب قواتنا"}, ["b", "d"]),
])
def test_also_lines_leave_out_headlines_the_card_already_shows(titles, expected):
    from web.pages import Card, Outlet, Report

    def report(source, title, minute):
        when = datetime(2018, 10, 1, 6, minute, tzinfo=UTC)
        item = Item(id=f"{source}-1", source=source, url=None, guid=None, title=title,
                    summary_html="", summary_text="", published=when, first_seen=when,
                    updated=when, content_hash=source)
        return Report(item, Outlet(source, source.upper(), 0))

    lead = report("a", LEAD_TITLE, 0)
    reports = [lead] + [report(s, t, i + 1) for i, (s, t) in enumerate(titles.items())]
    card = Card("s1", lead, reports, [r.outlet for r in reports], lead.item.published)
    assert [r.outlet.id for r in card.others] == expected


def test_an_outlets_section_feed_counts_once_and_its_copy_is_not_a_report(
        redis_client, keys, tmp_path, monkeypatch):
    # BBC's sport feed names BBC's site: it carries BBC's Gaza report (same link) and one
    # of its own. The card still counts five outlets; the story page lists the copy once.
    import pages_fixtures

    from aggregator.config import load_config
    from aggregator.store import Store

    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(pages_fixtures.FEEDS_YAML + """\
  - id: bbc_arabic_sport
    url: https://feeds.bbci.co.uk/arabic/sports/rss.xml
    title: بي بي سي عربي - رياضة
    site: https://www.bbc.com/arabic/
""", encoding="utf-8")
    config = load_config(feeds)
    monkeypatch.setitem(pages_fixtures.SOURCE_IDS, "BBC-sport", "bbc_arabic_sport")
    sid = "hamdallah-convoy-bombing-gaza"
    bbc = next(r for r in ROWS if r["story"] == sid and r["src"] == "BBC")
    later = (datetime.fromisoformat(bbc["time_utc"]) + timedelta(minutes=5)).isoformat()
    copy = {**bbc, "docno": "SPORT-COPY", "src": "BBC-sport"}
    own = {**bbc, "docno": "SPORT-OWN", "src": "BBC-sport", "time_utc": later,
           "url": "https://www.bbc.com/arabic/sports-43381001", "title": "تقرير الرياضة"}
    rows = ROWS + [copy, own]
    store = Store(redis_client, keys)
    pages_fixtures.store_items(store, list(config.sources), [make_item(r) for r in rows])
    app = build_app(redis_client, keys, feeds, config, grouper=False)
    with app.app_context():
        services()._grouper = GoldGrouper(rows, {s.id: s.rank for s in config.sources})
    c = app.test_client()
    gaza = card_by_id(doc(c.get("/")), sid)
    assert "التغطية الكاملة: ٥ مصادر" in text(gaza)
    also = [text(b) for b in gaza.xpath('.//ul[@class="also"]//bdi')]
    assert not [a for a in also if "بي بي سي" in a]  # the lead's outlet is not "also"
    page = doc(c.get(f"/stories/{sid}"))
    reports = page.xpath('//li[@class="report"]')
    links = page.xpath('//li[@class="report"]//h3/a/@href')
    n = len([r for r in ROWS if r["story"] == sid])
    assert len(reports) == n + 1 and len(set(links)) == n + 1  # BBC's link once, plus own
    assert links.index(own["url"]) == links.index(bbc["url"]) + 1  # under BBC's outlet
    assert "٥ مصادر" in text(page.xpath('//p[@class="story-meta"]')[0])


def test_direction_follows_the_language_not_the_first_letter(client, store, config):
    src = next(s for s in config.sources if s.id == "cnn_arabic")
    base = make_item(ROWS[0])
    latin_first = base.__class__(**{**base.__dict__, "id": "mixed-1",
                                    "title": "CNN: ترامب يلتقي كيم", "published": NOW})
    english = base.__class__(**{**base.__dict__, "id": "english-1", "language": "en",
                                "title": "Oil prices rise", "published": NOW})
    store.save_poll(src, [latin_first, english], store.load_state(src.id), NOW)
    tree = doc(client.get("/?source=cnn_arabic"))
    mixed = card_by_id(tree, "mixed-1").xpath('.//h3/a')[0]
    assert mixed.get("dir") == "rtl" and mixed.get("lang") is None
    eng = card_by_id(tree, "english-1").xpath('.//h3/a')[0]
    assert eng.get("dir") == "auto" and eng.get("lang") == "en"
    # outlet names from an Arabic source are rtl too ("CNN بالعربية" reads CNN first)
    assert tree.xpath('//bdi[@dir="rtl"][text()="CNN بالعربية"]')


def test_single_outlet_story_has_no_more_badge(client):
    tree = doc(client.get("/"))
    one = card_by_id(tree, "trump-says-iran-behind-middle-east-problems") if \
        "trump-says-iran-behind-middle-east-problems" in card_ids(tree) else cards(tree)[0]
    assert not one.xpath('.//span[contains(@class,"more")]')
    assert "التفاصيل" in text(one)


def test_hijri_dates_can_be_turned_off(redis_client, keys, feeds_path, config, store):
    tree = doc(build_app(redis_client, keys, feeds_path, config, AGG_HIJRI="0")
               .test_client().get("/"))
    assert tree.xpath('//h2[@class="day-heading"]/time') and \
        not tree.xpath('//span[@class="hijri"]')


def test_filter_by_source(client):
    tree = doc(client.get("/?source=cnn_arabic"))
    want = {r["story"] for r in ROWS if r["src"] == "CNN"}
    assert set(card_ids(tree)) == want
    for c in cards(tree):
        assert "CNN بالعربية" in text(c)
    # the filter shows as a removable chip and the page offers the matching feed
    assert tree.xpath('//ul[@class="chips"]//bdi[text()="CNN بالعربية"]')
    assert tree.xpath('//link[@rel="alternate" and @href="/feeds/sources/cnn_arabic.atom"]')


def test_filter_by_country_and_tag(client):
    tree = doc(client.get("/?country=ae"))
    want = {r["story"] for r in ROWS if r["src"] in ("alarabia", "skynews")}
    assert set(card_ids(tree)) == want
    tree = doc(client.get("/?tag=international"))
    want = {r["story"] for r in ROWS if r["src"] in ("BBC", "CNN", "france24")}
    assert set(card_ids(tree)) == want
    # tag slugs read in Arabic in the chip and the select
    assert tree.xpath('//ul[@class="chips"]//bdi[text()="دولية"]')
    assert tree.xpath('//select[@name="tag"]/option[@value="international" and @selected]'
                      '[text()="دولية"]')
    tree = doc(client.get("/?source=bbc_arabic&country=AE"))
    assert card_ids(tree) == []
    # the site has news: the filter matches none of it (not "no news yet")
    empty = text(tree.xpath('//div[@class="empty"]')[0])
    assert "لا أخبار تطابق هذه التصفية" in empty and "بعد." not in empty.split("التصفية")[0]
    assert tree.xpath('//div[@class="empty"]//a[@href="/"]')


def test_unknown_filter_shows_empty_state(client):
    tree = doc(client.get("/?source=nosuch"))
    assert card_ids(tree) == []


def test_a_filter_chip_keeps_an_arabic_outlet_name_right_to_left(client):
    # "CNN بالعربية" starts with a Latin word: dir=auto would lay it out left to right
    tree = doc(client.get("/?source=cnn_arabic"))
    chip = tree.xpath('//ul[@class="chips"]//a[@class="chip"]/bdi')[0]
    assert chip.get("dir") == "rtl" and text(chip) == "CNN بالعربية"
    tree = doc(client.get("/", query_string={"q": "brexit"}))
    assert tree.xpath('//ul[@class="chips"]//bdi[@dir="auto"][text()="brexit"]')


@pytest.mark.parametrize("q, story", [
    ("نيبال", "nepal-us-bangla-plane-crash-kathmandu"),
    ("إنفجار موكب", "hamdallah-convoy-bombing-gaza"),  # hamza on alef folded
    ("انفجار غزة", "hamdallah-convoy-bombing-gaza"),
    ("brexit", "german-industry-warns-hard-brexit"),  # Latin, case-folded
])
def test_search(client, q, story):
    tree = doc(client.get("/", query_string={"q": q}))
    ids = card_ids(tree)
    assert any(i == story or i.startswith(story[:20]) for i in ids), ids
    assert len(ids) < gold_story_count(ROWS)


def test_search_without_results(client):
    tree = doc(client.get("/", query_string={"q": "كلمةغيرموجودة"}))
    assert card_ids(tree) == []
    assert "لا نتائج" in text(tree.xpath('//div[@class="empty"]')[0])


def test_a_search_that_stopped_early_says_how_far_back_it_looked(client, monkeypatch):
    from web import pages

    # each request reads 6 items; "في" is in nearly every report of the window
    monkeypatch.setattr(pages, "SEARCH_SCAN_CAP", 6)
    tree = doc(client.get("/", query_string={"q": "في", "limit": 20}))
    assert 0 < len(card_ids(tree)) < 20
    note = tree.xpath('//p[@class="searched-to"]')
    assert note and "قد توجد نتائج أقدم" in text(note[0])
    older = tree.xpath('//a[@class="older"]')[0]
    assert "تابع البحث في الأقدم" in text(older)
    # the date it names is where the next request starts
    cursor = float(parse_qs(urlparse(older.get("href")).query)["before"][0])
    assert datetime.fromisoformat(note[0].xpath(".//time/@datetime")[0].replace("Z", "+00:00")) \
        == datetime.fromtimestamp(cursor, UTC).replace(microsecond=0)
    # nothing found in what it read: it says so, and how far back
    tree = doc(client.get("/", query_string={"q": "كلمةغيرموجودة"}))
    empty = text(tree.xpath('//div[@class="empty"]')[0])
    assert "لا نتائج" in empty and "في الأخبار حتى" in empty and "قد توجد نتائج أقدم" in empty
    # a search that filled its page, or read everything, claims nothing
    monkeypatch.setattr(pages, "SEARCH_SCAN_CAP", 3000)
    for limit in (2, 100):
        tree = doc(client.get("/", query_string={"q": "في", "limit": limit}))
        assert not tree.xpath('//p[@class="searched-to"]')


def test_robots_keep_crawlers_off_searches_widgets_and_admin(client):
    from urllib.robotparser import RobotFileParser

    resp = client.get("/robots.txt")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    robots = RobotFileParser()
    robots.parse(resp.get_data(as_text=True).splitlines())
    for path in ["/", "/stories/x", "/topics/t", "/feeds/all.atom", "/sources", "/?before=1"]:
        assert robots.can_fetch("Googlebot", path), path
    for path in ["/embed/all", "/status", "/metrics"]:
        assert not robots.can_fetch("Googlebot", path), path
    # the stdlib parser has no wildcards: the search rules are RFC 9309 patterns
    assert {"Disallow: /*?q=", "Disallow: /*&q="} <= set(resp.get_data(as_text=True).splitlines())
    # and a search page asks not to be indexed in any case
    search = doc(client.get("/", query_string={"q": "روسيا"}))
    assert search.xpath('//meta[@name="robots"]/@content') == ["noindex, follow"]
    assert not doc(client.get("/")).xpath('//meta[@name="robots"]')


def test_pagination_walks_every_story_once_newest_first(client):
    seen, url, pages = [], "/?limit=4", 0
    times = []
    while url:
        tree = doc(client.get(url))
        seen += card_ids(tree)
        times += [t.get("datetime") for t in tree.xpath('//article//footer/time')]
        older = tree.xpath('//a[@rel="next"]/@href')
        url = older[0] if older else None
        pages += 1
        assert pages < 30
        if url:
            assert "limit=4" in url and "before=" in url
    assert len(seen) == len(set(seen)) == gold_story_count(ROWS)
    assert times == sorted(times, reverse=True)
    assert pages >= gold_story_count(ROWS) // 4


@pytest.mark.parametrize("filt, index", [("tag=gulf", "tag_timeline:gulf"),
                                         ("country=AE", "country_timeline:AE"),
                                         ("tag=international", "tag_timeline:international")])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_filtered_pagination_walks_every_story_of_the_filter_once(app, client, keys, filt,
                                                                  index, limit):
    """A story was skipped as 'shown on an earlier page' when one of its reports outside
    the filtered index (another outlet) was newer than the cursor: found by a review
    walking /?tag=gulf (9 of 484 stories never shown)."""
    from web.extensions import services

    fn, arg = index.split(":")
    with app.app_context():
        svc = services()
        ids = svc.client.zrange(getattr(keys, fn)(arg), 0, -1)
        want = set(svc.grouper.stories_of(ids)) - {None}
    seen, url, pages = [], f"/?{filt}&limit={limit}", 0
    while url:
        tree = doc(client.get(url))
        seen += card_ids(tree)
        older = tree.xpath('//a[@rel="next"]/@href')
        url = older[0] if older else None
        pages += 1
        assert pages < 60
    assert len(seen) == len(set(seen)) and set(seen) == want


def test_pagination_keeps_filters(client):
    tree = doc(client.get("/?limit=2&country=AE"))
    older = tree.xpath('//a[@rel="next"]/@href')[0]
    qs = parse_qs(urlparse(older).query)
    assert qs["country"] == ["AE"] and qs["limit"] == ["2"] and float(qs["before"][0]) > 0


def test_bad_cursor_is_ignored(client):
    assert doc(client.get("/?before=nan&limit=abc")) is not None
    assert doc(client.get("/?before=xyz")) is not None


def test_latin_digits_and_levantine_months_are_configurable(redis_client, keys, feeds_path,
                                                           config, store):
    app = build_app(redis_client, keys, feeds_path, config, AGG_DIGITS="latin",
                    AGG_MONTHS="levantine")
    tree = doc(app.test_client().get("/"))
    headings = [text(h) for h in tree.xpath('//h2[@class="day-heading"]/time')]
    assert headings[0] == "الأربعاء 14 آذار 2018"
    assert "التغطية الكاملة: 5 مصادر" in text(card_by_id(tree, "hamdallah-convoy-bombing-gaza"))


def test_timezone_is_configurable(redis_client, keys, feeds_path, config, store):
    app = build_app(redis_client, keys, feeds_path, config, AGG_TIMEZONE="Africa/Casablanca")
    tree = doc(app.test_client().get("/"))
    headings = [text(h) for h in tree.xpath('//h2[@class="day-heading"]/time')]
    assert headings[:2] == ["الثلاثاء ١٣ مارس ٢٠١٨", "الاثنين ١٢ مارس ٢٠١٨"]
    assert "بتوقيت الدار البيضاء (غرينتش+٠)" in text(tree.xpath("//footer[@class='footer']")[0])


def test_titles_are_autoescaped(redis_client, keys, feeds_path, config, store, client):
    src = next(s for s in config.sources if s.id == "bbc_arabic")
    evil = make_item(ROWS[0])
    evil = evil.__class__(**{**evil.__dict__, "id": "evil-1", "title":
                             '<script>alert("x")</script> عاجل "<b>"',
                             "url": 'javascript:alert(1)" onmouseover="x',
                             "published": NOW - timedelta(minutes=1)})
    store.save_poll(src, [evil], store.load_state(src.id), NOW)
    body = client.get("/").get_data(as_text=True)
    assert '<script>alert("x")</script>' not in body
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; عاجل" in body
    assert 'onmouseover="x' not in body
    assert not [h for h in lxml.html.fromstring(body).xpath("//a/@href")
                if h.strip().lower().startswith("javascript:")]
    tree = lxml.html.fromstring(body)
    scripts = tree.xpath("//script")  # no inline script: only our own file, deferred
    assert [(s.get("src"), (s.text or "").strip()) for s in scripts] == [("/static/app.js", "")]


def test_items_the_worker_has_not_grouped_yet_show_as_single_stories(redis_client, keys,
                                                                    feeds_path, config, store):
    app = build_app(redis_client, keys, feeds_path, config, grouper=False)
    c = app.test_client()
    tree = doc(c.get("/?limit=100"))
    assert set(card_ids(tree)) == {item_id(r) for r in ROWS}
    one = item_id(ROWS[0])
    page = doc(c.get(f"/stories/{one}"))
    assert ROWS[0]["title"] in text(page)


# --- story and topic pages -----------------------------------------------------------------

def test_search_matches_word_starts_and_a_query_without_words_finds_nothing(client):
    everything = len(card_ids(doc(client.get("/?limit=200"))))
    # روبي (Ruby) is inside أوروبي: no story of the window names Ruby
    assert card_ids(doc(client.get("/", query_string={"q": "روبي", "limit": 200}))) == []
    tree = doc(client.get("/", query_string={"q": "...", "limit": 200}))
    assert card_ids(tree) == [] and everything > 0
    assert "اكتب كلمة واحدة على الأقل" in text(tree.xpath('//div[@class="empty"]')[0])


def test_story_page_has_full_coverage_timeline_related_and_feeds(client):
    sid = "russia-rejects-uk-ultimatum-summons-envoy"
    tree = doc(client.get(f"/stories/{sid}"))
    rows = [r for r in ROWS if r["story"] == sid]
    reports = tree.xpath('//li[@class="report"]')
    assert len(reports) == len(rows)
    links = set(tree.xpath('//li[@class="report"]//h3/a/@href'))
    assert links == {r["url"] for r in rows}
    assert {r.get("data-outlet") for r in reports} == {
        "alarabiya", "bbc_arabic", "france24_ar", "skynewsarabia", "cnn_arabic"}
    # every report's time in Riyadh time
    assert "١٣ مارس ٢٠١٨، ١٤:١٩" in text(tree)  # alarabiya 11:19:52Z
    tl = tree.xpath('//ol[@class="tl"]/li')
    assert len(tl) == len(rows)
    assert "أول من نشر" in text(tl[0]) and "العربية" in text(tl[0])
    # other stories of the Skripal topic
    related = tree.xpath('//section[@class="related"]//article/@data-story')
    assert set(related) == {"may-says-russia-highly-likely-behind-skripal",
                            "uk-security-council-meets-on-skripal"}
    # no day heading above them: each related story's time carries its date
    for when in tree.xpath('//section[@class="related"]//span[@class="when"]'):
        assert re.search(r"[٠-٩]+ مارس ٢٠١٨، [٠-٩]{2}:[٠-٩]{2}", text(when)), text(when)
    feeds = tree.xpath('//ul[@class="feedlinks"]//a/@href')
    assert feeds == [f"/feeds/stories/{sid}.atom", f"/feeds/stories/{sid}.rss",
                     f"/feeds/stories/{sid}.json"]
    assert tree.xpath(f'//link[@rel="alternate" and @href="/feeds/stories/{sid}.json"]')


def test_item_id_redirects_to_its_story(client):
    iid = item_id(next(r for r in ROWS if r["story"] == "hamdallah-convoy-bombing-gaza"))
    resp = client.get(f"/stories/{iid}")
    assert resp.status_code == 301
    assert resp.headers["Location"].endswith("/stories/hamdallah-convoy-bombing-gaza")


def test_topic_page_lists_its_stories(client):
    tree = doc(client.get("/topics/skripal-poisoning"))
    assert set(card_ids(tree)) == {"russia-rejects-uk-ultimatum-summons-envoy",
                                   "may-says-russia-highly-likely-behind-skripal",
                                   "uk-security-council-meets-on-skripal"}
    assert "٣ قصص" in text(tree.xpath('//p[@class="story-meta"]')[0])
    assert tree.xpath('//a[@href="/feeds/topics/skripal-poisoning.atom"]')
    # its cards do not link back to the page they are on; the timeline's cards do
    assert not tree.xpath('//article//a[@class="topic"]')
    assert doc(client.get("/?limit=100")).xpath(
        '//article//a[@class="topic" and @href="/topics/skripal-poisoning"]')
    story = doc(client.get("/stories/uk-security-council-meets-on-skripal"))
    assert story.xpath('//section[@class="related"]//article')
    assert not story.xpath('//section[@class="related"]//a[@class="topic"]')


def test_no_separator_a_reader_could_take_for_the_digit_zero(redis_client, keys, feeds_path,
                                                            config, store):
    # The Arabic-Indic zero (٠) is a dot at mid-height: "٢٣ قصة · ٦ مصادر" reads as 60
    # sources. Lists of counts and times are separated with the Arabic comma instead.
    store.save_state("cnn_arabic", SourceState(last_status="http-5xx", errors=2,
                                               consecutive_failures=2))
    client = build_app(redis_client, keys, feeds_path, config,
                       AGG_STATUS_TOKEN="t").test_client()
    topic = doc(client.get("/topics/skripal-poisoning"))
    assert "٣ قصص، ٥ مصادر" in text(topic.xpath('//p[@class="story-meta"]')[0])
    for path in ["/", "/topics", "/topics/skripal-poisoning",
                 "/stories/russia-rejects-uk-ultimatum-summons-envoy", "/sources",
                 "/status?token=t"]:
        tree = doc(client.get(path))
        for el in tree.xpath("//script|//style"):
            el.drop_tree()
        visible = text(tree) + " " + " ".join(tree.xpath("//title/text()"))
        assert "·" not in visible, (path, visible[max(0, visible.find("·") - 40):][:80])


@pytest.mark.parametrize("path", ["/", "/topics", "/topics/skripal-poisoning",
                                  "/stories/russia-rejects-uk-ultimatum-summons-envoy"])
def test_meta_lines_keep_their_separators_next_to_what_they_separate(client, path):
    # .meta lays out its children with flex and a gap: text loose beside an element
    # becomes an item of its own, and the gap opens before the comma ("١٩:٥٣  ، منذ").
    # Each run of text with its elements sits in one child.
    for meta in doc(client.get(path)).xpath('//*[contains(concat(" ", @class, " "), " meta ")]'):
        loose = [(meta.text or "")] + [(child.tail or "") for child in meta]
        assert not "".join(loose).strip(), (path, lxml.html.tostring(meta, encoding=str))


def test_topics_page_lists_the_threads_newest_activity_first(client):
    tree = doc(client.get("/topics"))
    assert tree.xpath('//nav//a[@href="/topics" and @aria-current="page"]')
    topics = tree.xpath('//article[@data-topic]')
    # a topic of one story is not a thread; the two threads of the window, the one with
    # the newest story first
    threads = {}
    for r in ROWS:
        threads.setdefault(r["topic"], {}).setdefault(r["story"], []).append(r["time_utc"])
    threads = {t: s for t, s in threads.items() if len(s) > 1}
    newest = {t: max(datetime.fromisoformat(x) for p in s.values() for x in p)
              for t, s in threads.items()}
    assert [t.get("data-topic") for t in topics] == sorted(threads, key=newest.get, reverse=True)
    skripal = tree.xpath('//article[@data-topic="skripal-poisoning"]')[0]
    assert skripal.xpath('.//h2/a/@href') == ["/topics/skripal-poisoning"]
    assert "٣ قصص، آخرها" in text(skripal)
    assert set(skripal.xpath('.//ul[@class="also"]//a/@href')) == {
        "/stories/russia-rejects-uk-ultimatum-summons-envoy",
        "/stories/may-says-russia-highly-likely-behind-skripal",
        "/stories/uk-security-council-meets-on-skripal"}
    # Russia's rejection was reported by five outlets
    assert "(٥ مصادر)" in text(skripal)


def test_topics_page_without_stories_says_so(redis_client, keys, feeds_path, config, store):
    client = build_app(redis_client, keys, feeds_path, config, grouper=False).test_client()
    tree = doc(client.get("/topics"))
    assert not tree.xpath('//article[@data-topic]') and tree.xpath('//div[@class="empty"]')


@pytest.mark.parametrize("path", ["/stories/no-such-story", "/topics/no-such-topic",
                                  "/no/such/page"])
def test_not_found_pages_are_arabic(client, path):
    resp = client.get(path)
    assert resp.status_code == 404
    body = resp.get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in body
    assert "الصفحة غير موجودة" in body


@pytest.mark.parametrize("path", ["/embed/bogus", "/embed/topics/nope",
                                  # a mistyped widget, as its feed: not a quiet empty widget
                                  "/embed/sources/nope", "/embed/tags/nope",
                                  "/embed/countries/ZZ", "/embed/countries/%C3%9F"])
def test_a_mistyped_widget_is_a_404_note_inside_the_frame(client, path):
    resp = client.get(path)
    assert resp.status_code == 404
    body = resp.get_data(as_text=True)
    assert '<html lang="ar" dir="rtl" class="t-light">' in body
    assert "لم نجد هذه الأخبار" in body and '<nav' not in body
    assert "frame-ancestors *" in resp.headers["Content-Security-Policy"]  # it may be framed
    assert "X-Frame-Options" not in resp.headers


def test_a_wrong_method_gets_an_arabic_page_that_says_what_is_allowed(client):
    resp = client.post("/")
    assert resp.status_code == 405
    assert "GET" in resp.headers["Allow"]
    tree = lxml.html.fromstring(resp.get_data(as_text=True))
    assert tree.get("lang") == "ar" and "غير مسموحة" in text(tree)


def test_a_single_report_story_says_when_it_was_published(client):
    sizes = {}
    for r in ROWS:
        sizes[r["story"]] = sizes.get(r["story"], 0) + 1
    single = next(s for s, n in sizes.items() if n == 1)
    meta = text(doc(client.get(f"/stories/{single}")).xpath('//p[@class="story-meta"]')[0])
    assert meta.startswith("نُشر ") and "مصدر" not in meta and "آخر تحديث" not in meta, meta



# --- sources, OPML, healthz ------------------------------------------------------------------

def test_sources_page_shows_health_counts_and_feed_links(client, store):
    store.save_state("cnn_arabic", store.load_state("cnn_arabic").__class__(
        last_status="http-5xx", last_http_status=503, errors=4, consecutive_failures=2,
        last_error="HTTP 503 from arabic.cnn.com", last_success=NOW - timedelta(hours=2),
        next_poll=NOW + timedelta(minutes=20)))
    tree = doc(client.get("/sources"))
    rows = {r.get("data-source"): r for r in tree.xpath('//tr[@data-source]')}
    assert list(rows) == ["bbc_arabic", "skynewsarabia", "alarabiya", "cnn_arabic", "france24_ar"]
    bbc = rows["bbc_arabic"]
    assert "يعمل" in text(bbc) and "منذ ٣ دقائق" in text(bbc)
    n_bbc = sum(1 for r in ROWS if r["src"] == "BBC")
    assert bbc.xpath('.//td[@class="num"]')[0].text_content().strip() == \
        str(n_bbc).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert bbc.xpath('.//a/@href').count("/feeds/sources/bbc_arabic.atom") == 1
    cnn = rows["cnn_arabic"]
    assert "متعثّر" in text(cnn) and "http-5xx 503" in text(cnn) and "منذ ساعتين" in text(cnn)
    assert "HTTP 503 from arabic.cnn.com" in text(cnn)
    assert "خطأ في خادم المصدر http-5xx 503" in text(cnn) and "(مرتان متتاليتان)" in text(cnn)


def test_sources_page_says_in_arabic_what_a_poll_came_to(client, store):
    cls = store.load_state("cnn_arabic").__class__
    store.save_state("france24_ar", cls(
        last_status="gone", last_http_status=410, errors=1, consecutive_failures=1,
        last_poll=NOW - timedelta(hours=1), disabled_reason=f"410 Gone at {NOW.isoformat()}: "
        "remove it from feeds.yaml or fix its URL"))
    store.save_state("alarabiya", cls(last_status="ok", last_http_status=200, latency_ms=1240,
                                      last_success=NOW, last_poll=NOW))
    tree = doc(client.get("/sources"))
    rows = {r.get("data-source"): text(r) for r in tree.xpath('//tr[@data-source]')}
    gone = rows["france24_ar"]
    assert "أُزيلت الخلاصة نهائيًا gone 410" in gone and "(أول مرة)" in gone, gone
    assert "توقف جلبها بعد ردّ 410 Gone في" in gone and "Gone at" not in gone, gone
    assert "١٫٢ ثانية" in rows["alarabiya"] and "ms" not in rows["alarabiya"]


def test_every_poll_outcome_has_an_arabic_label():
    from aggregator.types import Outcome
    from web.pages import OUTCOME_LABELS

    assert set(OUTCOME_LABELS) == {o.value for o in Outcome}


def test_opml_lists_sources_and_our_outputs(client, config):
    resp = client.get("/sources.opml")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/x-opml")
    root = ET.fromstring(resp.data)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.find("head/title").text
    assert root.find("head/dateCreated").text
    folders = root.findall("body/outline")
    assert len(folders) == 2
    outlets = folders[0].findall("outline")
    assert [(o.get("xmlUrl"), o.get("text")) for o in outlets] == \
        [(s.url, s.title) for s in config.sources]
    assert all(o.get("type") == "rss" and o.get("htmlUrl") for o in outlets)
    ours = {o.get("xmlUrl") for o in folders[1].iter("outline") if o.get("xmlUrl")}
    assert "http://localhost/feeds/all.atom" in ours
    assert "http://localhost/feeds/all.rss" in ours
    assert "http://localhost/feeds/sources/cnn_arabic.atom" in ours
    assert "http://localhost/feeds/tags/gulf.rss" in ours
    assert "http://localhost/feeds/countries/AE.atom" in ours


def test_healthz_ok_with_fresh_heartbeat(client, store):
    store.heartbeat(datetime.now(UTC))
    resp = client.get("/healthz")
    assert resp.status_code == 200
    data = resp.get_json()
    assert data["redis"] is True and data["ok"] is True
    assert 0 <= data["worker_heartbeat_age_s"] < 5


def test_healthz_503_without_or_with_stale_heartbeat(client, store, redis_client, keys):
    resp = client.get("/healthz")
    assert resp.status_code == 503
    assert resp.get_json() == {"redis": True, "worker_heartbeat_age_s": None, "ok": False}
    redis_client.set(keys.heartbeat, (datetime.now(UTC) - timedelta(minutes=30)).isoformat())
    resp = client.get("/healthz")
    assert resp.status_code == 503
    assert resp.get_json()["worker_heartbeat_age_s"] > 1700


def test_healthz_threshold_and_web_only_mode(redis_client, keys, feeds_path, config, store):
    redis_client.set(keys.heartbeat, (datetime.now(UTC) - timedelta(minutes=30)).isoformat())
    app = build_app(redis_client, keys, feeds_path, config, HEALTH_MAX_HEARTBEAT_AGE=3600)
    assert app.test_client().get("/healthz").status_code == 200
    redis_client.delete(keys.heartbeat)
    app = build_app(redis_client, keys, feeds_path, config, HEALTH_REQUIRE_WORKER=False)
    assert app.test_client().get("/healthz").status_code == 200


def test_healthz_503_when_redis_unreachable(keys, feeds_path, tmp_path):
    dead = redis.Redis(unix_socket_path=str(tmp_path / "nothing.sock"), socket_timeout=1,
                       decode_responses=True)
    app = create_app({"TESTING": True, "REDIS_CLIENT": dead, "AGG_KEY_PREFIX": keys.prefix,
                      "AGG_FEEDS": str(feeds_path)})
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 503
    assert resp.get_json() == {"redis": False, "worker_heartbeat_age_s": None, "ok": False}
    # pages say so in Arabic instead of a traceback
    resp = app.test_client().get("/")
    assert resp.status_code == 503
    assert "غير متاحة مؤقتًا" in resp.get_data(as_text=True)


# --- embedding and headers -------------------------------------------------------------------

def test_pages_are_unframeable_with_strict_csp(client):
    for path in ("/", "/sources", "/stories/hamdallah-convoy-bombing-gaza", "/no-such"):
        resp = client.get(path)
        h = resp.headers
        assert h["X-Frame-Options"] == "DENY", path
        csp = h["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp
        assert "default-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_embed_pages_are_frameable_per_config(client, redis_client, keys, feeds_path, config, store):
    resp = client.get("/embed/all")
    assert resp.status_code == 200
    assert "X-Frame-Options" not in resp.headers
    assert "frame-ancestors *" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    app = build_app(redis_client, keys, feeds_path, config,
                    EMBED_FRAME_ANCESTORS="https://news.example  https://blog.example")
    csp = app.test_client().get("/embed/all").headers["Content-Security-Policy"]
    assert "frame-ancestors https://news.example https://blog.example" in csp


@pytest.mark.parametrize("output, expect", [
    ("all", None),
    ("sources/bbc_arabic", "BBC"),
    ("tags/gulf", None),
    ("countries/gb", "BBC"),
    ("topics/skripal-poisoning", None),
])
def test_embed_outputs(client, output, expect):
    resp = client.get(f"/embed/{output}?limit=5")
    tree = doc(resp)
    assert tree.get("lang") == "ar" and tree.get("dir") == "rtl"
    items = tree.xpath('//li[@class="w-item"]')
    assert 1 <= len(items) <= 5
    assert tree.xpath("//base/@target") == ["_blank"]
    if expect:
        stories = {r["story"] for r in ROWS if r["src"] == expect}
        assert {i.get("data-story") for i in items} <= stories
    if output.startswith("topics/"):
        assert len(items) == 3


def test_embed_js_is_served_as_script_without_html_sinks(client):
    resp = client.get("/embed.js")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/javascript")
    # loadable with crossorigin (Subresource Integrity) from any site
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    src = resp.get_data(as_text=True)
    assert "textContent" in src
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in src


def test_static_assets_are_local(client):
    body = client.get("/").get_data(as_text=True)
    tree = lxml.html.fromstring(body)
    for href in tree.xpath("//link/@href") + tree.xpath("//script/@src"):
        assert href.startswith("/"), href
    assert client.get("/static/site.css").status_code == 200
    assert client.get("/static/site.css").status_code == 200


def test_favicon_ico_leads_to_the_icon(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 301 and r.headers["Location"].endswith("/static/favicon.svg")
    icon = client.get(r.headers["Location"])
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


# --- with the real grouper -------------------------------------------------------------------

def test_pages_with_the_real_grouper(redis_client, keys, feeds_path, config, store):
    """Integration with aggregator.group as it is: every story it made is on the timeline once,
    and a story page shows all of its reports. (How well it groups is tested in its own
    suite; this one must not fail when a grouping change splits a story.)"""
    from aggregator import group

    g = group.Grouper(redis_client, keys, source_rank={s.id: s.rank for s in config.sources})
    g.process_pending(NOW)
    app = build_app(redis_client, keys, feeds_path, config, grouper=False)
    c = app.test_client()
    stories = {g.story_of(item_id(r)) or item_id(r) for r in ROWS}
    tree = doc(c.get("/?limit=100"))
    assert sorted(card_ids(tree)) == sorted(stories)
    biggest = max(g.get_stories(sorted(stories)), key=lambda st: (len(st.items), st.id))
    page = doc(c.get(f"/stories/{biggest.id}"))
    assert len(page.xpath('//li[@class="report"]')) == len(biggest.items)
    assert {r.get("data-outlet") for r in page.xpath('//li[@class="report"]')} == \
        set(biggest.sources)
    card = card_by_id(tree, biggest.id)
    if len(biggest.sources) > 1:
        assert "التغطية الكاملة" in text(card)


def test_grouped_stories_show_while_feeds_yaml_has_never_validated(redis_client, keys,
                                                                   tmp_path, config, store):
    """Outlet ranks matter to grouping, not to reading stories: a feeds.yaml that never
    validated names outlets by id but hides no story from the pages or the feeds."""
    from aggregator import group

    g = group.Grouper(redis_client, keys, source_rank={s.id: s.rank for s in config.sources})
    g.process_pending(NOW)
    bad = tmp_path / "broken.yaml"
    bad.write_text("sources:\n  - id: Bad Id\n", encoding="utf-8")
    c = build_app(redis_client, keys, bad, config, grouper=False).test_client()
    stories = {g.story_of(item_id(r)) or item_id(r) for r in ROWS}
    assert sorted(card_ids(doc(c.get("/?limit=100")))) == sorted(stories)
    resp = c.get("/feeds/all.json?limit=200")
    assert resp.status_code == 200
    assert [i["_aggregator"]["story_id"] for i in resp.get_json()["items"]] == \
        [sid for sid, _ in g.story_timeline(None, 1000)]


@pytest.mark.parametrize("path", ["/", "/topics"])
def test_pages_read_the_topics_of_their_stories_together(redis_client, keys, feeds_path,
                                                         config, store, path):
    """A page's topics cost one round trip, not one or two per topic: /topics looks at the
    topics of 300 stories, and a timeline page names the topic of each card."""
    from aggregator import group

    g = group.Grouper(redis_client, keys, source_rank={s.id: s.rank for s in config.sources})
    g.process_pending(NOW)
    client = CountingRedis(connection_pool=redis_client.connection_pool)
    c = build_app(client, keys, feeds_path, config, grouper=False).test_client()
    c.get("/sources")  # the first request reads the config
    before = CountingRedis.trips
    tree = doc(c.get(path + "?limit=100" if path == "/" else path))
    trips = CountingRedis.trips - before
    topics = {s.topic for s in g.get_stories([sid for sid, _ in g.story_timeline(None, 1000)])}
    shown = len(tree.xpath("//article[@data-topic]"))
    assert len(topics) >= 10 and (path == "/" or shown >= 2)
    # the page cache, the story timeline, stories, items, topics; /topics: + each thread's
    # newest stories
    assert trips <= 12 + shown, trips


def report(item, source, title, published, summary=""):
    """A report of outlet `source` as its feed would give it, seen at NOW."""
    return Item(id=item, source=source, url=f"https://{source}.example/{item}", guid=None,
                title=title, summary_html=summary, summary_text=summary, published=published,
                first_seen=NOW, updated=published, content_hash=item)


def grouped(redis_client, keys, config, *polls):
    """Store each poll's reports and group after it, as the worker does; the grouper."""
    from aggregator.group import Grouper

    store = Store(redis_client, keys)
    sources = {src.id: src for src in config.sources}
    g = Grouper(redis_client, keys, source_rank={src.id: src.rank for src in config.sources})
    for poll in polls:
        for it in poll:
            store.save_poll(sources[it.source], [it], SourceState(), NOW)
        g.process_pending(NOW)
    return g


def test_story_page_orders_coverage_by_who_reported_first(redis_client, keys, feeds_path,
                                                          config):
    """France 24's later report reaches us first; BBC and CNN publish at the same minute an
    hour earlier. Coverage reads in the order outlets reported it (not the order we polled),
    and among reports of the same minute the lead (the operator's ranking: BBC above CNN) is
    the one named first to publish. Real ANT titles of the 2018-03-12 Kathmandu crash."""
    t = datetime(2018, 3, 12, 10, 0, tzinfo=UTC)
    later = report("c-f24", "france24_ar",
                   "مقتل 40 شخصا على الأقل في تحطم طائرة ركاب بنغلادشية قرب مطار كاتماندو بنيبال",
                   t + timedelta(hours=1))
    same_minute = [
        report("a-cnn", "cnn_arabic", "تحطم طائرة ركاب بنغلادشية قرب مطار كاتماندو في نيبال", t),
        report("b-bbc", "bbc_arabic", "نيبال: مقتل العشرات في تحطم طائرة في مطار كاتمندو", t),
    ]
    g = grouped(redis_client, keys, config, [later], same_minute)
    sid = g.story_of("b-bbc")
    assert g.story_of("a-cnn") == g.story_of("c-f24") == sid  # else this test is moot
    app = build_app(redis_client, keys, feeds_path, config, grouper=False)
    tree = doc(app.test_client().get(f"/stories/{sid}"))
    assert [r.get("data-outlet") for r in tree.xpath('//li[@class="report"]')] == \
        ["bbc_arabic", "cnn_arabic", "france24_ar"]
    first = tree.xpath('//ol[@class="tl"]/li')[0]
    assert "أول من نشر" in text(first) and "بي بي سي" in text(first)


def test_story_page_lists_word_for_word_copies_under_the_report_they_copy(
        redis_client, keys, feeds_path, config):
    """Wire copy: CNN and France 24 carry BBC's text as is (one with its own spelling of
    hamza and tanween). The coverage shows the text once, with the other outlets as links
    to their copies; the timeline still shows when each outlet joined."""
    t = datetime(2018, 3, 12, 10, 0, tzinfo=UTC)
    title = "نيبال: مقتل العشرات في تحطم طائرة ركاب بنغلادشية في مطار كاتمندو"
    summary = "تحطمت طائرة ركاب تابعة لشركة يو إس بنغلا أثناء هبوطها في مطار كاتمندو الدولي."
    minutes = [t + timedelta(minutes=m) for m in (0, 5, 9, 12)]
    reports = [report("a-bbc", "bbc_arabic", title, minutes[0], summary),
               report("b-cnn", "cnn_arabic", title, minutes[1], summary),
               report("c-f24", "france24_ar", title.replace("إس", "اس"), minutes[2],
                      summary.replace("إس", "اس")),
               report("d-sky", "skynewsarabia", "مقتل 49 في تحطم طائرة بنغلادشية في نيبال",
                      minutes[3], "قتل 49 شخصا على الأقل في تحطم طائرة ركاب في مطار كاتمندو.")]
    g = grouped(redis_client, keys, config, reports)
    sid = g.story_of("a-bbc")
    assert g.story_of("b-cnn") == g.story_of("c-f24") == sid  # else this test is moot
    app = build_app(redis_client, keys, feeds_path, config, grouper=False)
    tree = doc(app.test_client().get(f"/stories/{sid}"))
    shown = tree.xpath('//li[@class="report"]')
    assert shown[0].get("data-outlet") == "bbc_arabic"
    assert [(a.get("data-outlet"), a.get("href")) for a in shown[0].xpath('.//p[@class="copies"]/a')] \
        == [("cnn_arabic", "https://cnn_arabic.example/b-cnn"),
            ("france24_ar", "https://france24_ar.example/c-f24")]
    assert len(tree.xpath(f'//li[@class="report"]//h3[contains(., "{title}")]')) == 1
    # Sky's own report (if the grouper joined it) is a report of its own
    assert [r.get("data-outlet") for r in shown[1:]] == \
        (["skynewsarabia"] if g.story_of("d-sky") == sid else [])
    assert len(tree.xpath('//ol[@class="tl"]/li')) == len(g.story_items(sid))


def test_a_shared_story_link_previews_with_its_headline_summary_and_image(
        redis_client, keys, feeds_path, config):
    import dataclasses

    t = datetime(2018, 3, 12, 10, 0, tzinfo=UTC)
    title = "نيبال: مقتل العشرات في تحطم طائرة ركاب بنغلادشية في مطار كاتمندو"
    summary = "تحطمت طائرة ركاب تابعة لشركة يو إس بنغلا أثناء هبوطها في مطار كاتمندو الدولي."
    with_image = dataclasses.replace(report("a-bbc", "bbc_arabic", title, t, summary),
                                     image="https://ichef.example/crash.jpg")
    script_image = dataclasses.replace(report("b-cnn", "cnn_arabic", "خبر آخر تماما عن الطقس",
                                              t, "أمطار غزيرة"), image="javascript:alert(1)")
    g = grouped(redis_client, keys, config, [with_image, script_image])
    app = build_app(redis_client, keys, feeds_path, config, grouper=False,
                    AGG_PUBLIC_URL="https://news.example/")
    c = app.test_client()

    def meta(tree, key):
        return tree.xpath(f'//meta[@property="{key}" or @name="{key}"]/@content')

    sid = g.story_of("a-bbc")
    tree = doc(c.get(f"/stories/{sid}"))
    assert meta(tree, "og:title") == [title] and meta(tree, "og:type") == ["article"]
    assert meta(tree, "og:url") == [f"https://news.example/stories/{sid}"]
    assert tree.xpath('//link[@rel="canonical"]/@href') == meta(tree, "og:url")
    assert meta(tree, "og:description") == [summary] == meta(tree, "description")
    assert meta(tree, "og:image") == ["https://ichef.example/crash.jpg"]
    assert meta(tree, "twitter:card") == ["summary_large_image"]
    assert meta(tree, "og:locale") == ["ar_AR"]
    # an image that is no web address is no preview
    other = doc(c.get(f"/stories/{g.story_of('b-cnn')}"))
    assert meta(other, "og:image") == [] and meta(other, "twitter:card") == ["summary"]
    # other pages preview as the site
    home = doc(c.get("/"))
    assert meta(home, "og:type") == ["website"]
    assert meta(home, "og:site_name") == meta(tree, "og:site_name")


def test_topic_feed_pages_through_its_stories_newest_first(client):
    """The topic feed pages by its stories' newest published report, as the topic page
    orders them: every story once, in the page's order."""
    page_order = card_ids(doc(client.get("/topics/skripal-poisoning")))
    seen, url = [], "/feeds/topics/skripal-poisoning.json?limit=1"
    while url:
        feed = client.get(url).get_json()
        seen += [i["id"].rsplit("/", 1)[1] for i in feed["items"]]
        url = feed.get("next_url", "").split("://", 1)[-1].partition("/")[2]
        url = "/" + url if url else None
        assert len(seen) < 10
    assert seen == page_order and len(seen) == 3
