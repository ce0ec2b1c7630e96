"""Pure normalisation: EntryData (raw strings) → Item (canonical links, ids, UTC dates,
plain text, sanitised HTML).

Nothing here does I/O or reads a clock: `now` and `first_seen` are passed in, so every
function is table-testable.

Decisions worth knowing (details next to the code):
- canonical_url: http(s) only; raw IRIs and percent-encoded URLs of the same article give
  the same string (UTF-8, uppercase hex); tracking parameters and fragments dropped.
- parse_date: naive or unknown-zone times are taken as UTC; "AST" means Arabia (+03:00),
  not Atlantic; Hijri dates are not understood (→ None).
- clean_text keeps ZWNJ (U+200C) between letters in every language: it is meaningful in
  Persian and, in Arabic, the author's choice to break a join; matching code (arabic.py)
  may drop it, display text must not. ZWJ is kept too (emoji sequences).
"""
from __future__ import annotations

import functools
import hashlib
import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote, urljoin, urlsplit

import nh3

from . import matching
from .types import EntryData, FeedData, Item, Source

try:  # IDNA 2008 + UTS 46 when the `idna` package is there; the stdlib codec is IDNA 2003
    import idna as _idna
except ImportError:  # pragma: no cover - depends on the environment
    _idna = None

__all__ = [
    "canonical_url",
    "parse_date",
    "resolve_published",
    "usable_date",
    "undated_bounds",
    "feed_modified",
    "clean_text",
    "sanitize_html",
    "item_id",
    "normalize_entry",
    "normalize_feed",
]

UTC = timezone.utc
FUTURE_TOLERANCE = timedelta(minutes=10)
# Dates before this are CMS placeholders (epoch 0, year 1), not news.
OLDEST_PLAUSIBLE = datetime(1990, 1, 1, tzinfo=UTC)
SUMMARY_TEXT_MAX = 600
# Headlines run to ~150 characters; a longer "title" is a body pasted into the field (seen
# at 2,000), which would fill a screen of the timeline.
TITLE_MAX = 300
TITLE_FALLBACK_WORDS = 12
MAX_CATEGORIES = 20

# --------------------------------------------------------------------------- links

# Exact query keys (compared lower-case) that only identify a campaign or a click.
_TRACKING_KEYS = frozenset(
    """
    fbclid gclid gclsrc dclid gbraid wbraid msclkid yclid twclid ttclid li_fat_id igshid igsh
    mc_cid mc_eid ocid _ga _gl _hsenc _hsmi mkt_tok ref_src ref_url cmpid cmp xtor xtref ito
    wt.mc_id wt.mc_ev smid s_cid spm ncid sr_share vero_id vero_conv oly_anon_id oly_enc_id
    rb_clickid at_medium at_campaign at_custom1 at_custom2 at_custom3 at_custom4
    ns_mchannel ns_source ns_campaign ns_linkname ns_fee fb_action_ids fb_action_types
    fb_source fb_ref action_object_map action_type_map action_ref_map
    """.split()
)
_TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Everything RFC 3986 allows in a path/query stays as is; '%' too (existing escapes are
# kept byte-exact), anything else (raw Arabic, spaces, quotes) is UTF-8 percent-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"
_STRAY_PCT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_URL_JUNK_RE = re.compile(r"[\t\n\r]")  # WHATWG: removed anywhere in a URL
_HOST_OK_RE = re.compile(r"^[a-z0-9._-]+$")


# Escaped unreserved characters (- . 0-9 A-Z _ a-z ~), which RFC 3986 normalisation decodes.
_UNRESERVED_ESCAPE = r"2[DE]|3[0-9]|4[1-9A-F]|5[0-9AF]|6[1-9A-F]|7[0-9AE]"
# Only escapes that RFC 3986 normalisation changes: lower-case hex digits, or an escaped
# unreserved character. Matching just these keeps Arabic paths (hundreds of %XX each,
# already canonical) off the Python callback.
_PCT_TO_FIX_RE = re.compile(rf"%(?:[0-9A-Fa-f][a-f]|[a-f][0-9A-F]|{_UNRESERVED_ESCAPE})")


# A URL that canonical_url would return unchanged: lower-case http(s) scheme and host, no
# userinfo/port/query/fragment, a path of RFC 3986 characters and upper-case escapes.
# Most feed links are like this: checking one costs ~2-5 µs, rebuilding it ~20-60 µs.
_CANONICAL_ORIGIN = r"https?://[a-z0-9-]+(?:\.[a-z0-9-]+)*"
_ALREADY_CANONICAL_RE = re.compile(rf"{_CANONICAL_ORIGIN}/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*\Z")
# ...unless it has a stray or lower-case escape, an escape that normalisation decodes
# (unreserved characters are %2D-%7E), or dot segments to remove.
_ESCAPE_TO_FIX_RE = re.compile(rf"%(?:(?![0-9A-F]{{2}})|{_UNRESERVED_ESCAPE})")
# Escapes of UTF-8 bytes (%80-%FF, all of an Arabic slug) never need fixing: a quicker
# first look.
_NOT_UTF8_ESCAPE_RE = re.compile(r"%(?![89A-F][0-9A-F])")
# The same with raw non-ASCII and no '%' (Al Arabiya's IRIs): canonical once the
# non-ASCII runs are UTF-8 percent-encoded.
_RAW_IRI_RE = re.compile(
    rf"({_CANONICAL_ORIGIN})(/[A-Za-z0-9\-._~!$&'()*+,;=:@/\u0080-\U0010ffff]*)\Z")
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]+")
_DOT_SEGMENT_RE = re.compile(r"/\.\.?(?:/|\Z)")


