"""aggregator.syndicate: pure rendering of real ANT items (tests/data/syndicate_ant_items.jsonl)."""
from __future__ import annotations

import dataclasses
import json
import os
import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

import pytest
from lxml import etree

from aggregator import syndicate
from aggregator.syndicate import ArticleEntry, FeedMeta, StoryEntry, render, to_uri
from aggregator.types import Item, Source
from syndicate_ant import SOURCES, gold_stories, jsonfeed_validator, load_rows

A = "{http://www.w3.org/2005/Atom}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# RFC 4151 tag URI, as the W3C feed validator checks atom:id / guid of this form.
TAG_RE = re.compile(
    r"^tag:[a-z0-9.\-]+,\d{4}(-\d{2}(-\d{2})?)?:[0-9A-Za-z;/?:@&=+$.\-_!~*'()%,]*$"
)
URI_CHARS = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")


@pytest.fixture(scope="module")
def data():
    rows = load_rows()
    stories, topics = gold_stories(rows)
    items = {r.item.id: r.item for r in rows}
    return rows, stories, topics, items


def meta(**kw) -> FeedMeta:
    base = dict(
        title="أخبار الشرق الأوسط", base_url="https://akhbar.example/", path="feeds/all",
        self_url="https://akhbar.example/feeds/all.atom", home_url="https://akhbar.example/",
        authority="akhbar.example",
    )
    return FeedMeta(**(base | kw))


def story_entries(data, ids=None):
    rows, stories, topics, items = data
    chosen = [stories[i] for i in ids] if ids else list(stories.values())
    return [StoryEntry(s, tuple(items[i] for i in s.items), SOURCES, topics[s.topic])
            for s in chosen]


def article_entries(data):
    rows, stories, topics, items = data
    return [ArticleEntry(r.item, SOURCES[r.item.source], r.story) for r in rows]


MULTI = "hamdallah-convoy-bombing-gaza"  # 6 reports by 5 outlets


# --- URLs ------------------------------------------------------------------------------

def test_arabic_iri_becomes_a_valid_uri_that_decodes_back():
    iri = ("http://www.alarabiya.net/ar/arab-and-world/2018/03/13/"
           "انفجار-لدى-مرور-موكب-رئيس-الوزراء.html")
    uri = to_uri(iri)
    assert uri.isascii() and URI_CHARS.match(uri)
    assert "%D8%A7%D9%86%D9%81%D8%AC%D8%A7%D8%B1" in uri
    assert unquote(uri) == iri


@pytest.mark.parametrize("raw,expected", [
    ("https://example.com/a%20b?q=%D8%B9", "https://example.com/a%20b?q=%D8%B9"),  # no double
    ("https://example.com/100%-done", "https://example.com/100%25-done"),  # stray %
    ("https://example.com/a b", "https://example.com/a%20b"),
    ("https://عربي.example/x", "https://xn--ngbrx4e.example/x"),  # IDNA host
    ("https://example.com/p?x=عربي&y=1#ف", "https://example.com/p?x=%D8%B9%D8%B1%D8%A8%D9%8A&y=1#%D9%81"),
])
def test_to_uri_cases(raw, expected):
    assert to_uri(raw) == expected


# --- Atom ------------------------------------------------------------------------------

def test_atom_stories_metadata_and_entries(data):
    entries = story_entries(data)
    m = meta(next_url="https://akhbar.example/feeds/all.atom?before=1.0",
             first_url="https://akhbar.example/feeds/all.atom")
    root = etree.fromstring(render("atom", m, entries, "stories"))
    assert root.tag == A + "feed" and root.get(XML_LANG) == "ar"
    links = {ln.get("rel"): ln.get("href") for ln in root.findall(A + "link")}
    assert links["self"] == m.self_url and links["next"] == m.next_url
    assert links["first"] == m.first_url and links["alternate"] == m.home_url
    assert root.find(A + "author/" + A + "name").text
    assert TAG_RE.match(root.findtext(A + "id"))
    got = root.findall(A + "entry")
    assert len(got) == len(entries)
    for e in got:
        assert e.get(XML_LANG) == "ar"
        assert TAG_RE.match(e.findtext(A + "id")), e.findtext(A + "id")
        src = e.find(A + "source")
        assert src.findtext(A + "id") and src.findtext(A + "title") and src.findtext(A + "updated")
        for ln in e.iter(A + "link"):
            assert URI_CHARS.match(ln.get("href")), ln.get("href")
        assert e.findall(A + "author") and all(a.findtext(A + "name") for a in e.findall(A + "author"))


