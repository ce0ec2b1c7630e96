"""Items and stories -> RSS 2.0 / Atom 1.0 (feedgen + our extension) / JSON Feed 1.1 bytes.

Pure: the same inputs give the same bytes (no "now" anywhere: feedgen's own defaults for
updated/lastBuildDate are always overridden), so every web worker that renders one output
at one store version produces one strong ETag.

Identifiers (never change them: feed readers key read/unread state on them):
  feed   tag:<authority>,2026:feed/<path>/<mode>[?q=<query>]
  story  tag:<authority>,2026:story/<story id>
  item   tag:<authority>,2026:item/<item id>
<authority> is the public host name (FeedMeta.authority), fixed per deployment.

What feedgen 1.0 does not do and our `agg` extension adds (through feedgen's extension
mechanism, not by editing the serialised string):
  - xml:lang on every Atom entry;
  - a full atom:source (id, title, updated, links) — feedgen writes only title and link;
  - RFC 5005 paging links (next/first) in RSS, where feedgen only writes rel=self;
  - Atom entry links with their rel/type/title: feedgen 1.0's atom_entry() drops every
    attribute but href (it rebinds its loop variable), which would turn our related
    links into duplicate rel=alternate links — invalid Atom (RFC 4287 4.1.1);
  - RSS <source url> without also writing feedgen's partial atom:source.
"""
from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Literal, Union
from urllib.parse import quote, urlsplit, urlunsplit

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem

from .types import Item, Source, Story, Topic, story_reports

UTC = timezone.utc
ATOM_NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
TAG_DATE = "2026"  # part of every entry id: fixed forever (RFC 4151 tag URIs)
JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # "updated" of an empty feed: deterministic

Fmt = Literal["rss", "atom", "json"]
Mode = Literal["stories", "articles"]

CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}


# --- inputs ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FeedMeta:
    title: str
    base_url: str  # public root with trailing slash, e.g. "https://akhbar.example/"
    path: str  # the output's identity without extension/params, e.g. "feeds/all"
    self_url: str  # absolute URL of this very document (params included)
    home_url: str  # the HTML page this feed mirrors
    authority: str  # tag URI authority: the public host name
    description: str = ""
    next_url: str | None = None  # RFC 5005 rel=next (older entries)
    first_url: str | None = None  # RFC 5005 rel=first (set when this is not the first page)
    query: str | None = None  # search query: part of the feed's identity
    language: str = "ar"
    updated: datetime | None = None  # default: newest entry, else EPOCH
    generator: str = "Arabic News Aggregator"
    generator_uri: str | None = None
    ttl_minutes: int = 10
    timezone: str = "Asia/Riyadh"  # times written inside story content (display only)


@dataclass(frozen=True)
class ArticleEntry:
    item: Item
    source: Source
    story_id: str | None = None


@dataclass(frozen=True)
class StoryEntry:
    story: Story
    items: tuple[Item, ...]  # members, oldest first; the lead is among them
    sources: Mapping[str, Source]  # source id -> Source for every member
    topic: Topic | None = None

    @property
    def lead(self) -> Item:
        for it in self.items:
            if it.id == self.story.lead_item:
                return it
        return self.items[0]

    def outlet_of(self, source_id: str) -> str:
        src = self.sources.get(source_id)
        return src.outlet if src is not None else source_id

    @cached_property
    def outlets(self) -> list[str]:
        """The story's sources, one per outlet (Source.outlet: an outlet's section feeds
        count once): the lead's first, then in the order they reported it, as the story
        page lists them."""
        firsts: dict[str, str] = {self.outlet_of(self.lead.source): self.lead.source}
        for sid in [*(it.source for it in self.reports), *self.story.sources]:
            firsts.setdefault(self.outlet_of(sid), sid)
        return list(firsts.values())

    @cached_property  # asked by every output of the entry: its list, counts and authors
    def reports(self) -> list[Item]:
        """The members as types.story_reports lists them (as the story page does)."""
        return story_reports(self.items, self.story.lead_item, keep=self.lead,
                             sources=self.sources)


