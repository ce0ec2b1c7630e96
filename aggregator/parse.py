"""Parser adapter: the bytes and response headers of one fetch → FeedData.

feedparser does the parsing; this module decides what it is given and what we keep.

- feedparser never fetches: it gets a BytesIO (bytes or str arguments may be taken for a
  URL or a file name by feedparser.parse) and the response headers, so the declared
  charset (CNN's windows-1256) is honoured and relative links resolve against the feed URL.
- Entity declarations are refused before parsing. feedparser strips the DOCTYPE with a
  regex and re-declares the entities it thinks are "safe"; expat (>= 2.4) stops a
  billion-laughs document, but then feedparser falls back to its loose parser, which
  expands those "safe" entities without any limit: a 110 KB document with one 50 KB entity
  used 20,000 times gave a 1 GB title, 23 s and 2.9 GB of memory. External entities are
  never fetched (feature_external_ges is off and SYSTEM entities are never "safe"), but
  no real feed declares entities, so we refuse them all: ParseError("entity declarations
  refused").
- feedparser's HTML sanitiser is off: EntryData carries the HTML as published and
  normalize.sanitize_html (nh3) is the one sanitiser. Relative URI resolution stays on.
- Encoding: a body that is not valid in its declared encoding is repaired when the cause
  is clear (a UTF-8 feed with stray windows-1256 bytes; a windows-1256 or ISO-8859-6 feed
  declared UTF-8 or labelled with a server's default ISO-8859-1; a UTF-8 feed declared in
  a legacy code page) instead of feedparser's windows-1252 / iso-8859-2 fallbacks that
  turn Arabic into mojibake. The repair is recorded in bozo. A BOM beats every label, a
  document's declaration beats a Western default header, and UTF-16/32 or labels Python
  knows only by another name (x-cp1256) are handed on as UTF-8.
- Fast path: well-formed plain RSS 2.0 / Atom 1.0 in its declared encoding is read with
  lxml (aggregator/fastparse.py, ~10× faster); tests/test_fastparse.py shows both paths
  give the same items over the fixture corpus. A body declared and read as UTF-8 goes to
  lxml before any decode in Python: libxml2 refuses bytes that are not UTF-8, and only a
  refused body is checked and repaired as above.
- Bozo policy: a feed that is not well-formed keeps every entry that parsed and records
  the complaint in FeedData.bozo. No entries and no sign of a feed (no RSS/Atom version,
  or neither title nor link) → ParseError (outcome not-a-feed). A valid feed with no
  entries is fine.
"""
from __future__ import annotations

import codecs
import io
import re
from collections.abc import Mapping
from urllib.parse import urljoin

import feedparser
from lxml import etree

from .errors import ParseError
from .fastparse import Unsupported, fast_parse, looks_like_image
from .types import EntryData, FeedData

__all__ = ["parse_feed"]

_DOCTYPE_RE = re.compile(rb"<!DOCTYPE", re.I)
_ENTITY_RE = re.compile(rb"<!ENTITY", re.I)
_XML_DECL_RE = re.compile(r"^(\s*<\?xml[^>]*?encoding\s*=\s*)(['\"])[^'\"]*\2")
_XML_DECL_ENCODING_RE = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*['\"]([A-Za-z0-9._:-]+)['\"]")
_CHARSET_RE = re.compile(r";\s*charset\s*=\s*['\"]?([^'\";\s]+)", re.I)
# Runs of bytes that are valid UTF-8; what lies between them is not.
_UTF8_RUN_RE = re.compile(
    rb"(?:[\x00-\x7f]|[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]"
    rb"|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2})+"
)
_ASCII = bytes(range(128))
_UTF8_CODECS = {"utf-8", "ascii"}
# what servers label any text/xml with; a document declaring otherwise is believed
_WESTERN = {"iso8859-1", "cp1252", "ascii"}
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_BOZO_MAX = 300
# RSS <author>: "email (Name)". feedparser's own split breaks on TLDs longer than 4 letters.
_RSS_AUTHOR_RE = re.compile(r"^\s*[^\s@()]+@[^\s()]+\s*\((.+)\)\s*$")