def test_atom_story_entry_lists_every_outlet(data):
    rows, stories, topics, items = data
    story = stories[MULTI]
    root = etree.fromstring(render("atom", meta(), story_entries(data, [MULTI]), "stories"))
    (e,) = root.findall(A + "entry")
    assert e.findtext(A + "id") == f"tag:akhbar.example,2026:story/{MULTI}"
    alt = [ln for ln in e.findall(A + "link") if ln.get("rel") == "alternate"]
    assert [ln.get("href") for ln in alt] == [f"https://akhbar.example/stories/{MULTI}"]
    related = {ln.get("href") for ln in e.findall(A + "link") if ln.get("rel") == "related"}
    assert related == {to_uri(items[i].url) for i in story.items}
    content = e.findtext(A + "content")
    assert e.find(A + "content").get("type") == "html"
    html = etree.fromstring(f"<div>{content}</div>")  # our HTML is well-formed too
    anchors = {a.get("href"): a.text for a in html.iter("a")}
    for i in story.items:
        assert anchors[to_uri(items[i].url)] == items[i].title
    names = [a.findtext(A + "name") for a in e.findall(A + "author")]
    assert names == [SOURCES[s].title for s in story.sources]
    # its topic holds no other story in this fixture: not named (a link to itself is noise)
    assert not topics[story.topic].is_thread and e.find(A + "category") is None
    assert "الموضوع" not in content
    # atom:source names the lead outlet
    lead = items[story.lead_item]
    assert e.find(A + "source").findtext(A + "title") == SOURCES[lead.source].title


def test_a_story_names_its_topic_when_the_topic_has_other_stories(data):
    rows, stories, topics, items = data
    s = stories[MULTI]
    alone = topics[s.topic]
    thread = dataclasses.replace(alone, label="غزة حمد الله", size=alone.size + 1)
    for topic, named in ((alone, False), (thread, True)):
        entry = StoryEntry(s, tuple(items[i] for i in s.items), SOURCES, topic)
        atom = etree.fromstring(render("atom", meta(), [entry], "stories")).find(A + "entry")
        cats = [(c.get("term"), c.get("label")) for c in atom.findall(A + "category")]
        assert (cats == [(s.topic, "غزة حمد الله")]) is named and (cats == []) is not named
        assert ("الموضوع: " in atom.findtext(A + "content")) is named
        rss = etree.fromstring(render("rss", meta(), [entry], "stories")).find("channel/item")
        assert [c.text for c in rss.findall("category")] == (["غزة حمد الله"] if named else [])
        item = json.loads(render("json", meta(), [entry], "stories"))["items"][0]
        assert item.get("tags") == (["غزة حمد الله"] if named else None)
        assert item["_aggregator"]["topic"]["id"] == s.topic  # machines get it either way


def test_story_updated_moves_when_an_outlet_joins_and_id_stays(data):
    rows, stories, topics, items = data
    s = stories[MULTI]
    later = dataclasses.replace(s, updated=s.updated + timedelta(hours=1))
    e1 = StoryEntry(s, tuple(items[i] for i in s.items), SOURCES, None)
    e2 = StoryEntry(later, e1.items, SOURCES, None)
    r1 = etree.fromstring(render("atom", meta(), [e1], "stories")).find(A + "entry")
    r2 = etree.fromstring(render("atom", meta(), [e2], "stories")).find(A + "entry")
    assert r1.findtext(A + "id") == r2.findtext(A + "id")
    assert r2.findtext(A + "updated") > r1.findtext(A + "updated")