Entry = Union[ArticleEntry, StoryEntry]

MAX_REPORTS = 30  # reports listed per story entry; the story page has them all


def shown_reports(entry: StoryEntry, limit: int = MAX_REPORTS) -> list[Item]:
    """The reports a story entry lists, newest first: every outlet's newest report, then
    the newest others up to `limit`. A story that runs for days can gather hundreds of
    reports; the hot combined feed must stay small, and every outlet must still show."""
    # a stable sort: the lead stays first among reports of the same moment (entry.reports)
    newest_first = sorted(entry.reports, key=lambda i: i.published, reverse=True)
    chosen: dict[str, Item] = {}
    outlets: set[str] = set()
    for it in newest_first:
        outlet = entry.outlet_of(it.source)
        if outlet not in outlets:
            outlets.add(outlet)
            chosen[it.id] = it
    for it in newest_first:
        if len(chosen) >= limit:
            break
        chosen.setdefault(it.id, it)
    return [it for it in newest_first if it.id in chosen]


# --- helpers ---------------------------------------------------------------------------

# Characters XML 1.0 forbids (lxml refuses them) and non-characters feed validators flag.
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def clean(text: str | None) -> str:
    return _BAD_XML.sub("", text or "")


def to_uri(url: str | None) -> str | None:
    """An IRI (raw Arabic path, as Al Arabiya and France 24 publish) -> a valid URI.

    RSS and Atom links must be URIs: non-ASCII is UTF-8 percent-encoded, the host is IDNA;
    existing %XX escapes are kept (no double encoding), a stray '%' becomes %25.
    """
    if not url:
        return None
    url = clean(url).strip()
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.hostname and not parts.hostname.isascii():
        host = parts.hostname.encode("idna").decode("ascii")
        userinfo, _, hostport = netloc.rpartition("@")
        port = f":{parts.port}" if parts.port else ""
        netloc = (userinfo + "@" if userinfo else "") + host + port

    def enc(s: str, safe: str) -> str:
        return quote(_STRAY_PERCENT.sub("%25", s), safe=safe + "%")

    sub_delims = "!$&'()*+,;="
    path = enc(parts.path, "/:@-._~" + sub_delims)
    query = enc(parts.query, "/?:@-._~" + sub_delims)
    fragment = enc(parts.fragment, "/?:@-._~" + sub_delims)
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def seg(value: str) -> str:
    """One path segment of our own URLs and tag URIs (ids may hold anything)."""
    return quote(value, safe="-._~")


def _utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(microsecond=0)


def _rfc3339(dt: datetime) -> str:
    return _utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def tag_uri(authority: str, kind: str, ident: str) -> str:
    return f"tag:{authority},{TAG_DATE}:{kind}/{seg(ident)}"


def story_url(meta: FeedMeta, story_id: str) -> str:
    return f"{meta.base_url}stories/{seg(story_id)}"


def topic_url(meta: FeedMeta, topic_id: str) -> str:
    return f"{meta.base_url}topics/{seg(topic_id)}"


def feed_id(meta: FeedMeta, mode: Mode) -> str:
    fid = f"tag:{meta.authority},{TAG_DATE}:{quote(meta.path, safe='/-._~')}/{mode}"
    if meta.query:
        fid += "?q=" + quote(meta.query, safe="")
    return fid


def source_home(meta: FeedMeta, source: Source) -> str:
    return to_uri(source.site) or f"{meta.base_url}sources"


def source_feed(meta: FeedMeta, source: Source) -> str:
    return to_uri(source.url) or f"{meta.base_url}feeds/sources/{seg(source.id)}.rss"


def entry_updated(entry: Entry) -> datetime:
    """When an entry last changed, for its updated/date_modified and the feed's
    Last-Modified: a story entry shows its reports (a retitled one changes it) and its
    thread's name and link."""
    if isinstance(entry, StoryEntry):
        newest = max([entry.story.updated, *(it.updated for it in entry.items if it.updated)])
        topic = entry.topic
        if topic is not None and topic.is_thread and topic.named is not None:
            return max(newest, topic.named)
        return newest
    return max(entry.item.updated, entry.item.published)


