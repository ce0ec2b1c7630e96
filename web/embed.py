"""Widgets other sites embed: /embed/<output> (an iframe page) and /embed.js (a script that
renders our JSON Feed into the host page).

These are the only responses that may be framed: their CSP names the allowed ancestors
(EMBED_FRAME_ANCESTORS, default any) and they send no X-Frame-Options; every other
response gets DENY / frame-ancestors 'none' from pages._security_headers.
"""
from __future__ import annotations

import os

from flask import Blueprint, abort, current_app, render_template, request, send_from_directory, url_for

from .pagecache import cached_page
from .labels import COUNTRIES, tag_label
from .pages import Filters, Reader, list_stories, site_name

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


def _limit() -> int:
    try:
        return max(1, min(MAX_LIMIT, int(request.args.get("limit", DEFAULT_LIMIT))))
    except ValueError:
        return DEFAULT_LIMIT


@bp.get("/embed/<path:output>")
@cached_page(lambda: (_limit(),))
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
    return render_template("embed.html", cards=cards, label=label, title=title, more=more)


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


@bp.get("/embed.js")
def script():
    resp = send_from_directory(STATIC, "embed.js", mimetype="text/javascript",
                               max_age=3600)
    # Host pages on any origin load this script; that is what it is for.
    resp.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    # ... including with crossorigin (which Subresource Integrity needs): CORS allows it.
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp
