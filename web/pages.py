"""Reader-facing pages: the timeline (/), a story's full coverage, a topic, the sources.

Pages read the store and the grouper when rendered, and the rendered bytes are kept per
store version (web/pagecache.py: one render per page per change, not one per request).
Everything shown is autoescaped Jinja; no page needs JavaScript.

One code path lists stories for every view: walk an item index newest first (the whole
timeline, or a source's, a tag's, a country's), map each item to its story, keep a story the
first time it is met. A story therefore sits where its newest matching report sits, which is
what "newest first" means for a reader, and filters and search need no second ordering.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import redis
from markupsafe import Markup, escape
from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from aggregator.arabic import normalize_for_matching as normalize
from aggregator.search import Query
from aggregator.errors import AggregatorError, StoreError
from aggregator.types import Item, Source, SourceState, Story, story_reports

from . import arabic_time as at
from .extensions import services
from .feeds import SITE_TITLE, public_base
from .headers import SECURITY_HEADERS
from .labels import COUNTRIES, tag_label
from .pagecache import cached_page

log = logging.getLogger(__name__)
UTC = timezone.utc

bp = Blueprint("pages", __name__)

PAGE_SIZE = 30
MAX_PAGE_SIZE = 100
SEARCH_SCAN_CAP = 3000  # items one search request reads before it offers "older"
PALETTE = 12  # outlet badge colours: .o0 … .o11 in static/site.css

# --- display settings -------------------------------------------------------------------

@dataclass(frozen=True)
class Display:
    tz: str
    digits: str  # "arabic" (٠١٢…) or "latin" (012…)
    months: str  # "gregorian" (يناير…) or "levantine" (كانون الثاني…)
    hijri: bool = True  # day headings also give the Hijri date


def display() -> Display:
    cfg = current_app.config
    tz = cfg.get("AGG_TIMEZONE") or services().settings.timezone or "Asia/Riyadh"
    digits = cfg.get("AGG_DIGITS") or os.environ.get("AGG_DIGITS") or "arabic"
    months = cfg.get("AGG_MONTHS") or os.environ.get("AGG_MONTHS") or "gregorian"
    hijri = str(cfg.get("AGG_HIJRI", os.environ.get("AGG_HIJRI", "1")))
    return Display(tz, "latin" if digits == "latin" else "arabic",
                   "levantine" if months == "levantine" else "gregorian",
                   hijri.strip().lower() not in ("0", "false", "no", "off"))


def now_utc() -> datetime:
    # Tests freeze the clock through config; production reads it.
    fixed = current_app.config.get("AGG_NOW")
    return fixed if fixed is not None else datetime.now(UTC)


# --- view models ------------------------------------------------------------------------

@dataclass(frozen=True)
class Outlet:
    """A feed as pages show it. `key` names the outlet it belongs to (Source.outlet): a
    story's coverage counts outlets, not the section feeds of one."""

    id: str
    title: str
    colour: int
    site: str | None = None
    country: str | None = None
    tags: tuple[str, ...] = ()
    language: str = "ar"
    key: str = ""

    def __post_init__(self):
        if not self.key:
            object.__setattr__(self, "key", self.id)


@dataclass(frozen=True)
class Report:
    item: Item
    outlet: Outlet


@dataclass(frozen=True)
class TopicRef:
    id: str
    label: str
    size: int = 0  # stories in the topic

    @property
    def is_thread(self) -> bool:
        """A topic worth a link from a card: one with other stories than this one. Every
        story gets a topic, and a link to a page holding only the same story is noise."""
        return self.size > 1


def _report_item(r: Report) -> Item:
    return r.item


@dataclass
class Card:
    id: str  # story id (an item id when the story is a single report not yet grouped)
    lead: Report
    reports: list[Report]  # oldest first, one per article (an article in two feeds once)
    outlets: list[Outlet]  # one feed per outlet: the lead's first, then by first report
    sort_time: datetime
    topic: TopicRef | None = None

    @property
    def others(self) -> list[Report]:
        """One report (the newest) per other outlet, in the card's outlet order: the
        'also reported' lines under the headline. A headline the card already shows (wire
        copy carried word for word, up to spelling) is left out: the line would add nothing
        the outlet badges do not say."""
        out = []
        shown = {normalize(self.lead.item.title)}
        for o in self.outlets:
            if o.key == self.lead.outlet.key:
                continue
            reps = [r for r in self.reports if r.outlet.key == o.key]
            if reps and (headline := normalize(reps[-1].item.title)) not in shown:
                shown.add(headline)
                out.append(reps[-1])
        return out

    @property
    def newest(self) -> datetime:
        return max(r.item.published for r in self.reports)

    @property
    def first(self) -> datetime:
        return min(r.item.published for r in self.reports)


def colour_of(source_id: str) -> int:
    # Stable across processes and restarts (unlike hash()): an outlet keeps its colour.
    return int(hashlib.blake2s(source_id.encode(), digest_size=2).hexdigest(), 16) % PALETTE


class Reader:
    """Per-request access to items, stories and sources.

    An item the worker has not grouped yet shows as its own story; while feeds.yaml is
    missing or never validated, outlets are named by their source ids.
    """

    def __init__(self):
        self.svc = services()
        self.store = self.svc.store
        self.grouper = self.svc.grouper
        self._sources: dict[str, Source] | None = None

    # sources -----------------------------------------------------------------------------
    @property
    def sources(self) -> dict[str, Source]:
        if self._sources is None:
            try:
                self._sources = {s.id: s for s in self.svc.sources}
            except (OSError, AggregatorError) as e:
                log.warning("feeds config unavailable, showing outlets by id: %s", e)
                self._sources = {}
        return self._sources

    def outlet(self, source_id: str) -> Outlet:
        s = self.sources.get(source_id)
        if s is None:
            return Outlet(source_id, source_id, colour_of(source_id))
        return Outlet(s.id, s.title or s.id, colour_of(s.id), s.site, s.country, tuple(s.tags),
                      s.language or "ar", s.outlet)

    # grouping ----------------------------------------------------------------------------
    def story_ids_of(self, item_ids: list[str]) -> dict[str, str]:
        """item id -> story id; an item not (yet) grouped is its own story."""
        sids = self.grouper.stories_of(item_ids)
        return {iid: sid or iid for iid, sid in zip(item_ids, sids)}

    def stories(self, story_ids: Iterable[str]) -> dict[str, Story]:
        ids = list(dict.fromkeys(story_ids))
        found: dict[str, Story] = {}
        if ids:
            for st in self.grouper.get_stories(ids):
                found[st.id] = st
        missing = [i for i in ids if i not in found]
        if missing:
            for item in self.store.get_items(missing):
                found[item.id] = single_story(item)
        return found

    def topics(self, topic_ids: Iterable[str | None]) -> dict[str, TopicRef]:
        """The topics that exist among the ids, read together."""
        found = self.grouper.get_topics(t for t in topic_ids if t)
        return {t.id: TopicRef(t.id, t.label or t.id, t.size) for t in found.values()}

    # cards -------------------------------------------------------------------------------
    def cards(self, stories: list[Story], sort_times: dict[str, float] | None = None,
              items: dict[str, Item] | None = None, prefer_source: str = "") -> list[Card]:
        """Cards for stories. `prefer_source`: a reader who filtered by an outlet sees that
        outlet's (newest) report as the headline, not the story's overall lead."""
        items = dict(items or {})
        need = [i for st in stories for i in st.items if i not in items]
        for item in self.store.get_items(need):
            items[item.id] = item
        topics = self.topics(st.topic for st in stories)
        cards = []
        for st in stories:
            members = [Report(items[i], self.outlet(items[i].source))
                       for i in st.items if i in items]
            if not members:
                continue  # trimmed by retention since grouping: nothing left to show
            lead = next((r for r in members if r.item.id == st.lead_item), None) \
                or min(members, key=lambda r: r.item.published)
            if prefer_source and lead.outlet.id != prefer_source:
                # that outlet's newest report (the last of equals, as in report order)
                lead = max((r for r in reversed(members) if r.outlet.id == prefer_source),
                           key=lambda r: r.item.published, default=lead)
            # one per article, the headline's copy of its article kept
            reports = story_reports(members, st.lead_item, keep=lead, item=_report_item,
                                    sources=self.sources)
            by_key: dict[str, Outlet] = {lead.outlet.key: lead.outlet}
            # then in the order they reported it (outlets whose reports retention trimmed last)
            for o in [*(r.outlet for r in reports), *map(self.outlet, st.sources)]:
                by_key.setdefault(o.key, o)
            outlets = list(by_key.values())
            score = (sort_times or {}).get(st.id)
            sort_time = (datetime.fromtimestamp(score, UTC) if score is not None
                         else max(r.item.published for r in reports))
            cards.append(Card(st.id, lead, reports, outlets, sort_time, topics.get(st.topic)))
        return cards

    def _briefs(self, ids: list[str]) -> dict[str, Brief]:
        return _briefs_of(self.store, ids)

    def walk(self, index: str, before: float | None, limit: int,
             match: Callable[[Item], bool] | None = None,
             scan_cap: int | None = None, prefer_source: str = "",
             ) -> tuple[list[Card], float | None]:
        """Stories met walking `index` newest first from `before` (exclusive).

        Returns the cards and the cursor for the next page (None at the end). A page never
        ends inside a run of equal timestamps, so an exclusive cursor skips nothing; a story
        with a matching report newer than `before` was on an earlier page and is skipped.
        """
        r = self.store.r
        top = f"({before!r}" if before is not None else "+inf"
        # A search reads many items to find a few: bigger batches, fewer round trips.
        batch = min(250, scan_cap) if scan_cap else max(limit * 2, 50)
        offset = 0
        scanned = 0
        chosen: OrderedDict[str, float] = OrderedDict()
        rejected: set[str] = set()
        stories: dict[str, Story] = {}
        items: dict[str, Item] = {}
        last_score: float | None = None
        exhausted = False
        # Walking a tag's or country's index, a story was on an earlier page only through
        # a report in that index: its other reports (other outlets) were never walked.
        filtered = index != self.store.keys.timeline
        in_index: set[str] = set()
        while True:
            rows = r.zrevrangebyscore(index, top, "-inf", start=offset, num=batch,
                                      withscores=True)
            offset += len(rows)
            if not rows:
                exhausted = True
                break
            ids = [i for i, _ in rows]
            if match is None:
                for item in self.store.get_items(ids):
                    items[item.id] = item
                hits = {i for i in ids if i in items}
            else:
                # Filters read the few fields they test, and whole items and stories are
                # loaded for hits only: a search that matches little stays cheap.
                hits = {i for i, brief in self._briefs(ids).items() if match(brief)}
                for item in self.store.get_items([i for i in ids if i in hits]):
                    items[item.id] = item
                hits &= items.keys()
            sids = self.story_ids_of([i for i in ids if i in hits])
            new_sids = [s for s in dict.fromkeys(sids.values())
                        if s not in chosen and s not in rejected and s not in stories]
            stories.update(self.stories(new_sids))
            member_ids = [i for s in new_sids if s in stories for i in stories[s].items
                          if i not in items]
            for item in self.store.get_items(member_ids):
                items[item.id] = item
            if filtered:  # which members earlier pages of this index can have shown
                members = [i for s in new_sids if s in stories for i in stories[s].items]
                with r.pipeline(transaction=False) as p:
                    for i in members:
                        p.zscore(index, i)
                    in_index.update(i for i, sc in zip(members, p.execute()) if sc is not None)
            full = False
            for iid, score in rows:
                if len(chosen) >= limit and score != last_score:
                    full = True
                    break
                scanned += 1
                last_score = score
                if iid not in hits:
                    continue
                sid = sids[iid]
                if sid in chosen or sid in rejected:
                    continue
                st = stories.get(sid)
                if st is None:
                    continue
                if before is not None and any(
                    items[m].published.timestamp() >= before
                    for m in st.items
                    if m in items and (not filtered or m in in_index)
                    and (match is None or match(items[m]))
                ):
                    rejected.add(sid)  # shown on an earlier page, where it was newer
                    continue
                chosen[sid] = score
            if full:
                break
            if len(rows) < batch:
                exhausted = True
                break
            if scan_cap is not None and scanned >= scan_cap:
                break
        cards = self.cards([stories[s] for s in chosen], dict(chosen), items, prefer_source)
        return cards, (None if exhausted else last_score)


@dataclass(frozen=True)
class Brief:
    """The fields of an item that filters and search test (see list_stories)."""

    id: str
    source: str
    title: str
    summary_text: str


def _briefs_of(store, ids: list[str]) -> dict[str, Brief]:
    with store.r.pipeline(transaction=False) as p:
        for i in ids:
            p.hmget(store.keys.item(i), "source", "title", "summary_text")
        rows = p.execute()
    return {i: Brief(i, src, title or "", text or "")
            for i, (src, title, text) in zip(ids, rows) if src is not None}


def single_story(item: Item) -> Story:
    return Story(
        id=item.id, lead_item=item.id, items=(item.id,), sources=(item.source,),
        first_published=item.published, last_published=item.published,
        updated=item.updated or item.published,
    )


# --- search -----------------------------------------------------------------------------

# --- filters ----------------------------------------------------------------------------

@dataclass
class Filters:
    source: str = ""
    tag: str = ""
    country: str = ""
    q: str = ""
    before: float | None = None
    limit: int = PAGE_SIZE

    def params(self, **changes) -> dict[str, str]:
        p = {"source": self.source, "tag": self.tag, "country": self.country, "q": self.q,
             "limit": self.limit if self.limit != PAGE_SIZE else ""}
        p.update(changes)
        return {k: v for k, v in p.items() if v not in ("", None)}


def parse_filters(args) -> Filters:
    f = Filters(
        source=(args.get("source") or "").strip()[:100],
        tag=(args.get("tag") or "").strip()[:100],
        country=(args.get("country") or "").strip().upper()[:2],
        q=" ".join((args.get("q") or "").split())[:200],
    )
    try:
        f.before = float(args["before"]) if args.get("before") else None
    except ValueError:
        f.before = None
    if f.before is not None and f.before != f.before:  # NaN
        f.before = None
    try:
        f.limit = max(1, min(MAX_PAGE_SIZE, int(args.get("limit", PAGE_SIZE))))
    except ValueError:
        f.limit = PAGE_SIZE
    return f


def list_stories(reader: Reader, f: Filters) -> tuple[list[Card], float | None]:
    """The timeline for a set of filters: pick the narrowest index, check the rest per item."""
    k = reader.store.keys
    checks: list[Callable[[Item], bool]] = []
    if f.source:
        index = k.source_timeline(f.source)
    elif f.country:
        index = k.country_timeline(f.country)
    elif f.tag:
        index = k.tag_timeline(f.tag)
    else:
        index = k.timeline
    srcs = reader.sources
    if f.source and f.country:
        checks.append(lambda it: (srcs.get(it.source) and srcs[it.source].country or "").upper()
                      == f.country)
    if f.tag and (f.source or f.country):
        checks.append(lambda it: it.source in srcs and f.tag in srcs[it.source].tags)
    if f.source:
        checks.append(lambda it: it.source == f.source)
    query = Query.parse(f.q) if f.q else None
    if query is not None:
        if not query.has_words:
            return [], None  # nothing to look for: not everything
        checks.append(query.matches)
    match = (lambda it: all(c(it) for c in checks)) if checks else None
    return reader.walk(index, f.before, f.limit, match,
                       scan_cap=SEARCH_SCAN_CAP if query else None, prefer_source=f.source)


def by_day(cards: list[Card], d: Display) -> list[tuple[str, str, list[Card], str, str]]:
    """[(day key, Arabic heading, cards, "اليوم"/"أمس"/"", Hijri date or "")] in the order
    given (newest first). Days are calendar days in the display timezone, as the reader
    lives them."""
    now = now_utc()
    today = at.day_key(now, d.tz)
    yesterday = at.day_key(now - timedelta(days=1), d.tz)
    days: OrderedDict[str, tuple[str, list[Card], str]] = OrderedDict()
    for c in cards:
        key = at.day_key(c.sort_time, d.tz)
        if key not in days:
            hijri = (at.hijri_day(c.sort_time, d.tz, d.digits) or "") if d.hijri else ""
            days[key] = (at.day_heading(c.sort_time, d.tz, d.digits, d.months), [], hijri)
        days[key][1].append(c)
    rel = {today: "اليوم", yesterday: "أمس"}
    return [(k, h, cs, rel.get(k, ""), hj) for k, (h, cs, hj) in days.items()]


def filter_choices(reader: Reader) -> dict:
    srcs = sorted(reader.sources.values(), key=lambda s: (s.rank, s.id))
    tags = sorted({t for s in srcs for t in s.tags})
    countries = sorted({s.country.upper() for s in srcs if s.country})
    return {
        "sources": [reader.outlet(s.id) for s in srcs],
        "tags": tags,
        "countries": [(c, COUNTRIES.get(c, c)) for c in countries],
    }


# --- template helpers -------------------------------------------------------------------

@bp.app_template_filter("reltime")
def _reltime(when: datetime) -> str:
    return at.relative(when, now_utc(), display().digits)


@bp.app_template_filter("until")
def _until(when: datetime) -> str:
    return at.until(when, now_utc(), display().digits)