def _norm_pct(m: re.Match) -> str:
    hexpair = m.group()[1:].upper()
    char = chr(int(hexpair, 16))
    # RFC 3986 6.2.2: decode only unreserved characters, uppercase every other escape.
    return char if char in _UNRESERVED else "%" + hexpair


def _encode_component(text: str, safe: str) -> str:
    text = _STRAY_PCT_RE.sub("%25", text)
    text = quote(text, safe=safe, encoding="utf-8", errors="strict")
    return _PCT_TO_FIX_RE.sub(_norm_pct, text)


def _remove_dot_segments(path: str) -> str:
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def _canonical_host(host: str) -> str | None:
    if host.startswith("["):  # IPv6 literal, kept as written (lower-case)
        return host.lower() if host.endswith("]") else None
    if "%" in host:
        host = unquote(host)
    host = host.rstrip(".").lower()
    if not host:
        return None
    if not host.isascii():
        try:
            if _idna is not None:
                host = _idna.encode(host, uts46=True).decode("ascii")
            else:  # pragma: no cover
                host = host.encode("idna").decode("ascii")
        except (UnicodeError, ValueError):  # idna.IDNAError is a UnicodeError
            return None
    return host if _HOST_OK_RE.match(host) else None


def _is_tracking(key: str) -> bool:
    k = unquote(key).lower()
    return k in _TRACKING_KEYS or k.startswith(_TRACKING_PREFIXES)


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """One string per article URL, or None if it is not an http(s) URL we can use.

    Resolves against `base`, lower-cases scheme and host (IDNA for non-ASCII hosts),
    drops userinfo, default ports, the fragment and tracking parameters, encodes raw
    non-ASCII (IRIs) as UTF-8 percent-escapes and upper-cases existing escapes, so
    Al Arabiya's raw Arabic links and the same link percent-encoded are equal.
    """
    if not url:
        return None
    if _DOT_SEGMENT_RE.search(url) is None:  # the common cases, without the rebuild
        if _ALREADY_CANONICAL_RE.match(url) and (
                _NOT_UTF8_ESCAPE_RE.search(url) is None or _ESCAPE_TO_FIX_RE.search(url) is None):
            return url
        m = _RAW_IRI_RE.match(url)
        if m:
            try:
                return m.group(1) + _NON_ASCII_RE.sub(_utf8_escapes, m.group(2))
            except UnicodeEncodeError:  # lone surrogates: the general way says None
                pass
    return _canonical_url_general(url, base)


def _utf8_escapes(m: re.Match) -> str:
    return "%" + m.group().encode("utf-8").hex("%").upper()


def _canonical_url_general(url: str, base: str | None) -> str | None:
    url = _URL_JUNK_RE.sub("", url).strip(" \x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f"
                                          "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b"
                                          "\x1c\x1d\x1e\x1f")
    if not url:
        return None
    try:
        if base:
            url = urljoin(_URL_JUNK_RE.sub("", base).strip(), url)
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    hostport = parts.netloc.rpartition("@")[2]  # credentials are never republished
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return None
        host, port = hostport[: end + 1], hostport[end + 1 :]
        if port and not port.startswith(":"):
            return None
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
    if port:
        if not port.isdigit() or int(port) > 65535:
            return None
        port = str(int(port))
    host = _canonical_host(host)
    if host is None:
        return None
    netloc = host if not port or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"

    try:
        path = _remove_dot_segments(_encode_component(parts.path or "/", _PATH_SAFE))
        query = parts.query
        if query:
            kept = [p for p in query.split("&") if p and not _is_tracking(p.partition("=")[0])]
            query = _encode_component("&".join(kept), _QUERY_SAFE) if kept else ""
    except UnicodeError:  # lone surrogates
        return None
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