def test_a_retitled_report_moves_its_story_entry_updated(data):
    """A review saw a lead report retitled upstream ("محدث: ...") while the story entry's
    updated and the feed's Last-Modified stayed put: an If-Modified-Since got a 304."""
    rows, stories, topics, items = data
    s = stories[MULTI]
    members = tuple(items[i] for i in s.items)
    retitled = dataclasses.replace(members[-1], title="محدث: " + members[-1].title,
                                   updated=s.updated + timedelta(minutes=5))
    before = StoryEntry(s, members, SOURCES, None)
    after = StoryEntry(s, members[:-1] + (retitled,), SOURCES, None)
    assert syndicate.entry_updated(before) == s.updated
    assert syndicate.entry_updated(after) == s.updated + timedelta(minutes=5)
    for fmt in ("atom", "json", "rss"):
        assert render(fmt, meta(), [after], "stories") != render(fmt, meta(), [before], "stories")


def test_atom_articles_have_outlet_source_and_story_category(data):
    root = etree.fromstring(render("atom", meta(), article_entries(data), "articles"))
    rows = data[0]
    got = root.findall(A + "entry")
    assert len(got) == len(rows)
    for e, r in zip(got, rows):
        assert e.findtext(A + "title") == r.item.title
        assert e.findtext(A + "id") == f"tag:akhbar.example,2026:item/{r.item.id}"
        alt = [ln.get("href") for ln in e.findall(A + "link") if ln.get("rel") == "alternate"]
        assert alt == [to_uri(r.item.url)]
        src = e.find(A + "source")
        assert src.findtext(A + "title") == SOURCES[r.item.source].title
        assert src.find(A + "link[@rel='self']").get("href") == SOURCES[r.item.source].url
        terms = {c.get("term") for c in e.findall(A + "category")}
        assert r.story in terms


# --- RSS -------------------------------------------------------------------------------

def test_rss_channel_and_items(data):
    m = meta(self_url="https://akhbar.example/feeds/all.rss",
             next_url="https://akhbar.example/feeds/all.rss?before=1.0")
    root = etree.fromstring(render("rss", m, story_entries(data), "stories"))
    ch = root.find("channel")
    assert root.get("version") == "2.0"
    assert ch.findtext("language") == "ar"
    assert ch.findtext("link") == m.home_url
    atom_links = {ln.get("rel"): ln.get("href") for ln in ch.findall(A + "link")}
    assert atom_links == {"self": m.self_url, "next": m.next_url}
    parsedate_to_datetime(ch.findtext("lastBuildDate"))
    for it in ch.findall("item"):
        guid = it.find("guid")
        assert guid.get("isPermaLink") == "false" and TAG_RE.match(guid.text)
        d = parsedate_to_datetime(it.findtext("pubDate"))  # RFC 822
        assert d.utcoffset() == timedelta(0)
        assert re.match(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$",
                        it.findtext("pubDate"))
        src = it.find("source")
        assert src.get("url").startswith("https://") and src.text
        assert it.findtext("link").startswith("https://akhbar.example/stories/")
        if it.find("category") is not None:  # only a topic of several stories is named
            assert it.find("category").get("domain")
        assert it.find("author") is None  # RSS <author> must be an email; dc:creator instead
        assert it.find("{http://purl.org/dc/elements/1.1/}creator").text


def test_rss_articles_links_are_percent_encoded(data):
    root = etree.fromstring(render("rss", meta(), article_entries(data), "articles"))
    links = [it.findtext("link") for it in root.iter("item")]
    assert all(URI_CHARS.match(ln) for ln in links)
    arabic = [r.item.url for r in data[0] if not r.item.url.isascii()]
    assert arabic, "fixture must include raw Arabic IRIs"
    assert {unquote(ln) for ln in links} >= set(arabic)
    for it, r in zip(root.iter("item"), data[0]):  # story id as a category, in RSS too
        assert r.story in [c.text for c in it.findall("category")]


def test_text_is_escaped_not_injected(data):
    rows, stories, topics, items = data
    evil = dataclasses.replace(
        rows[0].item, title='عنوان <script>alert(1)</script> & "x"\x01',
        summary_text="<b>نص</b>", url="https://e.example/a\"><script>",
    )
    s = dataclasses.replace(stories[rows[0].story], items=(evil.id,), lead_item=evil.id)
    entry = StoryEntry(s, (evil,), SOURCES, None)
    for fmt in ("atom", "rss"):
        root = etree.fromstring(render(fmt, meta(), [entry], "stories"))
        content = (root.findtext(f"{A}entry/{A}content") if fmt == "atom"
                   else root.findtext("channel/item/description"))
        assert "<script>" not in content and "&lt;script&gt;" in content
        assert "<b>" not in content
        frag = etree.fromstring(f"<div>{content}</div>")
        assert not list(frag.iter("script"))
    doc = json.loads(render("json", meta(), [entry], "stories"))
    assert "<script>" not in doc["items"][0]["content_html"]