@bp.app_template_filter("abstime")
def _abstime(when: datetime) -> str:
    d = display()
    return at.absolute(when, d.tz, d.digits, d.months)


@bp.app_template_filter("clock")
def _clock(when: datetime) -> str:
    d = display()
    return at.clock(when, d.tz, d.digits)


@bp.app_template_filter("dayname")
def _dayname(when: datetime) -> str:
    d = display()
    return at.day_heading(when, d.tz, d.digits, d.months)


@bp.app_template_filter("isotime")
def _isotime(when: datetime) -> str:
    return at.iso(when)


@bp.app_template_filter("digits")
def _digits(value) -> str:
    return at.digits_of(value, display().digits)


@bp.app_template_filter("sources_count")
def _sources_count(n: int) -> str:
    return at.count(n, at.SOURCE, display().digits)


@bp.app_template_filter("reports_count")
def _reports_count(n: int) -> str:
    return at.count(n, at.REPORT, display().digits)


@bp.app_template_filter("stories_count")
def _stories_count(n: int) -> str:
    return at.count(n, at.STORY, display().digits)


@bp.app_template_filter("items_count")
def _items_count(n: int) -> str:
    return at.count(n, at.ITEM, display().digits)


@bp.app_template_filter("errors_count")
def _errors_count(n: int) -> str:
    return at.count(n, at.ERROR, display().digits)


@bp.app_template_filter("seconds_ago")
def _seconds_ago(seconds: float) -> str:
    """'الآن', 'قبل ثانية', 'قبل ثانيتين', 'قبل ٣ ثوانٍ', 'قبل ١١ ثانية' (after قبل, the
    genitive)."""
    n = round(seconds)
    return "الآن" if n < 1 else "قبل " + at.count(n, at.SECOND, display().digits, genitive=True)


@bp.app_template_filter("outcome_label")
def _outcome_label(outcome: str) -> str:
    return OUTCOME_LABELS.get(outcome, outcome)


@bp.app_template_filter("in_a_row")
def _in_a_row(n: int) -> str:
    return at.in_a_row(n, display().digits)


@bp.app_template_filter("duration_ms")
def _duration_ms(ms: float) -> str:
    return at.duration_ms(ms, display().digits)


@bp.app_template_filter("more_sources")
def _more_sources(n: int) -> str:
    return at.more_sources(n, display().digits)


RTL_LANGUAGES = {"ar", "fa", "ur", "he", "iw", "ps", "ckb", "sd", "ug", "yi", "dv", "ku"}


def text_dir(language: str | None) -> str:
    """'rtl' for text in a right-to-left language, else 'auto'.

    dir=auto alone goes by the first strong character, which is wrong for Arabic text that
    starts with a Latin word ("CNN بالعربية", "Brexit يهدد…"): it would lay the whole line
    out left to right and an Arabic reader would meet its words in reverse. Titles carry
    their feed's language, so Arabic ones get rtl and anything else lets the browser decide.
    """
    primary = (language or "").split("-")[0].split("_")[0].lower()
    return "rtl" if primary in RTL_LANGUAGES else "auto"


@bp.app_template_filter("bidi")
def _bidi(obj) -> Markup:
    """Attributes that isolate a piece of text in its own direction (and language when it
    is not the page's): use as <a{{ item|bidi }}>, for Items, Outlets and /status rows."""
    language = (obj.get("language") if isinstance(obj, Mapping)
                else getattr(obj, "language", None)) or "ar"
    attrs = f' dir="{text_dir(language)}"'
    if language.split("-")[0].lower() != "ar":
        attrs += f' lang="{escape(language)}"'
    return Markup(attrs)


@bp.app_template_filter("web_url")
def _web_url(url: str | None) -> str:
    """The URL if it is http(s), else '' (templates then link our story page instead).
    Ingest already canonicalises links; this keeps a javascript: or data: link that ever
    slipped through from becoming a live link on our pages."""
    if not url:
        return ""
    scheme = url.split(":", 1)[0].strip().lower() if ":" in url else ""
    return url if scheme in ("http", "https") else ""


@bp.app_template_filter("tag_label")
def _tag_label(tag: str) -> str:
    return tag_label(tag)


@bp.app_template_filter("country_name")
def _country_name(cc: str | None) -> str:
    return COUNTRIES.get((cc or "").upper(), cc or "")


def site_name() -> str:
    """SITE_NAME, else the title our feeds carry: a reader sees one name in both places."""
    return current_app.config.get("SITE_NAME") or SITE_TITLE