# --------------------------------------------------------------------------- dates

_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
# Zones email.utils does not know. AST is Arabia Standard Time here (Middle East feeds),
# not Atlantic as in email.utils; IST is left out on purpose (India/Israel/Ireland).
_EXTRA_ZONES = {
    "AST": "+0300", "ARAB": "+0300", "MSK": "+0300", "TRT": "+0300", "EAT": "+0300",
    "EET": "+0200", "EEST": "+0300", "CET": "+0100", "CEST": "+0200", "WET": "+0000",
    "WEST": "+0100", "BST": "+0100", "GST": "+0400", "IRST": "+0330", "IRDT": "+0430",
    "PKT": "+0500", "IDT": "+0300", "CAT": "+0200", "WAT": "+0100", "SAST": "+0200",
}
_TRAILING_ZONE_RE = re.compile(r"(?<=\s)([A-Za-z]{3,4})\s*$")
_GMT_OFFSET_RE = re.compile(r"(?:GMT|UTC|UT)\s*([+-])(\d{1,2})(?::?(\d{2}))?\s*$", re.I)
# "+04:00", and "+03" (PHP's "T" for zones without an abbreviation, e.g. Asia/Riyadh)
_COLON_OFFSET_RE = re.compile(r"(\d)\s*([+-])(\d{2})(?::(\d{2}))?\s*$")
# A year before 1000 ("0001", .NET's "no date"): email.utils would add 2000 to it.
_TINY_YEAR_RE = re.compile(r"(?<![\d:+-])0\d{3}(?![\d:])")
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e"
                                        "\u2066\u2067\u2068\u2069"))
_ISO_START_RE = re.compile(r"^\d{4}-?\d{2}")
# email.utils reads "10:05 PM" as 10:05 in an unknown zone: leave those to _parse_arabic.
_AMPM_RE = re.compile(r"\d\s*[AaPp]\.?[Mm]\b")

_MONTHS = {
    1: "يناير كانون_الثاني كانون_ثاني جانفي january jan",
    2: "فبراير فبرير شباط فيفري february feb",
    3: "مارس اذار march mar",
    4: "ابريل نيسان افريل april apr",
    5: "مايو ايار ماي may",
    6: "يونيو يونيه حزيران جوان june jun",
    7: "يوليو يوليه تموز جويلية يوليوز july jul",
    8: "اغسطس اب اوت غشت august aug",
    9: "سبتمبر ايلول شتنبر september sept sep",
    10: "اكتوبر تشرين_الاول تشرين_اول october oct",
    11: "نوفمبر تشرين_الثاني تشرين_ثاني نونبر november nov",
    12: "ديسمبر كانون_الاول كانون_اول دجنبر december dec",
}
_MONTH_BY_NAME = {
    name.replace("_", " "): num for num, names in _MONTHS.items() for name in names.split()
}
_MONTH_ALT = "|".join(
    re.escape(n).replace(r"\ ", r"\s+") for n in sorted(_MONTH_BY_NAME, key=len, reverse=True)
)
_DATE_DMY_RE = re.compile(
    rf"(?<!\d)(\d{{1,2}})\s*(?:من\s+)?(?<![^\W\d])({_MONTH_ALT})(?!\w)\.?"
    rf"(?:\s*[/(-]\s*(?:{_MONTH_ALT})\s*\)?)?\s*[,،]?\s*(\d{{4}})(?!\d)"
)
_DATE_MDY_RE = re.compile(
    rf"(?<!\w)({_MONTH_ALT})(?!\w)\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\s*[,،]?\s+(\d{{4}})(?!\d)")
_DATE_NUM_DMY_RE = re.compile(r"(?<!\d)(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?!\d)")
_DATE_NUM_YMD_RE = re.compile(r"(?<!\d)(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})(?!\d)")
_TIME_RE = re.compile(
    r"(?<!\d)(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"(?:\s*(صباحا|مساء|ص|م|am|pm|a\.m\.|p\.m\.)(?!\w))?"
    r"(?:\s*(?:بتوقيت\s+)?(?:gmt|utc|غرينتش|جرينتش)?\s*([+-])(\d{1,2})(?::?(\d{2}))?(?!\d))?"
)
_ARABIC_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ـ": None})
_HARAKAT_RE = re.compile("[\u064b-\u0652\u0670]")


def _as_utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _parse_rfc822(s: str) -> datetime | None:
    m = _GMT_OFFSET_RE.search(s)
    if m:  # "GMT+3", "UTC+03:00"
        s = f"{s[: m.start()]}{m.group(1)}{int(m.group(2)):02d}{m.group(3) or '00'}"
    else:
        m = _COLON_OFFSET_RE.search(s)
        if m:  # email.utils drops "+04:00" (a naive time) and reads "+03" as minutes
            s = f"{s[: m.start()]}{m.group(1)} {m.group(2)}{m.group(3)}{m.group(4) or '00'}"
        else:
            m = _TRAILING_ZONE_RE.search(s)
            if m and m.group(1).upper() in _EXTRA_ZONES:
                s = s[: m.start()] + _EXTRA_ZONES[m.group(1).upper()]
    try:
        return _as_utc(parsedate_to_datetime(s))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _parse_iso(s: str) -> datetime | None:
    try:
        return _as_utc(datetime.fromisoformat(s))
    except ValueError:
        return None


def _parse_arabic(s: str) -> datetime | None:
    """Dates written for people: Arabic (Egyptian/Gulf, Levantine, Maghrebi) or English
    month names, or numeric d/m/Y, with an optional H:M(:S), AM/PM marker and offset."""
    t = _HARAKAT_RE.sub("", s.translate(_ARABIC_FOLD)).lower()
    m = _DATE_DMY_RE.search(t)
    if m:
        day, month, year = int(m.group(1)), _MONTH_BY_NAME[re.sub(r"\s+", " ", m.group(2))], int(m.group(3))
    elif (m := _DATE_MDY_RE.search(t)) is not None:
        month, day, year = _MONTH_BY_NAME[re.sub(r"\s+", " ", m.group(1))], int(m.group(2)), int(m.group(3))
    elif (m := _DATE_NUM_YMD_RE.search(t)) is not None:
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    elif (m := _DATE_NUM_DMY_RE.search(t)) is not None:  # the Arab world writes d/m/Y
        day, month, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
    else:
        return None
    rest = t[: m.start()] + " " + t[m.end() :]
    hour = minute = second = 0
    offset = timedelta(0)
    tm = _TIME_RE.search(rest)
    if tm:
        hour, minute, second = int(tm.group(1)), int(tm.group(2)), int(tm.group(3) or 0)
        marker = tm.group(4)
        if marker in ("م", "مساء", "pm", "p.m.") and hour < 12:
            hour += 12
        elif marker in ("ص", "صباحا", "am", "a.m.") and hour == 12:
            hour = 0
        if tm.group(5):
            offset = timedelta(hours=int(tm.group(6)), minutes=int(tm.group(7) or 0))
            if tm.group(5) == "-":
                offset = -offset
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC) - offset
    except (ValueError, OverflowError):
        return None