def test_rendering_is_deterministic(data):
    e = story_entries(data)
    for fmt in ("atom", "rss", "json"):
        assert render(fmt, meta(), e, "stories") == render(fmt, meta(), e, "stories")


def test_empty_feed_is_valid():
    for fmt in ("atom", "rss"):
        etree.fromstring(render(fmt, meta(), [], "stories"))
    doc = json.loads(render("json", meta(), [], "stories"))
    assert doc["items"] == []


# --- JSON Feed -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validator():
    return jsonfeed_validator()


def test_schema_rejects_what_the_spec_rejects(validator):
    good = {"version": "https://jsonfeed.org/version/1.1", "title": "t",
            "items": [{"id": "1", "content_text": "x", "date_published": "2018-03-13T10:00:00Z"}]}
    assert validator.is_valid(good)
    for bad in (
        {**good, "version": "1.1"},
        {**good, "items": [{"id": "1"}]},  # no content
        {**good, "items": [{"id": "1", "content_text": "x", "date_published": "13 Mar 2018"}]},
        {**good, "items": [{"id": "1", "content_text": "x",
                            "date_published": "2018-02-30T10:00:00Z"}]},
        {**good, "items": [{"id": "1", "content_text": "x", "authors": [{}]}]},
        {**good, "unknown": 1},
    ):
        assert not validator.is_valid(bad), bad


def test_json_stories_validate_and_link_story_page_and_lead(data, validator):
    rows, stories, topics, items = data
    m = meta(self_url="https://akhbar.example/feeds/all.json",
             next_url="https://akhbar.example/feeds/all.json?before=1.0")
    doc = json.loads(render("json", m, story_entries(data), "stories"))
    errors = sorted(validator.iter_errors(doc), key=str)
    assert not errors, errors[:3]
    assert doc["language"] == "ar" and doc["next_url"] == m.next_url
    it = next(i for i in doc["items"] if i["id"].endswith(MULTI))
    s = stories[MULTI]
    assert it["url"] == f"https://akhbar.example/stories/{MULTI}"
    assert it["external_url"] == to_uri(items[s.lead_item].url)
    assert len(it["_aggregator"]["reports"]) == len(s.items)
    assert [a["name"] for a in it["authors"]] == [SOURCES[x].title for x in s.sources]


def test_json_articles_validate(data, validator):
    doc = json.loads(render("json", meta(), article_entries(data), "articles"))
    assert not list(validator.iter_errors(doc))
    assert [i["title"] for i in doc["items"]] == [r.item.title for r in data[0]]
    assert all(i["url"].isascii() for i in doc["items"])


# --- rules the W3C Feed Validation Service checks (its error classes named) -----------

REGISTERED_RELS = {"alternate", "related", "self", "enclosure", "via", "first", "last",
                   "next", "previous", "current", "next-archive", "prev-archive"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*)?(Z|[+-]\d\d:\d\d)$")
FULL_URI = re.compile(r"^[a-zA-Z][0-9a-zA-Z+\-.]*:(//)?[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,#]+$")


def _all_outputs(data):
    m = meta(next_url="https://akhbar.example/feeds/all.atom?before=1.0",
             first_url="https://akhbar.example/feeds/all.atom")
    for mode, entries in (("stories", story_entries(data)), ("articles", article_entries(data))):
        yield mode, "atom", etree.fromstring(render("atom", m, entries, mode))
        yield mode, "rss", etree.fromstring(render("rss", m, entries, mode))