def _is_arabic_letter(ch: str) -> bool:
    return "\u0621" <= ch <= "\u064a" or ch in "\u060c\u061b\u061f"


def _declares_entities(body: bytes) -> bool:
    """True if a DOCTYPE with entity declarations may be in the document.

    Searches the whole body: a DOCTYPE and an ENTITY inside CDATA would be refused too,
    which no news feed does. UTF-16/32 documents are searched without their NUL bytes.
    """
    if b"\x00" in body[:4]:
        body = body.replace(b"\x00", b"")
    m = _DOCTYPE_RE.search(body)
    return m is not None and _ENTITY_RE.search(body, m.end()) is not None


def _headers_for_feedparser(headers: Mapping[str, str], url: str) -> dict[str, str]:
    h = {k.lower(): v for k, v in headers.items()}
    out: dict[str, str] = {}
    ctype = (h.get("content-type") or "").strip()
    # Without a Content-Type feedparser assumes iso-8859-1 for a body without an XML
    # declaration; application/xml means "the document says" (RFC 7303), UTF-8 by default.
    out["content-type"] = ctype or "application/xml"
    base = h.get("content-location")
    out["content-location"] = urljoin(url, base) if base else url
    if h.get("content-language"):
        out["content-language"] = h["content-language"]
    return out


def _codec(label: str) -> str | None:
    """Python's codec for a charset label, forgiving the spellings servers and documents
    use for the Arabic code page (x-cp1256, win-1256, windows1256)."""
    label = label.strip().lower()
    for candidate in (label, label.removeprefix("x-"),
                      re.sub(r"^(?:x-)?(?:windows|win|cp)[-_]?(\d{3,4})$", r"cp\1", label)):
        if name := _codec_exactly(candidate):
            return name
    return None


def _codec_exactly(label: str) -> str | None:
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _declared_encoding(body: bytes, ctype: str) -> str:
    """The charset label to read the body in: a BOM's (no other label survives one), else
    the header's, else the XML declaration's, else UTF-8. A header naming a Western
    default (ISO-8859-1, windows-1252, US-ASCII: what servers send for any text/xml) or a
    label nobody knows yields to a document that declares something else: that is the
    author's word on the bytes."""
    bom_name = next((name for bom, name in _BOMS if body.startswith(bom)), None)
    if bom_name:
        return bom_name
    m = _XML_DECL_ENCODING_RE.match(body)
    xml_decl = m.group(1).decode("ascii").lower() if m else None
    m = _CHARSET_RE.search(ctype)
    if m:
        header = m.group(1).lower()
        codec = _codec(header)
        if xml_decl and (codec is None or codec in _WESTERN) and _codec(xml_decl) not in (None, codec):
            return xml_decl
        return header
    # RFC 3023 said us-ascii for text/xml without charset; RFC 7303 and every feed reader
    # use the document's own declaration, else UTF-8.
    return xml_decl or "utf-8"


_LETTER_RUN_RE = re.compile(r"[^\W\d_]+")


def _arabic_score(text: str) -> int:
    """How well a code page read the text as Arabic: words all of Arabic letters, less
    three for each word mixing them with other letters (mojibake: a French "président"
    read in ISO-8859-6 is "prىsident"). Above 0: Arabic."""
    pure = mixed = 0
    for word in _LETTER_RUN_RE.findall(text):
        arabic = sum(1 for ch in word if _is_arabic_letter(ch))
        if arabic == len(word):
            pure += 1
        elif arabic:
            mixed += 1
    return pure - 3 * mixed