def _arabic_display():
    """The site's Arabic counting and date wording (web/arabic_time.py, pure functions),
    so a feed reader sees '٥ مصادر' and '١٣ مارس ٢٠١٨، ١٦:٤٥' as the pages write them.
    Imported lazily: rendering must not need the web package to be importable."""
    try:
        from web import arabic_time
    except ImportError:  # pragma: no cover - both ship together
        return None
    return arabic_time


RTL_LANGS = {"ar", "fa", "ur", "he", "ps", "ckb"}


def story_content_html(meta: FeedMeta, entry: StoryEntry) -> str:
    """Every outlet's headline and link. Built by us from plain text: everything escaped.
    Only elements and attributes every feed reader keeps (p, ul, li, a, span; dir)."""
    e = html.escape
    lead = entry.lead
    at = _arabic_display()
    direction = "rtl" if (lead.language or meta.language).split("-")[0] in RTL_LANGS else "auto"
    parts = [f'<div dir="{direction}">']
    if lead.summary_text:
        parts.append(f"<p>{e(clean(lead.summary_text))}</p>")
    n = len(entry.outlets)
    counted = at.count(n, at.SOURCE) if at else f"{n} مصادر"
    parts.append(f"<p>{e(counted)}:</p>")
    parts.append("<ul>")
    shown = shown_reports(entry)
    # Newest report first, like the rest of the feed.
    for it in shown:
        src = entry.sources.get(it.source)
        outlet = src.title if src else it.source
        when = at.absolute(it.published, meta.timezone) if at else _rfc3339(it.published)
        title = e(clean(it.title))
        link = to_uri(it.url)
        head = f'<a href="{e(link)}">{title}</a>' if link else title
        # dir=auto: an outlet named in Latin letters (BBC, CNN) stays isolated in RTL text.
        parts.append(f'<li>{head} — <span dir="auto">{e(clean(outlet))}</span>، '
                     f"{e(when)}</li>")
    parts.append("</ul>")
    if len(shown) < len(entry.reports):
        more = len(entry.reports) - len(shown)
        more_text = f"+{at.count(more, at.REPORT)}" if at else f"+{more}"
        parts.append(f"<p>{e(more_text)}</p>")
    if entry.topic and entry.topic.is_thread:
        parts.append(
            f'<p>الموضوع: <a href="{e(topic_url(meta, entry.topic.id))}">'
            f"{e(clean(entry.topic.label or entry.topic.id))}</a></p>"
        )
    parts.append(f'<p><a href="{e(story_url(meta, entry.story.id))}">التغطية الكاملة</a></p>')
    parts.append("</div>")
    return "".join(parts)


# --- feedgen extension -----------------------------------------------------------------

class AggFeedExtension(BaseExtension):
    """Feed level: RFC 5005 paging links in RSS (feedgen writes only atom:link rel=self)."""

    def __init__(self):
        self._links: list[dict] = []
        self._lang: str | None = None

    def extend_ns(self):
        return {}

    def paging_link(self, rel: str, href: str, type_: str) -> None:
        self._links.append({"rel": rel, "href": href, "type": type_})

    def lang(self, value: str) -> None:
        self._lang = value

    def extend_rss(self, rss):
        channel = rss.find("channel")
        for ln in self._links:
            xml_elem(f"{{{ATOM_NS}}}link", channel, rel=ln["rel"], href=ln["href"],
                     type=ln["type"])
        return rss

    def extend_atom(self, feed):
        if self._lang:
            feed.set(XML_LANG, self._lang)
        return feed


class AggEntryExtension(BaseEntryExtension):
    """Entry level: xml:lang, a complete atom:source, RSS <source url>."""

    def __init__(self):
        self._lang: str | None = None
        self._source: dict | None = None
        self._links: list[dict] = []

    def extend_ns(self):
        return {}

    def lang(self, value: str) -> None:
        self._lang = value

    def link(self, href: str, rel: str, type_: str | None = None,
             title: str | None = None) -> None:
        self._links.append({"href": href, "rel": rel, "type": type_, "title": title})

    def source(self, *, id: str, title: str, updated: datetime, feed_url: str,
               site_url: str | None) -> None:
        self._source = dict(id=id, title=title, updated=updated, feed_url=feed_url,
                            site_url=site_url)

    def extend_atom(self, entry):
        if self._lang:
            entry.set(XML_LANG, self._lang)
        for ln in self._links:
            el = xml_elem("link", entry, href=ln["href"], rel=ln["rel"])
            if ln["type"]:
                el.set("type", ln["type"])
            if ln["title"]:
                el.set("title", ln["title"])
        s = self._source
        if s:
            src = xml_elem("source", entry)
            xml_elem("id", src).text = s["id"]
            xml_elem("title", src).text = s["title"]
            xml_elem("updated", src).text = _rfc3339(s["updated"])
            xml_elem("link", src, rel="self", href=s["feed_url"])
            if s["site_url"]:
                xml_elem("link", src, rel="alternate", type="text/html", href=s["site_url"])
        return entry

    def extend_rss(self, item):
        s = self._source
        if s:
            xml_elem("source", item, url=s["feed_url"]).text = s["title"]
        return item


# --- XML (feedgen) ---------------------------------------------------------------------

def _feed_generator(fmt: Fmt, meta: FeedMeta, entries: Sequence[Entry], mode: Mode):
    fg = FeedGenerator()
    fg.register_extension("agg", AggFeedExtension, AggEntryExtension)
    fg.load_extension("dc", atom=False, rss=True)  # dc:creator: RSS <author> needs an email
    # media:thumbnail: the picture feed readers (Feedly, Inoreader, NetNewsWire) show
    fg.load_extension("media", atom=True, rss=True)
    updated = meta.updated or max((entry_updated(e) for e in entries), default=EPOCH)
    updated = _utc(updated)

    fg.id(feed_id(meta, mode))
    fg.title(clean(meta.title))
    fg.subtitle(clean(meta.description or meta.title))  # RSS <description> is required
    fg.language(meta.language)
    fg.agg.lang(meta.language)
    fg.updated(updated)
    fg.lastBuildDate(updated)
    fg.author({"name": meta.generator, "uri": meta.base_url})
    fg.generator(meta.generator, uri=meta.generator_uri)
    fg.ttl(meta.ttl_minutes)
    self_type = "application/rss+xml" if fmt == "rss" else "application/atom+xml"
    fg.link(href=meta.self_url, rel="self", type=self_type)
    if fmt == "atom":
        if meta.first_url:
            fg.link(href=meta.first_url, rel="first", type=self_type)
        if meta.next_url:
            fg.link(href=meta.next_url, rel="next", type=self_type)
    else:
        if meta.first_url:
            fg.agg.paging_link("first", meta.first_url, self_type)
        if meta.next_url:
            fg.agg.paging_link("next", meta.next_url, self_type)
    # Last: feedgen takes RSS <channel><link> from the last link added.
    fg.link(href=meta.home_url, rel="alternate", type="text/html")

    # feedgen prepends by default; 'append' keeps our newest-first order.
    for entry in entries:
        fe = fg.add_entry(order="append")
        if isinstance(entry, StoryEntry):
            _story_entry(fe, fmt, meta, entry)
        else:
            _article_entry(fe, fmt, meta, entry)
    return fg


def _thumbnail(fe, it: Item) -> None:
    image = to_uri(it.image) if it.image else None
    if image:
        fe.media.thumbnail({"url": image}, group=None)  # group=None: no <media:group> around it


def _article_title(it: Item) -> str:
    """Feeds without titles exist; RSS and Atom readers need one (the validator too)."""
    return clean(it.title).strip() or clean(it.summary_text).strip()[:80] or it.id