def test_w3c_validator_rules_atom(data):
    for mode, fmt, root in _all_outputs(data):
        if fmt != "atom":
            continue
        children = [c.tag for c in root]
        first_entry = children.index(A + "entry")
        assert A + "entry" not in children[:first_entry] and \
            all(t == A + "entry" for t in children[first_entry:]), "MisplacedMetadata"
        assert TAG_RE.match(root.findtext(A + "id"))
        assert RFC3339.match(root.findtext(A + "updated"))
        ids = [e.findtext(A + "id") for e in root.findall(A + "entry")]
        assert len(ids) == len(set(ids)), "DuplicateEntries"
        for scope in [root] + root.findall(A + "entry") + root.findall(f"{A}entry/{A}source"):
            alts = [(ln.get("type"), ln.get("hreflang")) for ln in scope.findall(A + "link")
                    if ln.get("rel", "alternate") == "alternate"]
            assert len(alts) == len(set(alts)), "DuplicateAtomLink"
            for ln in scope.findall(A + "link"):
                assert ln.get("rel") in REGISTERED_RELS, ln.get("rel")
                assert FULL_URI.match(ln.get("href")), ("InvalidIRI", ln.get("href"))
                if ln.get("title") is not None:
                    assert ln.get("title").strip()
                if ln.get("rel") == "self" and ln.get("type"):
                    assert ln.get("type") in ("application/atom+xml", "application/rss+xml")
            for d in ("updated", "published"):
                for el in scope.findall(A + d):
                    assert RFC3339.match(el.text), el.text
        for e in root.findall(A + "entry"):
            assert e.findtext(A + "title").strip()
            assert e.find(A + "author/" + A + "name").text.strip()
            for a in e.findall(A + "author"):
                assert FULL_URI.match(a.findtext(A + "uri"))
            for c in e.findall(A + "category"):
                assert c.get("term").strip()
            for rel in ("first", "next", "last", "previous"):  # FeedHistoryRelInEntry
                assert e.find(f"{A}link[@rel='{rel}']") is None


def test_w3c_validator_rules_rss(data):
    for mode, fmt, root in _all_outputs(data):
        if fmt != "rss":
            continue
        ch = root.find("channel")
        tags = [c.tag for c in ch]
        first_item = tags.index("item")
        assert all(t == "item" for t in tags[first_item:]), "MisplacedItem"
        for required in ("title", "link", "description"):
            assert ch.findtext(required).strip()
        assert FULL_URI.match(ch.findtext("link"))
        guids = [it.findtext("guid") for it in ch.findall("item")]
        assert len(guids) == len(set(guids))
        for it in ch.findall("item"):
            assert it.findtext("title").strip()
            assert FULL_URI.match(it.findtext("link"))
            assert it.find("guid").get("isPermaLink") == "false"  # InvalidPermalink for tag:
            for c in it.findall("category"):
                assert c.text and c.text.strip()
            src = it.find("source")
            assert re.match(r"^https?://[A-Za-z0-9.\-]+(:\d+)?(/|$)", src.get("url"))
            assert it.find("author") is None  # RSS author must be an email address
            for tag in ("title", "link", "guid", "pubDate", "source", "description"):
                assert len(it.findall(tag)) <= 1, ("DuplicateElement", tag)


def test_story_content_reads_as_arabic(data):
    root = etree.fromstring(render("atom", meta(), story_entries(data, [MULTI]), "stories"))
    frag = etree.fromstring(root.findtext(f"{A}entry/{A}content"))
    assert frag.tag == "div" and frag.get("dir") == "rtl"
    texts = "".join(frag.itertext())
    assert "٥ مصادر" in texts  # five outlets, Arabic digits and plural
    assert "١٣ مارس ٢٠١٨" in texts  # Riyadh time of the reports
    assert {s.get("dir") for s in frag.iter("span")} == {"auto"}