# The RFC 822 shape nearly every RSS feed writes ("Wed, 09 May 2018 11:19:24 GMT",
# "... +0400"), read without email.utils: ~1 µs instead of ~15. Anything else, or a value
# out of range, goes the general way; tests/test_normalize.py compares both.
_RFC822_COMMON_RE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?([0-9]{1,2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([1-9][0-9]{3}) "
    r"([0-9]{2}):([0-9]{2})(?::([0-9]{2}))? (?:GMT|UTC?|Z|([+-])([0-9]{2})([0-9]{2}))")
_MONTH_ABBR = {m: i for i, m in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}


def _parse_rfc822_common(s: str) -> datetime | None:
    m = _RFC822_COMMON_RE.fullmatch(s)
    if m is None:
        return None
    day, month, year, hour, minute, second, sign, oh, om = m.groups()
    try:
        dt = datetime(int(year), _MONTH_ABBR[month], int(day), int(hour), int(minute),
                      int(second or 0), tzinfo=UTC)
        if sign:
            # email.utils reads +HHMM as HH hours + MM minutes, even past 59
            offset = int(oh) * 3600 + int(om) * 60
            if offset >= 86400:
                return None
            dt -= timedelta(seconds=offset if sign == "+" else -offset)
        return dt
    except (ValueError, OverflowError):
        return None


def parse_date(value: str | None) -> datetime | None:
    """A feed's date string → aware UTC datetime, or None if it is not a date we can read.

    RFC 822 (named zones, numeric offsets), RFC 3339/ISO 8601, then Arabic and Persian
    digits, Arabic month names (Egyptian and Levantine) and day names. Times without a
    zone are taken as UTC.
    """
    if not value:
        return None
    return _parse_rfc822_common(value.strip()) or _parse_date_general(value)


def _parse_date_general(value: str) -> datetime | None:
    s = value.strip()
    if not s.isascii():  # translate() walks every character through a dict
        s = s.translate(_DIGITS).translate(_BIDI_CONTROLS).strip()
    if not s or _TINY_YEAR_RE.search(s):
        return None
    if _ISO_START_RE.match(s):
        dt = _parse_iso(s)
        if dt is not None:
            return dt
    if s[:1].isascii() and not _AMPM_RE.search(s):
        dt = _parse_rfc822(s)
        if dt is not None:
            return dt
    return _parse_arabic(s)


def usable_date(entry_published: str | None, entry_updated: str | None, now: datetime) -> datetime | None:
    """The entry's published date (else its updated date), or None when neither parses, it
    is implausibly old (placeholders like 1970-01-01) or more than ten minutes ahead of
    `now` (wrong zones, embargo tricks). A date ahead of `now` by less than that is clock
    skew and is clamped to `now`, so nothing sorts above the present."""
    return _plausible(parse_date(entry_published) or parse_date(entry_updated), now)


def _plausible(dt: datetime | None, horizon: datetime) -> datetime | None:
    if dt is None or dt < OLDEST_PLAUSIBLE or dt > horizon + FUTURE_TOLERANCE:
        return None
    return min(dt, horizon)


def feed_modified(last_modified: str | None, dates: Sequence[datetime | None],
                  now: datetime) -> datetime | None:
    """The feed's own clock: its Last-Modified (no later than `now`), when the feed's
    dated entries bear it out (more than half of them are no later than it, give or take
    the skew tolerance); else None. No entry of the feed can have been published after
    it, so it bounds the dates the feed may claim more tightly than our clock does.

    Why: our clock only catches dates ahead of the present. A feed that dates its newest
    entry two days after the rest (a wrong zone, a scheduled post, the newsroom's
    future_date replaying 2018) pinned that story on top of the timeline for two days.
    A stale header (a constant date, the epoch, a cache's old copy) is not borne out: most
    entries are newer than it, and it is ignored."""
    modified = parse_date(last_modified)
    dated = [d for d in dates if d is not None]
    if modified is None or modified < OLDEST_PLAUSIBLE or not dated:
        return None
    modified = min(modified, now)
    agreeing = sum(d <= modified + FUTURE_TOLERANCE for d in dated)
    return modified if agreeing * 2 > len(dated) else None


def resolve_published(
    entry_published: str | None,
    entry_updated: str | None,
    first_seen: datetime,
    now: datetime,
) -> datetime:
    """The date a lone entry is shown and sorted by: its usable date, else first_seen.
    (In a feed, normalize_feed can bound an undated entry by its neighbours.)"""
    return usable_date(entry_published, entry_updated, now) or first_seen


def undated_bounds(dates: Sequence[datetime | None], top: datetime | None = None) -> list[datetime | None]:
    """For each entry of a feed (its usable date or None, in feed order), the date an
    undated entry is given: that of the nearest dated entry above it, when the feed's
    dates run newest first (then an entry is no newer than the one above it); else `top`
    (the feed's own clock, feed_modified, when known). None where there is no bound: the
    entry is new to us and first_seen is all we know.

    Without this, a new source whose feed dates only some entries (BBC sport's, the
    newsroom's missing_date) put its whole undated backlog on top of the timeline as
    'just now'."""
    known = [d for d in dates if d is not None]
    if any(a < b for a, b in zip(known, known[1:])):
        return [None if d is not None else top for d in dates]
    bounds: list[datetime | None] = []
    above = top
    for d in dates:
        bounds.append(None if d is not None else above)
        if d is not None:
            above = d
    return bounds


# --------------------------------------------------------------------------- text

# Bidi controls (LRM, RLM, ALM, embeddings/overrides, isolates) and invisible
# zero-width characters (ZWSP, word joiner, BOM, Mongolian vowel separator, soft hyphen)
# and C0/C1 controls other than whitespace. ZWNJ/ZWJ are handled separately.
_INVISIBLE_RE = re.compile(
    "[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069"
    "\u200b\u2060\ufeff\u180e\u00ad"
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
)
_ZWNJ_RE = re.compile("\u200c+")
# Tags that start or end a block: a space before them keeps words apart when tags are
# stripped ("<p>a</p><p>b</p>" → "a b", not "ab").
_BLOCKS = (
    "p|div|li|ul|ol|dd|dt|dl|h[1-6]|tr|td|th|table|blockquote|section|article|header|"
    "footer|aside|figure|figcaption|pre|address|nav|main"
)
_TEXT_BREAK_RE = re.compile(rf"(<(?:br|hr|/?(?:{_BLOCKS}))\b)", re.I)
# In HTML output only the block tags the allow-list removes need the space.
_HTML_BREAK_RE = re.compile(
    r"(<(?:hr|/?(?:div|dd|dt|dl|h[156]|tr|td|th|table|section|article|header|footer|aside|"
    r"pre|address|nav|main))\b)",
    re.I,
)
_DROP_WITH_CONTENT = {
    "script", "style", "template", "noscript", "iframe", "object", "embed",
    "svg", "math", "textarea", "select", "title", "head",
}


def _cleaner(**options):
    # nh3.Cleaner builds the ammonia sanitiser once; older nh3 takes the options per call.
    if hasattr(nh3, "Cleaner"):
        return nh3.Cleaner(**options).clean
    return functools.partial(nh3.clean, **options)


_strip_tags = _cleaner(tags=set(), attributes={}, clean_content_tags=_DROP_WITH_CONTENT)


def _keep_meaningful_zwnj(m: re.Match) -> str:
    # ZWNJ only does something between two letters (a combining mark counts as part of
    # the letter before it); elsewhere, e.g. before a space, it is invisible noise.
    text, i, j = m.string, m.start(), m.end()
    if i == 0 or j == len(text):
        return ""
    before, after = unicodedata.category(text[i - 1]), unicodedata.category(text[j])
    return "\u200c" if before[0] in "LM" and after[0] == "L" else ""


def clean_text(s: str | None) -> str:
    """HTML or text → one line of plain display text.

    Tags stripped (script/style and the like with their content), entities decoded,
    bidi controls and invisible characters removed, ZWNJ kept only between letters,
    NBSP and every other space → one ASCII space, trimmed. Letters are not normalised.
    """
    if not s:
        return ""
    if "<" in s:
        # nh3 parses like a browser; its output is escaped text, decoded just below.
        s = _strip_tags(_TEXT_BREAK_RE.sub(r" \1", s))
        s = html.unescape(s)
    elif "&" in s:
        s = html.unescape(s)
    if _is_plain(s):
        return s  # most titles and summaries: one C scan instead of three passes
    s = _INVISIBLE_RE.sub("", s)
    if "\u200c" in s:
        s = _ZWNJ_RE.sub(_keep_meaningful_zwnj, s)
    return " ".join(s.split())  # str.split() and \s agree on what a space is


def _is_plain(s: str) -> bool:
    """Already one line of plain text: single ' ' between words, nothing invisible.

    isprintable() is False for every character clean_text removes, collapses or looks at
    (controls, format characters such as ZWNJ and bidi marks, every space but ' '), and
    runs in C; tests/test_normalize.py checks that over all of Unicode.
    """
    return s.isprintable() and s != "" and s[0] != " " and s[-1] != " " and "  " not in s


def _truncate_words(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    if cut < limit // 2:  # one enormous "word" (a URL): cut it hard
        cut = limit
    return text[:cut].rstrip(" ,،;؛:.-–—") + "…"


def _first_words(text: str, n: int) -> str:
    words = text.split(" ")
    return text if len(words) <= n else " ".join(words[:n]).rstrip(" ,،;؛:.-–—") + "…"


# --------------------------------------------------------------------------- html

_ALLOWED_TAGS = {
    "p", "br", "a", "b", "strong", "i", "em", "ul", "ol", "li", "blockquote",
    "img", "h2", "h3", "h4", "figure", "figcaption",
}
_ALLOWED_ATTRS = {"a": {"href"}, "img": {"src", "alt"}}
_URL_ATTRS = {"href", "src"}


def _absolute_urls_only(tag: str, attr: str, value: str) -> str | None:
    # Relative URLs would resolve against *our* site; feedparser already made the
    # publisher's relative links absolute against the feed URL, so what is left is junk.
    if attr in _URL_ATTRS:
        v = value.strip().lower()
        if v.startswith(("https://", "http://")) or (attr == "href" and v.startswith("mailto:")):
            return value.strip()
        return None
    return value


_SANITIZE_OPTIONS = dict(
    tags=_ALLOWED_TAGS,
    clean_content_tags=_DROP_WITH_CONTENT,
    attributes=_ALLOWED_ATTRS,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
    attribute_filter=_absolute_urls_only,
)
_sanitize = _cleaner(**_SANITIZE_OPTIONS)
_IMG_TAG_RE = re.compile(r"<img\b[^>]*>", re.I)
# width or height 0 or 1: a tracking pixel (Feedburner's ~r/~4, analytics beacons)
_PIXEL_RE = re.compile(r"""\s(?:width|height)\s*=\s*["']?\s*[01](?:px)?\s*(?:["'\s/>]|$)""", re.I)
_SIZE_RE = re.compile(r"""\s(?:width|height)\s*=\s*["']?\s*(\d+)""", re.I)
_SRC_RE = re.compile(r"""\ssrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
# lazy loading: the image's address in data-src (or data-lazy-src, data-original), a
# placeholder (often a data: URI) or nothing in src
_LAZY_SRC_RE = re.compile(
    r"""\sdata-(?:src|lazy-src|original)\s*=\s*(?:"(https?://[^"]+)"|'(https?://[^']+)')""", re.I)
# the smallest image, in pixels, that is a picture of the story rather than an icon
LEAD_IMAGE_MIN_SIZE = 100


def _publisher_images(s: str) -> tuple[str, str | None]:
    """Before sanitising: tracking pixels out, lazy images given their real address; and
    the first image large enough to be the story's picture (None if none is)."""
    lead = None

    def one(m: re.Match) -> str:
        nonlocal lead
        tag = m.group()
        if _PIXEL_RE.search(tag):
            return ""
        src = _SRC_RE.search(tag)
        value = next((g for g in src.groups() if g is not None), "") if src else ""
        lazy = _LAZY_SRC_RE.search(tag)
        if lazy and not value.strip().lower().startswith(("http://", "https://")):
            value = html.unescape(lazy.group(1) or lazy.group(2))
            tag = (tag[: src.start()] + tag[src.end():]) if src else tag
            tag = f'<img src="{html.escape(value)}"' + tag[4:]
        if lead is None and value.strip().lower().startswith(("http://", "https://")) and all(
                int(n) >= LEAD_IMAGE_MIN_SIZE for n in _SIZE_RE.findall(tag)):
            lead = html.unescape(value.strip())
        return tag

    return _IMG_TAG_RE.sub(one, s), lead
_EMPTY_HTML_RE = re.compile(r"^(?:\s|&nbsp;|<br>|<p>\s*</p>)*$")
_IMG_WITHOUT_SRC_RE = re.compile(r"<img(?![^>]*\ssrc=)[^>]*>")


def sanitize_html(s: str | None) -> str:
    """Publisher HTML → HTML safe to embed in our pages (allow-list, nh3/ammonia).

    Keeps p, br, a[href], b, strong, i, em, ul, ol, li, blockquote, img[src alt], h2-h4,
    figure, figcaption; URLs must be absolute http/https (mailto for links); links get
    rel="noopener noreferrer nofollow"; script/style/iframe/svg/math and their content,
    event handlers, style attributes and javascript:/data: URLs are removed; so are
    tracking pixels (1x1 images), and a lazy image gets its data-src as its src.
    """
    return _sanitized(s)[0]


def _sanitized(s: str | None) -> tuple[str, str | None]:
    """sanitize_html, and the lead image of the publisher's HTML (_publisher_images)."""
    if not s:
        return "", None
    if "<" not in s and "&" not in s:
        return html.escape(s, quote=False).strip(), None
    s, lead = _publisher_images(s)
    out = _sanitize(_HTML_BREAK_RE.sub(r" \1", s)).strip()
    if "<img" in out:  # an image whose only source was refused is a broken-image box
        out = _IMG_WITHOUT_SRC_RE.sub("", out)
    return "" if _EMPTY_HTML_RE.match(out) else out, lead


# --------------------------------------------------------------------------- items


def item_id(
    source_id: str,
    guid: str | None,
    canonical_link: str | None,
    title: str | None,
    published_raw: str | None,
) -> str:
    """Stable 16-hex id: the GUID if there is one, else the canonical link, else title+date.

    The kind is part of the hash so a GUID that happens to equal another item's URL does
    not collide with it.
    """
    guid = (guid or "").strip()
    if guid:
        kind, key = "guid", guid
    elif canonical_link:
        kind, key = "url", canonical_link
    else:
        kind, key = "title", f"{(title or '').strip()}\0{(published_raw or '').strip()}"
    return hashlib.sha256(f"{source_id}\0{kind}\0{key}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _language(entry_lang: str | None, source_lang: str) -> str:
    lang = (entry_lang or "").strip().replace("_", "-").lower()
    return lang or source_lang


def _categories(raw: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    out: list[str] = []
    for c in raw:
        text = clean_text(c)
        key = text.casefold()
        if text and key not in seen:
            seen.add(key)
            out.append(text)
            if len(out) == MAX_CATEGORIES:
                break
    return tuple(out)


def normalize_entry(source: Source, entry: EntryData, first_seen: datetime, now: datetime,
                    published: datetime | None = None) -> Item:
    """One parsed entry → one Item, every field filled. Pure. `published`: the date the
    caller resolved (normalize_feed does, with the feed's other entries)."""
    url = canonical_url(entry.link, base=source.url)
    guid = (entry.guid or "").strip() or None
    body = entry.summary or entry.content or ""
    summary_text_full = clean_text(body)
    title = _truncate_words(clean_text(entry.title), TITLE_MAX) \
        or _first_words(summary_text_full, TITLE_FALLBACK_WORDS)
    summary_text = _truncate_words(summary_text_full, SUMMARY_TEXT_MAX)
    summary_html, lead_image = _sanitized(body)
    return Item(
        id=item_id(source.id, guid, url, title, entry.published),
        source=source.id,
        url=url,
        guid=guid,
        title=title,
        summary_html=summary_html,
        summary_text=summary_text,
        published=published or resolve_published(entry.published, entry.updated, first_seen, now),
        first_seen=first_seen,
        updated=first_seen,
        author=clean_text(entry.author) or None,
        categories=_categories(entry.categories),
        # the feed's media image, else the first picture of the publisher's HTML
        image=canonical_url(entry.image or lead_image, base=source.url),
        language=_language(entry.language, source.language),
        content_hash=hashlib.sha256(f"{title}\0{summary_text}\0{url or ''}".encode("utf-8", "surrogatepass")).hexdigest(),
        match_record=matching.record(title, summary_text),
    )


def normalize_feed(source: Source, feed: FeedData, first_seen: datetime, now: datetime,
                   last_modified: str | None = None) -> list[Item]:
    """Every entry of a feed → Items in feed order, one per id.

    A GUID that one feed gives to entries with different links (seen in the wild: CMS
    templates that print the same GUID everywhere; the newsroom's dup_guid fault)
    identifies none of them: every entry carrying it gets its link-based id and no GUID
    (grouping takes one GUID for one article, and would merge the stories). Keeping the
    GUID's id for the first of them would move that id to whichever entry comes first
    in the next poll, and store the others again under new ids. (An entry whose GUID is
    shared in one poll and its own in another still changes id once.) Exact repeats (same id)
    are dropped, the first one wins, and so are entries with neither a title nor a link
    (what a broken feed leaves behind): there is nothing to show or to link to. An
    undated entry takes the date of the dated entry above it (undated_bounds).
    `last_modified`: the response's Last-Modified header, the feed's own clock
    (feed_modified) when its entries bear it out: no entry's date may pass it.
    """
    parsed = [parse_date(e.published) or parse_date(e.updated) for e in feed.entries]
    modified = feed_modified(last_modified, parsed, now)
    dates = [_plausible(d, modified or now) for d in parsed]
    normalized = [(entry, normalize_entry(source, entry, first_seen, now, date or bound or first_seen))
                  for entry, date, bound in zip(feed.entries, dates, undated_bounds(dates, modified))]
    links_of_guid: dict[str, set[str]] = {}
    for _, item in normalized:
        if item.guid is not None and item.url is not None:
            links_of_guid.setdefault(item.guid, set()).add(item.url)
    items: list[Item] = []
    seen_ids: set[str] = set()
    for entry, item in normalized:
        if not item.title and item.url is None:
            continue
        if item.url is not None and len(links_of_guid.get(item.guid, ())) > 1:
            item = replace(item, id=item_id(source.id, None, item.url, item.title, entry.published),
                           guid=None)
        if item.id in seen_ids:
            continue
        seen_ids.add(item.id)
        items.append(item)
    return items