def _article_entry(fe, fmt: Fmt, meta: FeedMeta, entry: ArticleEntry) -> None:
    it, src = entry.item, entry.source
    fe.id(tag_uri(meta.authority, "item", it.id))  # also RSS guid isPermaLink="false"
    fe.title(_article_title(it))
    if entry.story_id:
        _link(fe, fmt, story_url(meta, entry.story_id), "related", "التغطية الكاملة")
        # No label: feedgen writes an RSS <category> from the label when there is one.
        fe.category(term=entry.story_id, scheme=f"{meta.base_url}stories/")
    # The alternate link goes last: newsboat takes an Atom entry's link from its last
    # <link>, whatever the rel; feedparser picks rel=alternate wherever it is.
    link = to_uri(it.url)
    if link:
        _link(fe, fmt, link, "alternate")
    for cat in it.categories:
        if clean(cat).strip():
            fe.category(term=clean(cat).strip())
    body = (clean(it.summary_html) or html.escape(clean(it.summary_text))
            or html.escape(clean(it.title)))
    fe.content(body, type="html")  # RSS: <description>
    _thumbnail(fe, it)
    published = _utc(it.published)
    fe.published(published)
    fe.pubDate(published)
    fe.updated(_utc(entry_updated(entry)))
    author = clean(it.author or src.title)
    if fmt == "atom":
        fe.author({"name": author, "uri": source_home(meta, src)})
    else:
        fe.dc.dc_creator(author)
    fe.agg.lang(it.language or meta.language)
    fe.agg.source(
        id=source_feed(meta, src), title=clean(src.title), updated=_utc(it.updated),
        feed_url=source_feed(meta, src), site_url=to_uri(src.site),
    )


def _story_entry(fe, fmt: Fmt, meta: FeedMeta, entry: StoryEntry) -> None:
    story, lead = entry.story, entry.lead
    lead_src = entry.sources.get(lead.source) or _unknown_source(meta, lead.source)
    fe.id(tag_uri(meta.authority, "story", story.id))
    fe.title(clean(lead.title) or clean(story.label) or story.id)
    # One related link per outlet report: their headlines and addresses, machine-readable.
    seen = set()
    for it in shown_reports(entry):
        link = to_uri(it.url)
        if link and link not in seen:
            seen.add(link)
            src = entry.sources.get(it.source)
            _link(fe, fmt, link, "related",
                  clean(f"{src.title if src else it.source}: {it.title}"))
    # Last, for newsboat (see _article_entry).
    _link(fe, fmt, story_url(meta, story.id), "alternate")
    if entry.topic and entry.topic.is_thread:
        fe.category(term=entry.topic.id, scheme=f"{meta.base_url}topics/",
                    label=clean(entry.topic.label) or None)
    fe.content(story_content_html(meta, entry), type="html")
    _thumbnail(fe, lead)
    fe.published(_utc(story.first_published))
    fe.pubDate(_utc(story.first_published))
    fe.updated(_utc(entry_updated(entry)))
    outlets = [entry.sources.get(s) or _unknown_source(meta, s) for s in entry.outlets]
    if fmt == "atom":
        for src in outlets:
            fe.author({"name": clean(src.title), "uri": source_home(meta, src)})
    else:
        fe.dc.dc_creator("، ".join(clean(s.title) for s in outlets))
    fe.agg.lang(lead.language or meta.language)
    lead_updated = max((i.updated for i in entry.items if i.source == lead_src.id),
                       default=lead.updated)
    fe.agg.source(
        id=source_feed(meta, lead_src), title=clean(lead_src.title),
        updated=_utc(lead_updated), feed_url=source_feed(meta, lead_src),
        site_url=to_uri(lead_src.site),
    )


def _link(fe, fmt: Fmt, href: str, rel: str, title: str | None = None) -> None:
    if fmt == "atom":
        fe.agg.link(href, rel, "text/html", title)
    elif rel == "alternate":
        fe.link(href=href, rel="alternate")  # RSS <link>; RSS has no related links


def _unknown_source(meta: FeedMeta, source_id: str) -> Source:
    """A source no longer in feeds.yaml: its items stay in outputs until retention."""
    return Source(id=source_id, url=f"{meta.base_url}feeds/sources/{seg(source_id)}.rss",
                  title=source_id)


# --- JSON Feed 1.1 ---------------------------------------------------------------------

def _json_feed(meta: FeedMeta, entries: Sequence[Entry], mode: Mode) -> dict:
    feed = {
        "version": JSONFEED_VERSION,
        "title": meta.title,
        "home_page_url": meta.home_url,
        "feed_url": meta.self_url,
        "description": meta.description or meta.title,
        "language": meta.language,
        "authors": [{"name": meta.generator, "url": meta.base_url}],
    }
    if meta.next_url:
        feed["next_url"] = meta.next_url
    items = []
    for entry in entries:
        items.append(_json_story(meta, entry) if isinstance(entry, StoryEntry)
                     else _json_article(meta, entry))
    feed["items"] = items
    return feed


def _json_article(meta: FeedMeta, entry: ArticleEntry) -> dict:
    it, src = entry.item, entry.source
    out = {
        "id": tag_uri(meta.authority, "item", it.id),
        "title": _article_title(it),
        "content_html": clean(it.summary_html) or html.escape(clean(it.summary_text))
        or html.escape(clean(it.title)),
        "date_published": _rfc3339(it.published),
        "date_modified": _rfc3339(entry_updated(entry)),
        "authors": [{"name": clean(it.author or src.title), "url": source_home(meta, src)}],
        "language": it.language or meta.language,
    }
    if it.url:
        out["url"] = to_uri(it.url)
    if it.summary_text:
        out["summary"] = clean(it.summary_text)
    if it.image:
        out["image"] = to_uri(it.image)
    tags = [c for c in it.categories if c]
    if tags:
        out["tags"] = tags
    out["_aggregator"] = {
        "source": {"id": src.id, "title": src.title, "feed_url": source_feed(meta, src)},
        "story_id": entry.story_id,
        "story_url": story_url(meta, entry.story_id) if entry.story_id else None,
    }
    return out


def _json_story(meta: FeedMeta, entry: StoryEntry) -> dict:
    story, lead = entry.story, entry.lead
    out = {
        "id": tag_uri(meta.authority, "story", story.id),
        "url": story_url(meta, story.id),
        "title": clean(lead.title) or clean(story.label) or story.id,
        "content_html": story_content_html(meta, entry),
        "date_published": _rfc3339(story.first_published),
        "date_modified": _rfc3339(entry_updated(entry)),
        "authors": [
            {"name": clean(s.title), "url": source_home(meta, s)}
            for s in (entry.sources.get(sid) or _unknown_source(meta, sid)
                      for sid in entry.outlets)
        ],
        "language": lead.language or meta.language,
    }
    if lead.url:
        out["external_url"] = to_uri(lead.url)
    if lead.summary_text:
        out["summary"] = clean(lead.summary_text)
    if lead.image:
        out["image"] = to_uri(lead.image)
    if entry.topic and entry.topic.is_thread:
        out["tags"] = [clean(entry.topic.label) or entry.topic.id]
    out["_aggregator"] = {
        "story_id": story.id,
        "reports_total": len(entry.reports),
        "topic": ({"id": entry.topic.id, "label": entry.topic.label,
                   "url": topic_url(meta, entry.topic.id)} if entry.topic else None),
        "reports": [
            {
                "source": it.source,
                "source_title": (entry.sources[it.source].title
                                 if it.source in entry.sources else it.source),
                "title": clean(it.title),
                "url": to_uri(it.url),
                "date_published": _rfc3339(it.published),
            }
            for it in shown_reports(entry)
        ],
    }
    return out


# --- entry point -----------------------------------------------------------------------

def render(fmt: Fmt, meta: FeedMeta, entries: Sequence[Entry], mode: Mode) -> bytes:
    """One output document as bytes (UTF-8)."""
    if fmt == "json":
        doc = _json_feed(meta, entries, mode)
        # ensure_ascii=False: Arabic stays readable and half the size.
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    fg = _feed_generator(fmt, meta, entries, mode)
    if fmt == "atom":
        return fg.atom_str(pretty=False, encoding="UTF-8")
    if fmt == "rss":
        return fg.rss_str(pretty=False, encoding="UTF-8")
    raise ValueError(f"unknown format {fmt!r}")