@bp.app_context_processor
def _globals():
    return {
        "site_name": site_name(),
        "site_tagline": current_app.config.get(
            "SITE_TAGLINE", "كل مصادر الخبر في مكان واحد، قصةً قصة"),
        "display_tz": at.zone_label(display().tz, now_utc(), display().digits),
        "display_digits": display().digits,
        "render_now": at.iso(now_utc()),
        # absolute links for what leaves the site: link previews, canonical URLs
        "public_url": lambda path: public_base() + path.lstrip("/"),
    }


# --- security headers -------------------------------------------------------------------

@bp.after_app_request
def _security_headers(response):
    """Every response: no sniffing, a referrer policy; and unless a blueprint set its own
    (the embed pages allow framing), a CSP without inline script that forbids framing.
    Registered app-wide from here so the app factory stays as it is."""
    h = response.headers
    for name, value in SECURITY_HEADERS:
        if request.blueprint == "embed" and name in ("Content-Security-Policy",
                                                     "X-Frame-Options"):
            continue
        h.setdefault(name, value)
    return response


# --- errors -----------------------------------------------------------------------------

def _machine_client() -> bool:
    """A feed or data URL: its errors stay plain responses, not Arabic HTML pages."""
    return request.path.startswith("/feeds/") or request.path.endswith((".json", ".xml",
                                                                         ".opml"))


@bp.app_errorhandler(404)
def _not_found(e):
    if _machine_client():
        return e
    return render_template("error.html", code=404, title="الصفحة غير موجودة",
                           message="لم نجد ما تبحث عنه. ربما حُذف الخبر بعد انقضاء مدة حفظه، "
                                   "أو أن الرابط غير صحيح."), 404


@bp.app_errorhandler(405)
def _method_not_allowed(e):
    if _machine_client():
        return e
    body = render_template("error.html", code=405, title="طريقة الطلب غير مسموحة",
                           message="هذه الصفحة تُقرأ ولا يُرسل إليها شيء.")
    return body, 405, {"Allow": ", ".join(e.valid_methods or ())}


@bp.app_errorhandler(redis.RedisError)
@bp.app_errorhandler(AggregatorError)
def _store_down(e):
    log.error("page failed: %s", e)
    if isinstance(e, (redis.RedisError, StoreError)):
        from .ops import count_redis_error

        count_redis_error()
    body = render_template("error.html", code=503, title="الخدمة غير متاحة مؤقتًا",
                           message="تعذّر الوصول إلى قاعدة الأخبار. حاول بعد قليل.")
    # The worker reconnects within seconds; tell clients and proxies when to come back.
    return body, 503, {"Retry-After": "30"}


# --- routes -----------------------------------------------------------------------------

def _index_key() -> tuple | None:
    """The filters as the view reads them; a search is per reader: not cached."""
    f = parse_filters(request.args)
    if f.q:
        return None
    return (f.source, f.tag, f.country, f.before, f.limit)


@bp.get("/favicon.ico")
def favicon():
    # Browsers ask for /favicon.ico on pages that link no icon (the embed page), and feed
    # readers for the site icon of a feed they subscribe to; ours is the SVG.
    return redirect(url_for("static", filename="favicon.svg"), code=301)


# Crawlers may read the pages and feeds; not search results (each reads up to 3,000 items,
# and every query is a new URL), the embed widgets (other sites' copies of our pages) or
# the admin surfaces. `*` in a path is RFC 9309's wildcard, which the major crawlers follow.
ROBOTS_TXT = """User-agent: *
Disallow: /*?q=
Disallow: /*&q=
Disallow: /embed/
Disallow: /status
Disallow: /metrics
"""


@bp.get("/robots.txt")
def robots():
    resp = current_app.response_class(ROBOTS_TXT, mimetype="text/plain")
    resp.cache_control.public = True
    resp.cache_control.max_age = 86400
    return resp