def test_long_story_lists_every_outlet_within_the_cap(data):
    rows, stories, topics, items = data
    base = items[stories[MULTI].lead_item]
    many = [dataclasses.replace(base, id=f"r{i:03d}", source=("skynews", "bbc")[i % 2],
                                url=f"https://example.com/{i}",
                                published=base.published + timedelta(minutes=i))
            for i in range(40)]
    old = dataclasses.replace(base, id="old", source="cnn", url="https://example.com/cnn",
                              published=base.published - timedelta(hours=5))
    s = dataclasses.replace(stories[MULTI], items=tuple(i.id for i in [old] + many),
                            sources=("cnn", "skynews", "bbc"), lead_item="old")
    entry = StoryEntry(s, tuple([old] + many), SOURCES, None)
    shown = syndicate.shown_reports(entry)
    assert len(shown) == syndicate.MAX_REPORTS
    assert "old" in {i.id for i in shown}  # the third outlet's only report stays
    assert [i.published for i in shown] == sorted((i.published for i in shown), reverse=True)
    frag = etree.fromstring(etree.fromstring(render("atom", meta(), [entry], "stories"))
                            .findtext(f"{A}entry/{A}content"))
    assert len(list(frag.iter("li"))) == syndicate.MAX_REPORTS
    assert "+١١ تقريرًا" in "".join(frag.itertext())  # 41 - 30, Arabic counting
    doc = json.loads(render("json", meta(), [entry], "stories"))
    agg = doc["items"][0]["_aggregator"]
    assert agg["reports_total"] == 41 and len(agg["reports"]) == syndicate.MAX_REPORTS


def test_an_outlets_section_feeds_count_as_one_source_and_one_article_once(data):
    # BBC's sport feed names BBC's site: its copy of BBC's report (same link) is the same
    # article, and its own report adds a report but not a source.
    rows, stories, topics, items = data
    sport = dataclasses.replace(SOURCES["bbc"], id="bbc-sport", title="بي بي سي عربي - رياضة",
                                url="https://feeds.bbci.co.uk/arabic/sports/rss.xml",
                                site="https://www.bbc.com/arabic/", rank=9)
    sources = {**SOURCES, "bbc-sport": sport}
    s = stories[MULTI]
    members = [items[i] for i in s.items]
    bbc = next(i for i in members if i.source == "bbc")
    copy = dataclasses.replace(bbc, id="sport-copy", source="bbc-sport",
                               published=bbc.published + timedelta(minutes=1))
    own = dataclasses.replace(bbc, id="sport-own", source="bbc-sport", title="تقرير آخر",
                              url="https://www.bbc.com/arabic/sports-1",
                              published=bbc.published + timedelta(minutes=2))
    grown = dataclasses.replace(s, items=(*s.items, copy.id, own.id),
                                sources=(*s.sources, "bbc-sport"))
    entry = StoryEntry(grown, (*members, copy, own), sources, None)
    assert len(s.sources) == 5 and len(entry.outlets) == 5
    assert [i.id for i in entry.reports] == [
        i.id for i in sorted((*members, own), key=lambda i: (i.published, i.id != s.lead_item))]
    shown = syndicate.shown_reports(entry)
    assert copy.id not in {i.id for i in shown} and len(shown) == len(members) + 1
    frag = etree.fromstring(etree.fromstring(render("atom", meta(), [entry], "stories"))
                            .findtext(f"{A}entry/{A}content"))
    assert "٥ مصادر" in "".join(frag.itertext())
    atom = etree.fromstring(render("atom", meta(), [entry], "stories")).find(f"{A}entry")
    assert len(atom.findall(f"{A}author")) == 5
    doc = json.loads(render("json", meta(), [entry], "stories"))["items"][0]
    assert len(doc["authors"]) == 5
    assert doc["_aggregator"]["reports_total"] == len(members) + 1


def test_article_without_story_or_link_still_renders(data):
    # Stored but not yet grouped (no story), and a feed entry with no link at all.
    it = dataclasses.replace(data[0][0].item, url=None, categories=("سياسة", " "))
    entry = ArticleEntry(it, SOURCES[it.source], None)
    atom = etree.fromstring(render("atom", meta(), [entry], "articles")).find(A + "entry")
    assert atom.find(A + "link") is None and atom.findtext(A + "content")
    assert [c.get("term") for c in atom.findall(A + "category")] == ["سياسة"]
    rss = etree.fromstring(render("rss", meta(), [entry], "articles")).find("channel/item")
    assert rss.find("link") is None and [c.text for c in rss.findall("category")] == ["سياسة"]
    doc = json.loads(render("json", meta(), [entry], "articles"))
    assert "url" not in doc["items"][0] and doc["items"][0]["_aggregator"]["story_id"] is None
    for r in data[0][:3]:  # and with a story but no link, the story category stays
        e = ArticleEntry(dataclasses.replace(r.item, url=None), SOURCES[r.item.source], r.story)
        x = etree.fromstring(render("atom", meta(), [e], "articles")).find(A + "entry")
        assert r.story in [c.get("term") for c in x.findall(A + "category")]