def _as_arabic_code_page(body: bytes, declared: str,
                         first: str | None = None) -> tuple[str, str] | None:
    """A body declared `declared` whose non-ASCII bytes are in an Arabic legacy code page:
    its text and the repair note naming the code page. The document's own declaration
    (`first`) is believed if it reads as Arabic; else windows-1256 or ISO-8859-6,
    whichever reads more of it as Arabic letters; None if neither does."""
    best = None
    for name in ([first] if first else []) + ["windows-1256", "iso-8859-6"]:
        codec = _codec(name)
        if codec is None or codec in _UTF8_CODECS or codec.startswith(("utf-16", "utf-32")):
            continue
        try:
            text = body.decode(codec)
        except UnicodeDecodeError:
            continue
        score = _arabic_score(text)
        if score > 0 and name == first:
            best = (score, text, name)
            break
        if score > 0 and (best is None or score > best[0]):
            best = (score, text, name)
    if best is None:
        return None
    _, text, name = best
    return text, f"declared {declared} but the bytes are {name}; read as {name}"


def _repair_encoding(body: bytes, declared: str) -> tuple[str, str] | None:
    """Text and a note when the bytes do not match the declared encoding and the cause
    is clear; None when they match or we cannot tell (feedparser then does its best)."""
    codec = _codec(declared)
    if codec is None:
        return None
    codec_is_utf8 = codec in _UTF8_CODECS
    try:
        body.decode(codec)
    except UnicodeDecodeError:
        pass
    else:
        if codec_is_utf8 or codec.startswith(("utf-16", "utf-32")):
            return None
        # A legacy code page decodes any bytes; UTF-8 text mislabelled as one decodes
        # to mojibake. Non-ASCII bytes that are all valid UTF-8 are UTF-8.
        if len(body.translate(None, _ASCII)) == 0:
            return None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            # A Western label on Arabic bytes (a server's default charset): read them in
            # the Arabic code page that fits, if one does; French or German stays Western.
            return _as_arabic_code_page(body, declared) if codec in _WESTERN else None
        return text, f"declared {declared} but the bytes are UTF-8; read as UTF-8"
    if not codec_is_utf8:
        return None

    non_ascii = len(body.translate(None, _ASCII))
    pieces: list[str | bytes] = []
    bad = kept = pos = 0
    for m in _UTF8_RUN_RE.finditer(body):
        if m.start() > pos:
            pieces.append(body[pos : m.start()])
            bad += m.start() - pos
        pieces.append(m.group().decode("utf-8"))
        pos = m.end()
    if pos < len(body):
        pieces.append(body[pos:])
        bad += len(body) - pos

    if bad == 0:  # e.g. declared us-ascii
        return body.decode("utf-8"), f"declared {declared} but the bytes are UTF-8; read as UTF-8"
    if bad * 2 >= non_ascii:
        # Mostly invalid: a whole document in a legacy code page. Arabic feeds that lie
        # about UTF-8 are in windows-1256 or ISO-8859-6 (the document may say which);
        # anything else is left to feedparser's guesses.
        m = _XML_DECL_ENCODING_RE.match(body)
        return _as_arabic_code_page(body, declared, m.group(1).decode("ascii").lower() if m else None)

    # Mostly UTF-8 with stray bytes: runs that read as Arabic letters in windows-1256
    # (pasted from a legacy system) are kept, other invalid bytes are dropped.
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, bytes):
            legacy = piece.decode("cp1256")
            if len(legacy) > 1 and all(_is_arabic_letter(ch) for ch in legacy):
                out.append(legacy)
                kept += len(piece)
        else:
            out.append(piece)
    return "".join(out), (
        f"declared {declared} but {bad} bytes are not UTF-8; "
        f"{kept} read as windows-1256 Arabic letters, {bad - kept} dropped"
    )