@bp.get("/")
@cached_page(_index_key)
def index():
    reader = Reader()
    f = parse_filters(request.args)
    cards, cursor = list_stories(reader, f)
    d = display()
    choices = filter_choices(reader)
    active = []
    if f.source:
        outlet = reader.outlet(f.source)
        active.append(("source", outlet.title, text_dir(outlet.language)))
    if f.tag:
        active.append(("tag", tag_label(f.tag), "rtl"))
    if f.country:
        active.append(("country", COUNTRIES.get(f.country, f.country), "rtl"))
    if f.q:
        active.append(("q", f.q, "auto"))
    feed_base = feed_path_for(f)
    # A search that read its share of items before it filled the page says how far back
    # it looked: a short page is then not "all there is".
    searched_to = (datetime.fromtimestamp(cursor, UTC)
                   if f.q and cursor is not None and len(cards) < f.limit else None)
    return render_template(
        "index.html", days=by_day(cards, d), cards=cards, filters=f, choices=choices,
        active=active, next_cursor=cursor, feed_base=feed_base, searched_to=searched_to,
        q_has_words=not f.q or Query.parse(f.q).has_words,
        older_url=url_for("pages.index", **f.params(before=repr(cursor))) if cursor else None,
        newest_url=url_for("pages.index", **f.params()) if f.before is not None else None,
    )


def feed_path_for(f: Filters) -> str:
    """The feed that matches the view (source beats country beats tag, as the index does)."""
    if f.source:
        return f"/feeds/sources/{quote(f.source, safe='')}"
    if f.country:
        return f"/feeds/countries/{quote(f.country, safe='')}"
    if f.tag:
        return f"/feeds/tags/{quote(f.tag, safe='')}"
    return "/feeds/all"


@bp.get("/stories/<story_id>")
@cached_page()
def story(story_id: str):
    reader = Reader()
    g = reader.grouper
    found = g.get_stories([story_id])
    st = found[0] if found else None
    if st is None:
        # An item id: once grouped, its story is the canonical page.
        items = reader.store.get_items([story_id])
        if not items:
            abort(404)
        sid = g.story_of(story_id)
        if sid and sid != story_id:
            return redirect(url_for("pages.story", story_id=sid), 301)
        st = single_story(items[0])
    cards = reader.cards([st])
    if not cards:
        abort(404)
    card = cards[0]
    related: list[Card] = []
    if card.topic is not None:
        others = [s for s in g.topic_stories(card.topic.id, 12) if s != card.id]
        found = reader.stories(others)
        related = sorted(reader.cards([found[s] for s in others if s in found]),
                         key=lambda c: c.sort_time, reverse=True)
    coverage = coverage_of(card)
    joined: set[str] = set()
    timeline = []
    for rep in card.reports:
        timeline.append((rep, rep.outlet.key not in joined))
        joined.add(rep.outlet.key)
    return render_template("story.html", card=card, coverage=coverage, timeline=timeline,
                           related=related, in_topic=card.topic.id if card.topic else None,
                           feed_base=f"/feeds/stories/{quote(card.id, safe='')}")


@dataclass(frozen=True)
class CoverageEntry:
    report: Report
    copies: tuple[Report, ...] = ()  # other outlets' reports with the same text


def coverage_of(card: Card) -> list[CoverageEntry]:
    """A story's reports, outlet by outlet in the card's order; a report whose headline
    and summary another outlet's report already shows (wire copy, word for word up to
    spelling) is listed under that one as a copy rather than repeated in full."""
    place = {o.key: i for i, o in enumerate(card.outlets)}
    ordered = sorted(card.reports, key=lambda r: place.get(r.outlet.key, len(place)))
    entries: list[CoverageEntry] = []
    first: dict[tuple[str, str], int] = {}  # a text -> the entry that shows it
    for rep in ordered:
        text = (normalize(rep.item.title), normalize(rep.item.summary_text))
        i = first.get(text)
        if i is not None and entries[i].report.outlet.key != rep.outlet.key:
            entries[i] = CoverageEntry(entries[i].report, entries[i].copies + (rep,))
        else:
            first.setdefault(text, len(entries))
            entries.append(CoverageEntry(rep))
    return entries


@bp.get("/topics/<topic_id>")
@cached_page()
def topic(topic_id: str):
    reader = Reader()
    t = reader.topics([topic_id]).get(topic_id)
    if t is None:
        abort(404)
    ids = list(reader.grouper.topic_stories(topic_id, 100))
    found = reader.stories(ids)
    cards = sorted(reader.cards([found[s] for s in ids if s in found]),
                   key=lambda c: c.sort_time, reverse=True)
    outlets: dict[str, Outlet] = {}
    for o in (o for c in cards for o in c.outlets):
        outlets.setdefault(o.key, o)
    return render_template("topic.html", topic=t,
                           days=by_day(cards, display()), cards=cards, in_topic=t.id,
                           outlets=list(outlets.values()), feed_base=f"/feeds/topics/{quote(t.id, safe='')}")