def test_untitled_item_of_an_unknown_source(data):
    it = dataclasses.replace(data[0][0].item, title="  ", source="gone")
    src = syndicate._unknown_source(meta(), "gone")
    for fmt in ("atom", "rss"):
        root = etree.fromstring(render(fmt, meta(), [ArticleEntry(it, src, None)], "articles"))
        title = (root.findtext(f"{A}entry/{A}title") if fmt == "atom"
                 else root.findtext("channel/item/title"))
        assert title == it.summary_text.strip()[:80]
    doc = json.loads(render("json", meta(), [ArticleEntry(it, src, None)], "articles"))
    assert doc["items"][0]["title"] == it.summary_text.strip()[:80]
    assert doc["items"][0]["_aggregator"]["source"]["feed_url"] == \
        "https://akhbar.example/feeds/sources/gone.rss"


# --- Atom against RFC 4287's own schema (Appendix B, tests/data/atom-rfc4287.rng) -------

@pytest.fixture(scope="module")
def atom_rng():
    path = os.path.join(os.path.dirname(__file__), "data", "atom-rfc4287.rng")
    return etree.RelaxNG(etree.parse(path))


def test_atom_outputs_match_the_rfc4287_schema(data, atom_rng):
    docs = [root for _mode, fmt, root in _all_outputs(data) if fmt == "atom"]
    docs.append(etree.fromstring(render("atom", meta(), [], "stories")))
    for doc in docs:
        assert atom_rng.validate(doc), atom_rng.error_log.last_error


def test_a_report_image_is_the_thumbnail_feed_readers_show(data, atom_rng):
    import feedparser

    rows, stories, topics, items = data
    s = stories[MULTI]
    members = [items[i] for i in s.items]
    lead = next(i for i in members if i.id == s.lead_item)
    pictured = dataclasses.replace(lead, image="https://ichef.example/غزة 1.jpg")
    others = [m for m in members if m.id != lead.id]
    story = StoryEntry(s, (pictured, *others), SOURCES, topics[s.topic])
    article = ArticleEntry(pictured, SOURCES[lead.source], s.id)
    plain = ArticleEntry(others[0], SOURCES[others[0].source], s.id)
    want = "https://ichef.example/%D8%BA%D8%B2%D8%A9%201.jpg"
    for fmt in ("atom", "rss"):
        for mode, entries in (("stories", [story]), ("articles", [article, plain])):
            body = render(fmt, meta(), entries, mode)
            if fmt == "atom":
                assert atom_rng.validate(etree.fromstring(body)), atom_rng.error_log.last_error
            parsed = feedparser.parse(body)
            assert [e.get("media_thumbnail", [{}])[0].get("url") for e in parsed.entries] == \
                [want] + [None] * (len(entries) - 1), (fmt, mode)


@pytest.mark.parametrize("breakage", ["no id", "author without name", "bad date", "type"])
def test_the_atom_schema_can_fail(data, atom_rng, breakage):
    doc = etree.fromstring(render("atom", meta(), story_entries(data, [MULTI]), "stories"))
    e = doc.find(A + "entry")
    if breakage == "no id":
        e.remove(e.find(A + "id"))
    elif breakage == "author without name":
        a = e.find(A + "author")
        a.remove(a.find(A + "name"))
    elif breakage == "bad date":
        e.find(A + "updated").text = "Tue, 13 Mar 2018 13:47:29 +0000"
    else:
        e.find(A + "content").set("type", "text/plain+html")
    assert not atom_rng.validate(doc)


def test_a_story_entry_puts_its_lead_first_among_reports_of_the_same_moment(data):
    # A clone feed publishes the lead's report at the same second with an id that sorts
    # first, and an outlet's section feed carried the lead's article before its main feed
    # did. The lead (the grouper's choice, by the operator's ranking) still comes first,
    # its own feed names its outlet, and its copy of the article is the one kept.
    rows, stories, topics, items = data
    s = stories[MULTI]
    members = [items[i] for i in s.items]
    lead = next(i for i in members if i.id == s.lead_item)
    twin = dataclasses.replace(lead, id="0-twin", source="cnn",
                               url="https://arabic.cnn.com/twin")
    section = dataclasses.replace(SOURCES[lead.source], id="lead-section",
                                  title="قسم", url="https://example.com/section.xml")
    early_copy = dataclasses.replace(lead, id="0-copy", source="lead-section",
                                     published=lead.published - timedelta(minutes=5))
    sources = {**SOURCES, "lead-section": section}
    grown = dataclasses.replace(s, items=(*s.items, twin.id, early_copy.id),
                                sources=("lead-section", *s.sources))
    entry = StoryEntry(grown, (early_copy, *members, twin), sources, None)
    assert entry.outlets[0] == lead.source
    assert early_copy not in entry.reports
    at_lead = [i.id for i in entry.reports if i.published == lead.published]
    assert at_lead[0] == lead.id and twin.id in at_lead
    shown = [i.id for i in syndicate.shown_reports(entry) if i.published == lead.published]
    assert shown[0] == lead.id


@pytest.mark.parametrize("reports,rank,expected", [
    # same second: the lead, then the others by the operator's ranking, not by item id
    ([("a-clone", "clone", 0), ("b-lead", "bbc", 0), ("c-cnn", "cnn", 0)],
     {"bbc": 0, "cnn": 1, "clone": 2}, ["b-lead", "c-cnn", "a-clone"]),
    # an unknown source goes after ranked ones; time comes before any ranking
    ([("a-x", "unknown", 0), ("b-lead", "bbc", 60), ("c-cnn", "cnn", 0)],
     {"bbc": 0, "cnn": 1}, ["c-cnn", "a-x", "b-lead"]),
    # no ranking: the order the grouper stored them in
    ([("a-clone", "clone", 0), ("b-lead", "bbc", 0), ("c-cnn", "cnn", 0)],
     None, ["b-lead", "a-clone", "c-cnn"]),
])
def test_reports_of_one_moment_follow_the_lead_then_the_ranking(reports, rank, expected):
    from aggregator.types import story_reports

    t0 = datetime(2018, 10, 2, 16, 53, tzinfo=timezone.utc)
    items = [Item(id=i, source=src, url=f"https://{src}.example/{i}", guid=None, title=i,
                  summary_html="", summary_text="", published=t0 + timedelta(seconds=dt),
                  first_seen=t0, updated=t0, content_hash=i) for i, src, dt in reports]
    sources = None if rank is None else {
        sid: Source(id=sid, url=f"https://{sid}.example/rss", title=sid, rank=r)
        for sid, r in rank.items()}
    assert [it.id for it in story_reports(items, "b-lead", sources=sources)] == expected


@pytest.mark.parametrize("links,kept", [
    # CNN Arabic lists some articles under http and https (158 items in ANT)
    (["http://arabic.cnn.com/tech/video/2018/09/13/v65460",
      "https://arabic.cnn.com/tech/video/2018/09/13/v65460"], [0]),
    (["https://a.example/x", "https://a.example/x"], [0]),
    (["https://a.example/x", "https://a.example/X"], [0, 1]),  # paths are case-sensitive
    (["https://a.example/x", "https://b.example/x"], [0, 1]),
    (["ftp://a.example/x", "http://a.example/x"], [0, 1]),
    ([None, None], [0, 1]),  # no link: nothing to say they are one article
])
def test_one_report_per_article(links, kept):
    from aggregator.types import one_per_article
    assert one_per_article(list(range(len(links))), lambda i: links[i]) == kept


def test_a_story_entry_shows_an_article_listed_under_http_and_https_once(data):
    rows, stories, topics, items = data
    s = stories[MULTI]
    members = [items[i] for i in s.items]
    lead = next(i for i in members if i.id == s.lead_item)
    other_scheme = ("http://" if lead.url.startswith("https://") else "https://") + \
        lead.url.split("://", 1)[1]
    again = dataclasses.replace(lead, id="again", url=other_scheme)
    grown = dataclasses.replace(s, items=(*s.items, again.id))
    entry = StoryEntry(grown, (*members, again), SOURCES, None)
    assert [i.id for i in entry.reports].count(lead.id) == 1
    assert "again" not in [i.id for i in entry.reports]