def _prepare(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str], str | None]:
    """The body and headers as feedparser (and lxml) should read them, and a note when
    the bytes had to be repaired. UTF-16/32 and repaired bodies become UTF-8, their XML
    declaration and header saying so (feedparser fails on UTF-16 without a declaration,
    and reads a label such as x-cp1256 as windows-1252);
    otherwise the header names the charset we settled on, if it named another."""
    ctype = headers["content-type"]
    media_type = ctype.split(";", 1)[0].strip() or "application/xml"
    declared = _declared_encoding(body, ctype)
    codec = _codec(declared)
    if codec and (codec.startswith(("utf-16", "utf-32")) or codec != _codec_exactly(declared)):
        try:
            repaired = body.decode(codec), None
        except UnicodeDecodeError:
            repaired = None
    else:
        repaired = _repair_encoding(body, declared)
    if repaired is None:
        header = _CHARSET_RE.search(ctype)
        if header is not None and _codec(header.group(1)) != codec or \
                header is None and ctype.lower().startswith("text/"):
            headers["content-type"] = f"{media_type}; charset={codec or declared}"
        return body, headers, None
    text, note = repaired
    text = text.lstrip("\ufeff")
    if _XML_DECL_RE.match(text):
        text = _XML_DECL_RE.sub(r"\1\2utf-8\2", text, count=1)
    headers["content-type"] = f"{media_type}; charset=utf-8"
    return text.encode("utf-8"), headers, note


def _read_as_utf8_by_both(body: bytes, ctype: str) -> bool:
    """Declared UTF-8 (by our rules, the header first) and read as UTF-8 by lxml too (no
    BOM; no XML declaration, or one saying UTF-8)."""
    if _codec(_declared_encoding(body, ctype)) != "utf-8":
        return False
    m = _XML_DECL_ENCODING_RE.match(body)
    if m is None:
        return body[:1] in (b"<", b" ", b"\t", b"\r", b"\n")
    return m.group(1).lower() in (b"utf-8", b"utf8")


def _first_alternate(links) -> str | None:
    fallback = None
    for link in links or ():
        if link.get("rel", "alternate") != "alternate" or not link.get("href"):
            continue
        if (link.get("type") or "text/html") in ("text/html", "application/xhtml+xml"):
            return link["href"]
        fallback = fallback or link["href"]
    return fallback


def _image(get) -> str | None:
    for thumb in get("media_thumbnail") or ():
        if thumb.get("url"):
            return thumb["url"]
    for media in get("media_content") or ():
        if looks_like_image(media.get("url"), media.get("type"), media.get("medium")):
            return media["url"]
    for link in get("links") or ():
        if link.get("rel") == "enclosure" and looks_like_image(link.get("href"), link.get("type")):
            return link["href"]
    img = get("image")
    if isinstance(img, Mapping) and img.get("href"):
        return img["href"]
    return None


def _content(get) -> str | None:
    contents = get("content") or ()
    for c in contents:  # an HTML body if there is one, else the first
        if c.get("type") in ("text/html", "application/xhtml+xml") and c.get("value"):
            return c["value"]
    for c in contents:
        if c.get("value"):
            return c["value"]
    return None


def _author(raw: str | None, detail: Mapping) -> str | None:
    if raw:
        m = _RSS_AUTHOR_RE.match(raw)
        if m:
            return m.group(1).strip()
    return detail.get("name") or raw or None


def _entry(e) -> EntryData:
    # dict.get, not FeedParserDict.get: the latter answers `updated` with `published`
    # (and warns) and goes through its key map on every call.
    get = dict.get.__get__(e)
    # feedparser copies content into summary when the entry has none; only a real summary
    # comes with summary_detail.
    summary = get("summary") if get("summary_detail") is not None else None
    author_detail = get("author_detail") or {}
    detail = get("title_detail") or get("summary_detail") or {}
    categories = []
    for tag in get("tags") or ():
        # Atom's label is the display name ("العالم"); term may be a code ("internationalNews").
        text = tag.get("label") or tag.get("term")
        if text:
            categories.append(text)
    return EntryData(
        guid=get("id") or None,
        link=_first_alternate(get("links")) or get("link") or None,
        title=get("title"),
        summary=summary,
        content=_content(get),
        published=get("published") or None,
        updated=get("updated") or None,
        author=_author(get("author"), author_detail),
        categories=tuple(categories),
        image=_image(get),
        language=detail.get("language") or None,
    )


def _what_it_is(body: bytes, url: str) -> str | None:
    """What an operator should hear about a body that is not RSS or Atom, when we can
    tell: a JSON document, or a web page (and the feeds it announces)."""
    head = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head[:1] in (b"{", b"["):
        return "a JSON document, not RSS or Atom; JSON Feed is not read"
    if head.startswith((b"<!doctype html", b"<html")) or b"<head" in head or b"<body" in head:
        from .discover import feed_links  # it imports this module

        links = feed_links(body, url)
        return "a web page, not a feed" + (
            f"; it announces {', '.join(links[:3])}: use that URL (`sources add` finds it)"
            if links else "")
    return None


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _BOZO_MAX else text[: _BOZO_MAX - 1] + "…"


def _fast_parse(body: bytes, base: str, url: str) -> FeedData | None:
    try:
        feed = fast_parse(body, base)
    except (Unsupported, etree.LxmlError, ValueError):
        return None  # not plain, well-formed RSS/Atom: feedparser's tolerance is needed
    if not feed.entries and not (feed.title or feed.link):
        raise ParseError(f"{url}: not a feed (no entries, title or link)")
    return feed


def parse_feed(body: bytes, headers: Mapping[str, str], url: str,
               allow_fast: bool = True) -> FeedData:
    """Parse one fetched feed. `headers` are the response headers (any case), `url` the
    final URL (base for relative links). Raises ParseError for what is not a feed.
    allow_fast=False forces feedparser (the differential test compares both)."""
    if not body or body.isspace():  # isspace: no copy of the body, unlike strip()
        raise ParseError(f"{url}: empty body")
    if _declares_entities(body):
        raise ParseError("entity declarations refused")
    fp_headers = _headers_for_feedparser(headers, url)
    # Content-Language sets feedparser's default entry language; rare, so left to it.
    allow_fast = allow_fast and "content-language" not in fp_headers
    if allow_fast and _read_as_utf8_by_both(body, fp_headers["content-type"]):
        # libxml2 refuses any byte sequence that is not UTF-8 (tests/test_fastparse.py), so
        # a body it parses needs no repair: the whole-body decode of _prepare is skipped.
        feed = _fast_parse(body, fp_headers["content-location"], url)
        if feed is not None:
            return feed
        # Refused: _prepare gives back the same body (valid UTF-8, refused again) or a
        # repaired one (note set, feedparser's): no second try.
        allow_fast = False
    body, fp_headers, note = _prepare(body, fp_headers)
    if allow_fast and note is None:
        feed = _fast_parse(body, fp_headers["content-location"], url)
        if feed is not None:
            return feed
    try:
        # sanitize_html=False: nh3 in normalize is the sanitiser (and twice as fast).
        result = feedparser.parse(
            io.BytesIO(body),
            response_headers=fp_headers,
            resolve_relative_uris=True,
            sanitize_html=False,
        )
    except Exception as exc:  # feedparser's own bugs: the feed is what we cannot read
        raise ParseError(f"{url}: {_describe(exc)}") from exc

    feed = result.get("feed") or {}
    entries = tuple(_entry(e) for e in result.get("entries") or ())
    title = feed.get("title") or None
    link = _first_alternate(feed.get("links")) or feed.get("link") or None
    if not entries and (not result.get("version") or not (title or link)):
        why = _describe(result["bozo_exception"]) if result.get("bozo_exception") else "no feed elements"
        raise ParseError(f"{url}: not a feed ({_what_it_is(body, url) or why})")

    complaints = [note] if note else []
    if result.get("bozo") and result.get("bozo_exception") is not None:
        complaints.append(_describe(result["bozo_exception"]))
    language = feed.get("language") or (feed.get("title_detail") or {}).get("language") or None
    return FeedData(
        title=title,
        link=link,
        language=language,
        entries=entries,
        bozo="; ".join(complaints) or None,
    )