# The topics page: the threads that the newest stories belong to, newest activity first.
# 300 stories is a day or two of a few dozen outlets: what "ongoing" means to a reader.
RECENT_STORIES = 300
TOPICS_SHOWN = 30
HEADLINES_PER_TOPIC = 3


@dataclass(frozen=True)
class TopicRow:
    topic: TopicRef
    cards: list[Card]  # its newest stories, newest first

    @property
    def newest(self) -> datetime:
        return self.cards[0].sort_time


@bp.get("/topics")
@cached_page()
def topics():
    reader = Reader()
    g = reader.grouper
    rows: list[TopicRow] = []
    recent = g.story_timeline(None, RECENT_STORIES)
    found = reader.stories(sid for sid, _ in recent)
    # each topic once, in the order of its newest recent story
    order = dict.fromkeys(found[sid].topic for sid, _ in recent
                          if sid in found and found[sid].topic)
    refs = reader.topics(order)
    shown = [t for t in order if t in refs and refs[t].is_thread][:TOPICS_SHOWN]
    threads = [(refs[t], g.topic_stories(t, HEADLINES_PER_TOPIC)) for t in shown]
    stories = reader.stories(sid for _, ids in threads for sid in ids)
    cards = {c.id: c for c in reader.cards(list(stories.values()))}
    for ref, ids in threads:
        row = sorted((cards[s] for s in ids if s in cards), key=lambda c: c.sort_time,
                     reverse=True)
        if row:
            rows.append(TopicRow(ref, row))
    return render_template("topics.html", rows=rows)


@dataclass(frozen=True)
class SourceRow:
    outlet: Outlet
    source: Source
    state: SourceState
    items: int

    @property
    def health(self) -> str:
        """ok / failing / disabled / new: the dot colour and its Arabic label."""
        if not self.source.enabled or self.state.disabled_reason:
            return "disabled"
        if self.state.last_status is None:
            return "new"
        if self.state.last_status in ("ok", "not-modified"):
            return "ok"
        return "failing"


HEALTH_LABELS = {"ok": "يعمل", "failing": "متعثّر", "disabled": "متوقف", "new": "لم يُجلب بعد"}

# What each poll outcome (aggregator.types.Outcome) means, for the Arabic pages. The code
# itself stays beside it: it is what logs, `stats` and /metrics say.
OUTCOME_LABELS = {
    "ok": "جُلبت",
    "not-modified": "لم تتغيّر",
    "dns": "تعذّر العثور على النطاق",
    "connect": "تعذّر الاتصال بالخادم",
    "timeout": "انتهت مهلة الانتظار",
    "tls": "خطأ في شهادة الأمان",
    "http-4xx": "رفض الخادم الطلب",
    "http-5xx": "خطأ في خادم المصدر",
    "rate-limited": "طلب الخادم التمهّل",
    "gone": "أُزيلت الخلاصة نهائيًا",
    "too-large": "الرد أكبر من الحد المسموح",
    "too-many-redirects": "تحويلات أكثر من اللازم",
    "not-a-feed": "الرد ليس خلاصة صالحة",
    "blocked": "عنوان محظور",
    "protocol": "انقطع الاتصال أو وصل الرد ناقصًا",
    "error": "خطأ غير متوقع",
}


# Poll states change with every poll, also the ones that store nothing (no version bump),
# and with hundreds of sources this is the dearest page to render: at most this old, and
# re-rendered no more often than that (the admin /status is the live view).
SOURCES_MAX_AGE = 10.0


@bp.get("/sources")
@cached_page(max_age=SOURCES_MAX_AGE, min_refresh=SOURCES_MAX_AGE)
def sources():
    reader = Reader()
    srcs = sorted(reader.sources.values(), key=lambda s: (s.rank, s.id))
    states = reader.store.load_states([s.id for s in srcs]) if srcs else {}
    with reader.store.r.pipeline(transaction=False) as p:
        for s in srcs:
            p.zcard(reader.store.keys.source_timeline(s.id))
        counts = p.execute() if srcs else []
    rows = [SourceRow(reader.outlet(s.id), s, states.get(s.id, SourceState()), n)
            for s, n in zip(srcs, counts)]
    summary = {h: sum(1 for r in rows if r.health == h) for h in HEALTH_LABELS}
    return render_template("sources.html", rows=rows, summary=summary,
                           health_labels=HEALTH_LABELS)
