"""Widgets other sites embed: /embed/<output> (an iframe page) and /embed.js (a script that
renders our JSON Feed into the host page).

These are the only responses that may be framed: their CSP names the allowed ancestors
(EMBED_FRAME_ANCESTORS, default any) and they send no X-Frame-Options; every other
response gets DENY / frame-ancestors 'none' from pages._security_headers.
"""
from __future__ import annotations

import hashlib
import os

from flask import Blueprint, abort, current_app, render_template, request, url_for

from .pagecache import cached_page
from .labels import COUNTRIES, tag_label
from .pages import Filters, Reader, display, list_stories, site_name

bp = Blueprint("embed", __name__)

STATIC = os.path.join(os.path.dirname(__file__), "static")
DEFAULT_LIMIT = 10
MAX_LIMIT = 50


def frame_ancestors() -> str:
    value = current_app.config.get("EMBED_FRAME_ANCESTORS")
    # A source list only: a ';' or ',' would start another directive or break this one.
    value = " ".join(str(value or "*").replace(";", " ").replace(",", " ").split())
    return value or "*"


@bp.after_request
def _embed_headers(response):
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'self'; form-action 'none'; "
        f"frame-ancestors {frame_ancestors()}"
    )
    response.headers.pop("X-Frame-Options", None)
    return response


def _theme() -> str:
    theme = request.args.get("theme", "light")
    return theme if theme in ("light", "dark", "auto") else "light"


def _limit() -> int:
    try:
        return max(1, min(MAX_LIMIT, int(request.args.get("limit", DEFAULT_LIMIT))))
    except ValueError:
        return DEFAULT_LIMIT


@bp.get("/embed/<path:output>")
@cached_page(lambda: (_limit(), _theme()))
def widget(output: str):
    """output: all | sources/<id> | tags/<tag> | countries/<cc> | topics/<id>."""
    reader = Reader()
    limit = _limit()
    kind, _, value = output.partition("/")
    if "/" in value:
        abort(404)
    title = site_name()
    more = url_for("pages.index", _external=False)
    if not _exists(reader, kind, value):
        abort(404)  # as its feed: a mistyped widget URL must not look like a quiet source
    if kind == "all" and not value:
        cards, _ = list_stories(reader, Filters(limit=limit))
        label = "آخر الأخبار"
    elif kind == "sources" and value:
        cards, _ = list_stories(reader, Filters(source=value, limit=limit))
        label = reader.outlet(value).title
        more = url_for("pages.index", source=value)
    elif kind == "tags" and value:
        cards, _ = list_stories(reader, Filters(tag=value, limit=limit))
        label = tag_label(value)
        more = url_for("pages.index", tag=value)
    elif kind == "countries" and value:
        cc = value.upper()[:2]
        cards, _ = list_stories(reader, Filters(country=cc, limit=limit))
        label = COUNTRIES.get(cc, cc)
        more = url_for("pages.index", country=cc)
    elif kind == "topics" and value:
        g = reader.grouper
        topic = g.get_topic(value)
        if topic is None:
            abort(404)
        ids = list(g.topic_stories(value, limit))
        found = reader.stories(ids)
        cards = sorted(reader.cards([found[s] for s in ids if s in found]),
                       key=lambda c: c.sort_time, reverse=True)
        label = topic.label or topic.id
        more = url_for("pages.topic", topic_id=value)
    else:
        abort(404)
    return render_template("embed.html", cards=cards, label=label, title=title, more=more,
                           theme=_theme())


@bp.errorhandler(404)
def _not_found(e):
    """A mistyped widget URL: a compact note inside the frame, not the site's own 404 page
    (whose links would load pages that refuse to be framed)."""
    return render_template("embed.html", cards=[], label="غير موجود", title=site_name(),
                           more=url_for("pages.index"), theme=_theme(), missing=True), 404


def _exists(reader: Reader, kind: str, value: str) -> bool:
    """Whether /feeds/<kind>/<value> would answer: configured, or with stored reports."""
    keys, r, sources = reader.svc.keys, reader.store.r, reader.sources.values()
    if kind == "sources":
        return value in reader.sources or bool(r.exists(keys.source_timeline(value)))
    if kind == "tags":
        return any(value in s.tags for s in sources) or bool(r.exists(keys.tag_timeline(value)))
    if kind == "countries":
        cc = value.upper()
        return len(value) == 2 and value.isascii() and value.isalpha() and (
            any((s.country or "").upper() == cc for s in sources)
            or bool(r.exists(keys.country_timeline(cc))))
    return True  # all, topics (checked below) and unknown kinds (404 below)


_DIGITS_DEFAULT = 'var digits = script.getAttribute("data-digits") || "arabic";'
_scripts: dict[str, bytes] = {}


def _script_bytes(digits: str) -> bytes:
    """embed.js with the site's digits (AGG_DIGITS) as its default, read once per process:
    a widget counts '٣ ساعات' or '3 ساعات' as the site's pages do."""
    if digits not in _scripts:
        with open(os.path.join(STATIC, "embed.js"), encoding="utf-8") as fh:
            text = fh.read()
        assert _DIGITS_DEFAULT in text, "embed.js: the digits default moved"
        _scripts[digits] = text.replace(
            _DIGITS_DEFAULT, _DIGITS_DEFAULT.replace('"arabic"', f'"{digits}"')).encode("utf-8")
    return _scripts[digits]


@bp.get("/embed.js")
def script():
    body = _script_bytes(display().digits)
    resp = current_app.response_class(body, mimetype="text/javascript")
    resp.cache_control.public = True
    resp.cache_control.max_age = 3600
    resp.set_etag(hashlib.sha256(body).hexdigest()[:32])
    resp.make_conditional(request)
    # Host pages on any origin load this script; that is what it is for.
    resp.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    # ... including with crossorigin (which Subresource Integrity needs): CORS allows it.
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp
