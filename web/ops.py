"""Operations endpoints: /healthz for load balancers and monitors, /sources.opml for people
moving their subscriptions (to us, or past us to the outlets themselves)."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from email.utils import format_datetime
from urllib.parse import quote, urlencode

import redis
from flask import Blueprint, Response, current_app, jsonify, request

from aggregator.errors import AggregatorError

from .extensions import services

bp = Blueprint("ops", __name__)

UTC = timezone.utc
# The worker beats every 5 s (runner housekeeping) and the key expires after 600 s; a beat
# older than this (24 missed beats) means ingestion has stalled even if the key lives on.
DEFAULT_MAX_HEARTBEAT_AGE = 120.0


def _max_heartbeat_age() -> float:
    value = current_app.config.get("HEALTH_MAX_HEARTBEAT_AGE") or os.environ.get(
        "AGG_HEALTH_MAX_HEARTBEAT_AGE")
    return float(value) if value else DEFAULT_MAX_HEARTBEAT_AGE


@bp.get("/healthz")
def healthz():
    """{redis, worker_heartbeat_age_s, ok}: 200 when Redis answers and the worker beat
    recently, 503 otherwise. No heartbeat at all (worker never started, or its key expired)
    is unhealthy too, unless HEALTH_REQUIRE_WORKER is false (a web-only deployment)."""
    svc = services()
    redis_ok = False
    age = None
    try:
        svc.client.ping()
        redis_ok = True
        beat = svc.store.last_heartbeat()
        if beat is not None:
            if beat.tzinfo is None:
                beat = beat.replace(tzinfo=UTC)
            age = round(max(0.0, (datetime.now(UTC) - beat).total_seconds()), 3)
    except (redis.RedisError, AggregatorError, OSError, ValueError):
        pass
    require_worker = current_app.config.get("HEALTH_REQUIRE_WORKER", True)
    if age is None:
        worker_ok = not require_worker
    else:
        worker_ok = age <= _max_heartbeat_age()
    ok = redis_ok and worker_ok
    resp = jsonify(redis=redis_ok, worker_heartbeat_age_s=age, ok=ok)
    resp.status_code = 200 if ok else 503
    resp.headers["Cache-Control"] = "no-store"
    return resp


FORMATS = (("atom", "Atom"), ("rss", "RSS"), ("json", "JSON Feed"))


@bp.get("/sources.opml")
def sources_opml():
    """OPML 2.0: one folder with the outlets' own feeds, one with ours (everything, per
    outlet, per tag, per country), as absolute URLs so the file works once downloaded."""
    base = request.url_root.rstrip("/")
    from .pages import site_name

    site = site_name()
    try:
        sources = sorted(services().sources, key=lambda s: (s.rank, s.id))
    except (ImportError, OSError, AggregatorError):
        sources = []

    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = f"{site}: المصادر والخلاصات"
    ET.SubElement(head, "dateCreated").text = format_datetime(datetime.now(UTC), usegmt=True)
    ET.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = ET.SubElement(opml, "body")

    outlets = ET.SubElement(body, "outline", text="المصادر", title="المصادر")
    for s in sources:
        attrs = {"type": "rss", "text": s.title or s.id, "title": s.title or s.id,
                 "xmlUrl": s.url, "language": s.language or "ar"}
        if s.site:
            attrs["htmlUrl"] = s.site
        cats = [f"/{t}" for t in s.tags] + ([f"/country/{s.country.upper()}"] if s.country else [])
        if cats:
            attrs["category"] = ",".join(cats)
        ET.SubElement(outlets, "outline", attrs)

    ours = ET.SubElement(body, "outline", text=f"خلاصات {site}", title=f"خلاصات {site}")

    def add(parent, label: str, path: str, html: str):
        for ext, fmt in FORMATS[:2]:  # OPML readers subscribe to XML feeds
            ET.SubElement(parent, "outline", {
                "type": "rss", "text": f"{label} ({fmt})", "title": f"{label} ({fmt})",
                "xmlUrl": f"{base}{path}.{ext}", "htmlUrl": f"{base}{html}", "language": "ar",
            })

    add(ours, "كل الأخبار", "/feeds/all", "/")
    if sources:
        per_source = ET.SubElement(ours, "outline", text="حسب المصدر", title="حسب المصدر")
        for s in sources:
            add(per_source, s.title or s.id, f"/feeds/sources/{quote(s.id, safe='')}",
                f"/?{urlencode({'source': s.id})}")
        tags = sorted({t for s in sources for t in s.tags})
        if tags:
            per_tag = ET.SubElement(ours, "outline", text="حسب القسم", title="حسب القسم")
            from .pages import tag_label

            for t in tags:
                add(per_tag, tag_label(t), f"/feeds/tags/{quote(t, safe='')}", f"/?{urlencode({'tag': t})}")
        countries = sorted({s.country.upper() for s in sources if s.country})
        if countries:
            from .pages import COUNTRIES

            per_cc = ET.SubElement(ours, "outline", text="حسب البلد", title="حسب البلد")
            for cc in countries:
                add(per_cc, COUNTRIES.get(cc, cc), f"/feeds/countries/{quote(cc, safe='')}",
                    f"/?{urlencode({'country': cc})}")

    ET.indent(opml)
    data = ET.tostring(opml, encoding="utf-8", xml_declaration=True)
    resp = Response(data, content_type="text/x-opml; charset=utf-8")
    resp.headers["Content-Disposition"] = 'inline; filename="sources.opml"'
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
