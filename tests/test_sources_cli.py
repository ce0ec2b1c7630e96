"""`python -m aggregator sources …` on a snapshot of the project's own feeds.yaml
(tests/data/feeds_sections.yaml: 29 sources, one disabled, section comments, flow-style
tags), run as the operator runs it: a subprocess. And
`poll SOURCE --dry-run` against a real feed server: what would be stored, nothing written."""
from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from datetime import datetime, timedelta, timezone

import pytest

from aggregator.config import load_config
from aggregator.store import Store
from feedserver import Fault, Feed, FeedServer, ant_items

ROOT = Path(__file__).resolve().parents[1]
FEEDS = Path(__file__).parent / "data" / "feeds_sections.yaml"


def run(*args, env=None, feeds=None, input=None):
    cmd = [sys.executable, "-m", "aggregator"]
    if args and args[0] == "sources" and feeds is not None:
        cmd += ["sources", "--file", str(feeds), *args[1:]]
    else:
        cmd += list(args)
    return subprocess.run(cmd, cwd=ROOT, env=env or os.environ.copy(), capture_output=True,
                          text=True, timeout=60, input=input)


@pytest.fixture
def feeds(tmp_path):
    p = tmp_path / "feeds.yaml"
    shutil.copyfile(FEEDS, p)
    return p


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def test_list(feeds):
    r = run("sources", "list", feeds=feeds)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1].startswith("29 sources (28 enabled)")
    assert lines[0].split()[0] == load_config(feeds).sources[0].id
    r = run("sources", "list", "--json", feeds=feeds)
    import json

    data = json.loads(r.stdout)
    assert [d["id"] for d in data] == [s.id for s in load_config(feeds).sources]


def test_add_appends_and_touches_nothing_else(feeds):
    before = feeds.read_text(encoding="utf-8")
    r = run("sources", "add", "--id", "asharq-news", "--url", "https://asharq.com/feed/",
            "--title", "الشرق: أخبار", "--country", "SA", "--tags", "gulf,newspaper",
            "--interval", "15m", "--site", "https://asharq.com", feeds=feeds)
    assert r.returncode == 0, r.stderr
    after = feeds.read_text(encoding="utf-8")
    assert after.startswith(before.rstrip("\n"))  # every byte before stays, comments too
    removed, added = changed_lines(before, after)
    assert removed == []
    assert added == ["  - id: asharq-news", "    url: https://asharq.com/feed/",
                     '    title: "الشرق: أخبار"', "    site: https://asharq.com",
                     "    country: SA", "    tags: [gulf, newspaper]", "    interval: 15m"]
    s = load_config(feeds).sources[-1]
    assert (s.id, s.title, s.country, s.tags, s.interval) == (
        "asharq-news", "الشرق: أخبار", "SA", ("gulf", "newspaper"), 900)
    assert not list(feeds.parent.glob(".feeds-*"))  # no temporary file left behind


@pytest.mark.parametrize("args, problem", [
    (["--id", "bbc_arabic", "--url", "https://x.example/f", "--title", "x"], "duplicate id"),
    (["--id", "x1", "--url", "HTTPS://FEEDS.BBCI.CO.UK/arabic/rss.xml", "--title", "x"],
     "duplicate url"),
    (["--id", "x2", "--url", "https://x.example/f", "--title", "x", "--country", "UK"], "'GB'"),
    (["--id", "x3", "--url", "https://x.example/f", "--title", "x", "--interval", "5s"],
     "minimum"),
    (["--id", "Bad Id", "--url", "https://x.example/f", "--title", "x"], "slug"),
    (["--id", "x4", "--url", "ftp://x.example/f", "--title", "x"], "http"),
])
def test_add_refuses_an_invalid_result_and_leaves_the_file(feeds, args, problem):
    before = feeds.read_bytes()
    r = run("sources", "add", *args, feeds=feeds)
    assert r.returncode == 1
    assert problem in r.stderr and "nothing was written" in r.stderr
    assert re.search(rf"{re.escape(str(feeds))}:\d+: ", r.stderr)  # file:line problems
    assert feeds.read_bytes() == before


def test_remove_keeps_the_next_sections_comment(feeds):
    before = feeds.read_text(encoding="utf-8")
    # almasdar_online is the last source before the "Maghreb" section comment.
    assert re.search(r"almasdar_online[\s\S]*?\n\n  # -+ Maghreb", before)
    r = run("sources", "remove", "almasdar_online", feeds=feeds)
    assert r.returncode == 0, r.stderr
    after = feeds.read_text(encoding="utf-8")
    removed, added = changed_lines(before, after)
    assert added == [] and removed[0] == "  - id: almasdar_online" and len(removed) == 7
    assert comments(after) == comments(before)
    ids = [s.id for s in load_config(feeds).sources]
    assert "almasdar_online" not in ids and len(ids) == 28
    # The first and the last source too.
    first, last = ids[0], ids[-1]
    for sid in (first, last):
        text = feeds.read_text(encoding="utf-8")
        assert run("sources", "remove", sid, feeds=feeds).returncode == 0
        removed, added = changed_lines(text, feeds.read_text(encoding="utf-8"))
        # Only the source's own lines go (its inner comments with it), nothing around it.
        assert added == [] and removed[0] == f"  - id: {sid}"
        assert all(line.startswith("    ") for line in removed[1:]), removed
    text = feeds.read_text(encoding="utf-8")
    sections = [c for c in comments(before) if c.startswith("# ----")]
    assert [c for c in comments(text) if c.startswith("# ----")] == sections
    assert [s.id for s in load_config(feeds).sources] == ids[1:-1]
    r = run("sources", "remove", "nope", feeds=feeds)
    assert r.returncode == 1 and "no source 'nope'" in r.stderr


def test_disable_and_enable(feeds):
    before = feeds.read_text(encoding="utf-8")
    assert run("sources", "disable", "aljazeera", feeds=feeds).returncode == 0
    s = {s.id: s for s in load_config(feeds).sources}
    assert not s["aljazeera"].enabled and sum(x.enabled for x in s.values()) == 27
    removed, added = changed_lines(before, feeds.read_text(encoding="utf-8"))
    assert removed == [] and added == ["    enabled: false"]
    r = run("sources", "disable", "aljazeera", feeds=feeds)
    assert r.returncode == 0 and "already disabled" in r.stdout
    assert run("sources", "enable", "aljazeera", feeds=feeds).returncode == 0
    removed, added = changed_lines(before, feeds.read_text(encoding="utf-8"))
    assert removed == [] and added == ["    enabled: true"]
    assert sum(s.enabled for s in load_config(feeds).sources) == 28


def test_enable_rewrites_only_the_value(tmp_path):
    p = tmp_path / "f.yaml"
    p.write_text("defaults:\n  enabled: false  # opt in\nsources:\n"
                 "  - id: a\n    url: https://a.example/f\n    title: A\n"
                 "    enabled: false   # broken since March\n    interval: 1h\n"
                 "  # --- next\n  - id: b\n    url: https://b.example/f\n    title: B\n",
                 encoding="utf-8")
    assert run("sources", "enable", "a", feeds=p).returncode == 0
    assert "    enabled: true   # broken since March\n" in p.read_text(encoding="utf-8")
    assert run("sources", "enable", "b", feeds=p).returncode == 0  # default off: key added
    text = p.read_text(encoding="utf-8")
    assert text.endswith("    title: B\n    enabled: true\n")
    assert [s.enabled for s in load_config(p).sources] == [True, True]


def test_invalid_file_is_not_edited(tmp_path):
    p = tmp_path / "f.yaml"
    p.write_text("sources:\n  - id: a\n    url: nope\n    title: A\n", encoding="utf-8")
    r = run("sources", "disable", "a", feeds=p)
    assert r.returncode == 1 and f"{p}:3: sources[0].url" in r.stderr
    assert "already invalid" in r.stderr


OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>subscriptions</title></head>
  <body>
    <outline text="News" title="News">
      <outline type="rss" text="BBC" title="بي بي سي" xmlUrl="https://feeds.bbci.co.uk/arabic/rss.xml"/>
      <outline type="rss" text="Asharq" title="الشرق الأوسط" xmlUrl="https://aawsat.com/feed/news"
               htmlUrl="https://aawsat.com/"/>
      <outline type="rss" text="Enab" xmlUrl="https://www.enabbaladi.net/feed/"
               htmlUrl="https://www.enabbaladi.net"/>
    </outline>
    <outline type="rss" text="dup in file" xmlUrl="https://aawsat.com/feed/news"/>
    <outline type="rss" text="bad" xmlUrl="javascript:alert(1)"/>
    <outline type="rss" text="Asharq sport" xmlUrl="https://aawsat.com/feed/sport" htmlUrl="https://aawsat.com/"/>
  </body>
</opml>
"""


def test_import_opml_skips_duplicates_by_url(feeds, tmp_path):
    opml = tmp_path / "subs.opml"
    opml.write_text(OPML, encoding="utf-8")
    before = feeds.read_text(encoding="utf-8")
    r = run("sources", "import-opml", str(opml), "--dry-run", feeds=feeds)
    assert r.returncode == 0 and feeds.read_text(encoding="utf-8") == before
    r = run("sources", "import-opml", str(opml), "--tags", "imported", feeds=feeds)
    assert r.returncode == 0, r.stderr
    assert "3 added, 2 duplicates skipped, 1 invalid skipped" in r.stdout
    after = feeds.read_text(encoding="utf-8")
    assert after.startswith(before.rstrip("\n")) and comments(after) == comments(before)
    new = load_config(feeds).sources[29:]
    # "aawsat" is taken (by another URL of the same outlet): ids get a number.
    assert [(s.id, s.url, s.title, s.site, s.tags) for s in new] == [
        ("aawsat-2", "https://aawsat.com/feed/news", "الشرق الأوسط", "https://aawsat.com/",
         ("imported",)),
        ("enabbaladi", "https://www.enabbaladi.net/feed/", "Enab",
         "https://www.enabbaladi.net", ("imported",)),
        ("aawsat-3", "https://aawsat.com/feed/sport", "Asharq sport", "https://aawsat.com/",
         ("imported",)),
    ]
    # Importing the same file again adds nothing.
    r = run("sources", "import-opml", str(opml), feeds=feeds)
    assert r.returncode == 0 and "0 added" in r.stdout
    assert feeds.read_text(encoding="utf-8") == after


def test_import_opml_refuses_entities_and_non_opml(feeds, tmp_path):
    bomb = tmp_path / "bomb.opml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa">'
                    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
                    '<opml version="2.0"><body><outline text="&b;" '
                    'xmlUrl="https://x.example/f"/></body></opml>', encoding="utf-8")
    r = run("sources", "import-opml", str(bomb), feeds=feeds)
    assert r.returncode == 1 and "DTD" in r.stderr
    rss = tmp_path / "x.opml"
    rss.write_text("<rss/>", encoding="utf-8")
    r = run("sources", "import-opml", str(rss), feeds=feeds)
    assert r.returncode == 1 and "not an OPML file" in r.stderr


def test_export_opml_round_trips(feeds, tmp_path):
    run("sources", "disable", "hespress", feeds=feeds)
    out = tmp_path / "out.opml"
    r = run("sources", "export-opml", "-o", str(out), feeds=feeds)
    assert r.returncode == 0, r.stderr
    root = ET.parse(out).getroot()
    assert root.tag == "opml" and root.get("version") == "2.0"
    outlines = root.findall("./body/outline")
    config = load_config(feeds)
    assert [o.get("xmlUrl") for o in outlines] == [s.url for s in config.sources]
    assert [o.get("title") for o in outlines] == [s.title for s in config.sources]
    hes = outlines[-1]
    assert hes.get("isComment") == "true" and hes.get("htmlUrl") == "https://www.hespress.com"
    assert "/country/MA" in hes.get("category")
    # Into an empty file: every source comes back (same URLs and titles, in order).
    empty = tmp_path / "empty.yaml"
    empty.write_text("# imported\nsources: []\n", encoding="utf-8")
    r = run("sources", "import-opml", str(out), feeds=empty)
    assert r.returncode == 0, r.stderr
    again = load_config(empty)
    assert [(s.url, s.title) for s in again.sources] == [(s.url, s.title) for s in config.sources]
    # a disabled source comes back disabled (isComment), not polling
    assert [s.enabled for s in again.sources] == [s.enabled for s in config.sources]
    assert "(disabled)" in r.stdout
    assert empty.read_text(encoding="utf-8").startswith("# imported\nsources:\n  - id: ")


@pytest.fixture
def server():
    s = FeedServer().start()
    s.feeds["/bbc.xml"] = Feed("BBC", ant_items("BBC"))
    yield s
    s.stop()


# --- add URL: what is not given is read from the feed ------------------------------------

LOCAL = os.environ | {"AGG_ALLOW_PRIVATE_NETWORKS": "1"}  # the test servers are on 127.0.0.1


@pytest.mark.parametrize("html,base,expected", [
    ('<link rel="alternate" type="application/rss+xml" href="/rss.xml">',
     "https://www.aljazeera.net/news/", ["https://www.aljazeera.net/rss.xml"]),
    # <base href>, several rel tokens, a type with parameters and another case
    ('<base href="https://x.example/ar/"><link rel="Alternate nofollow" '
     'type="Application/Atom+XML; charset=utf-8" href="feed.atom">',
     "https://x.example/", ["https://x.example/ar/feed.atom"]),
    # not feeds: a stylesheet, another language's page, a JSON Feed, a javascript: URL
    ('<link rel="stylesheet" type="text/css" href="/a.css">'
     '<link rel="alternate" hreflang="en" href="/en/">'
     '<link rel="alternate" type="application/feed+json" href="/feed.json">'
     '<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">',
     "https://x.example/", []),
    # document order, each once
    ('<link rel="alternate" type="application/rss+xml" href="/b.xml">'
     '<link rel="alternate" type="application/atom+xml" href="/a.xml">'
     '<link rel="alternate" type="application/rss+xml" href="/b.xml">',
     "https://x.example/", ["https://x.example/b.xml", "https://x.example/a.xml"]),
    ("", "https://x.example/", []),
])
def test_feed_links_a_page_announces(html, base, expected):
    from aggregator.discover import feed_links

    page = f"<!doctype html><html><head><title>t</title>{html}</head><body></body></html>"
    assert feed_links(page.encode(), base) == expected


def test_add_reads_title_site_and_id_from_the_feed(feeds, server):
    server.feeds["/arabic.xml"] = Feed("بي بي سي عربي", ant_items("BBC"))
    before = feeds.read_text(encoding="utf-8")
    r = run("sources", "add", server.url("/arabic.xml"), "--tags", "broadcaster", env=LOCAL,
            feeds=feeds)
    assert r.returncode == 0, r.stderr
    removed, added = changed_lines(before, feeds.read_text(encoding="utf-8"))
    assert removed == []
    s = load_config(feeds).sources[-1]
    # the id from the site's host (the feed's <link>), the title as the feed names itself
    assert (s.id, s.title, s.site, s.url, s.tags) == (
        "example", "بي بي سي عربي", "https://example.org/", server.url("/arabic.xml"),
        ("broadcaster",))
    # --id and --title given: nothing is read (an offline edit), the URL stays as typed
    r = run("sources", "add", "--id", "later", "--title", "لاحقًا",
            "--url", "https://later.example/rss", feeds=feeds)
    assert r.returncode == 0 and load_config(feeds).sources[-1].id == "later", r.stderr


def test_add_follows_the_feed_a_page_announces(feeds, server):
    from httptest import host_pages

    feed = server.url("/bbc.xml")
    pages = {"/": f'<!doctype html><html><head><link rel="alternate" '
                  f'type="application/rss+xml" title="RSS" href="{feed}"></head></html>',
             "/plain": "<!doctype html><html><head><title>no feed</title></head></html>"}
    with host_pages(pages) as site:
        r = run("sources", "add", site + "/", env=LOCAL, feeds=feeds)
        assert r.returncode == 0, r.stderr
        assert f"{site}/ announces the feed {feed}" in r.stdout
        assert load_config(feeds).sources[-1].url == feed
        before = feeds.read_text(encoding="utf-8")
        r = run("sources", "add", site + "/plain", env=LOCAL, feeds=feeds)
        assert r.returncode == 1 and "announces no RSS or Atom feed" in r.stderr
        # the feed it announced is there already: said before anything is fetched
        r = run("sources", "add", feed, env=LOCAL, feeds=feeds)
        assert r.returncode == 1 and "is already in" in r.stderr
    assert feeds.read_text(encoding="utf-8") == before


def test_add_keeps_a_feeds_other_language_as_a_valid_tag(feeds):
    from httptest import host_pages

    rss = ('<?xml version="1.0"?><rss version="2.0"><channel><title>Middle East Eye</title>'
           "<link>https://www.middleeasteye.net/</link><language>en_US</language>"
           "<item><title>Gaza</title><link>https://www.middleeasteye.net/news/1</link>"
           "</item></channel></rss>")
    with host_pages({"/rss": ("application/rss+xml", rss.encode())}) as site:
        r = run("sources", "add", site + "/rss", env=LOCAL, feeds=feeds)
    assert r.returncode == 0, r.stderr
    s = load_config(feeds).sources[-1]
    # en_US is no language tag feeds.yaml accepts; its primary subtag is
    assert (s.id, s.title, s.language) == ("middleeasteye", "Middle East Eye", "en")


def test_add_says_why_a_url_cannot_be_read_and_writes_nothing(feeds, server):
    before = feeds.read_text(encoding="utf-8")
    # the worker's own SSRF guard: a loopback feed needs the operator's opt-in
    r = run("sources", "add", server.url("/bbc.xml"), feeds=feeds,
            env={k: v for k, v in os.environ.items() if k != "AGG_ALLOW_PRIVATE_NETWORKS"})
    assert r.returncode == 1 and "blocked" in r.stderr and "--id and --title" in r.stderr
    r = run("sources", "add", server.url("/missing.xml"), env=LOCAL, feeds=feeds)
    assert r.returncode == 1 and "http-4xx (HTTP 404)" in r.stderr
    assert "--id and --title" not in r.stderr  # a wrong URL, not a passing failure
    from httptest import host_pages

    with host_pages({"/data.csv": ("text/csv", "عنوان,رابط\n".encode())}) as site:
        r = run("sources", "add", site + "/data.csv", env=LOCAL, feeds=feeds)
    assert r.returncode == 1 and "not a feed" in r.stderr, r.stderr
    # adding it unread is suggested where the failure may pass (blocked), not otherwise
    assert "--id and --title" not in r.stderr
    assert feeds.read_text(encoding="utf-8") == before


# --- poll --dry-run -------------------------------------------------------------------------------


def test_poll_dry_run_shows_what_would_be_stored_and_writes_nothing(server, redis_url,
                                                                      redis_client, keys,
                                                                      tmp_path):
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(f"sources:\n  - id: bbc\n    url: {server.url('/bbc.xml')}\n"
                     "    title: BBC\n", encoding="utf-8")
    env = os.environ | {"REDIS_URL": redis_url, "AGG_KEY_PREFIX": keys.prefix,
                        "AGG_FEEDS": str(feeds), "AGG_ALLOW_PRIVATE_NETWORKS": "1"}
    r = run("poll", "bbc", "--dry-run", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"bbc: ok HTTP 200 in \d+ ms", lines[0]), lines[0]
    assert lines[1] == "dry run, nothing written: 16 items, 16 new, 0 changed, 0 unchanged"
    assert sum("[new    ]" in line for line in lines) == 16
    assert any(ant_items("BBC")[0]["title"].strip()[:20] in line for line in lines)
    assert lines[-1].startswith("state: last_status ok, consecutive failures 0, next poll ")
    assert list(redis_client.scan_iter(f"{keys.prefix}:*")) == []
    # After a real poll the same dry run sees every item as stored, and a 500 as http-5xx.
    assert run("poll", "bbc", env=env).returncode == 0
    stored = redis_client.zcard(keys.timeline)
    assert stored == 16
    server.feeds["/bbc.xml"].conditional = False  # like Al Arabiya: no 304, same bytes
    r = run("poll", "bbc", "--dry-run", env=env)
    assert "bbc: not-modified HTTP 200" in r.stdout, r.stdout
    server.feeds["/bbc.xml"].items[0] = dict(server.feeds["/bbc.xml"].items[0],
                                             title="عنوان معدّل للخبر")
    r = run("poll", "bbc", "--dry-run", env=env)
    assert "16 items, 0 new, 1 changed, 15 unchanged" in r.stdout, r.stdout
    # retention dropped the two oldest (the retitled one too) while the feed still lists
    # them: not new again
    Store(redis_client, keys).trim(datetime.now(timezone.utc), timedelta(days=3650), 14)
    r = run("poll", "bbc", "--dry-run", env=env)
    assert "16 items, 0 new, 0 changed, 14 unchanged, 2 dropped by retention" in r.stdout, r.stdout
    assert sum("[dropped]" in line for line in r.stdout.splitlines()) == 2
    server.feeds["/bbc.xml"].faults.append(Fault(500))
    r = run("poll", "bbc", "--dry-run", env=env)
    assert r.returncode == 1
    assert r.stdout.startswith("bbc: http-5xx HTTP 500 in ")
    assert "consecutive failures 1" in r.stdout
    assert redis_client.zcard(keys.timeline) == 14
    assert redis_client.hget(keys.source_state("bbc"), "last_status") == "ok"
    # a server that asked us to wait: a poll by hand goes ahead, and says what it overrides
    server.feeds["/bbc.xml"].faults.append(Fault(503, {"Retry-After": "600"}))
    assert run("poll", "bbc", env=env).returncode == 1
    r = run("poll", "bbc", "--dry-run", env=env)
    assert "bbc: the worker is leaving it alone (Retry-After until " in r.stderr, r.stderr


# --- moved: permanent redirects seen by the worker, written back on request -----------------------


def test_moved_lists_permanent_redirects_and_applies_them_line_by_line(server, redis_url,
                                                                       keys, tmp_path):
    server.feeds["/taken.xml"] = Feed("CNN", ant_items("CNN"))
    server.feeds["/bbc-old.xml"] = Feed("BBC", [], faults=[Fault(301, {"Location": "/bbc.xml"})])
    # taken's URL, but for the host's case: feeds.yaml calls that a duplicate
    taken = server.url("/taken.xml").replace("127.0.0.1", "localhost")
    server.feeds["/cnn-old.xml"] = Feed("CNN", [], faults=[
        Fault(301, {"Location": taken.replace("localhost", "LocalHost")})])
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(
        "sources:\n"
        f'  - id: bbc\n    url: "{server.url("/bbc-old.xml")}"  # the Arabic service\n'
        "    title: BBC\n"
        f"  - id: cnn\n    url: '{server.url('/cnn-old.xml')}'\n    title: CNN\n"
        f"  - id: taken\n    url: {taken}\n    title: CNN again\n",
        encoding="utf-8")
    env = os.environ | {"REDIS_URL": redis_url, "AGG_KEY_PREFIX": keys.prefix,
                        "AGG_FEEDS": str(feeds), "AGG_ALLOW_PRIVATE_NETWORKS": "1"}
    r = run("sources", "moved", env=env)
    assert (r.returncode, r.stdout) == (0, f"no source of {feeds} has answered with a "
                                           "permanent redirect\n")
    for sid in ("bbc", "cnn", "taken"):
        assert run("poll", sid, env=env).returncode == 0
    before = feeds.read_text(encoding="utf-8")

    r = run("sources", "moved", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"bbc: {server.url('/bbc-old.xml')} -> {server.url('/bbc.xml')}",
        f"cnn: {server.url('/cnn-old.xml')} -> {taken}",
        f"`sources moved --apply` writes the new URL into {feeds}",
    ]
    assert "already the URL of taken" in r.stderr
    assert feeds.read_text(encoding="utf-8") == before  # listing writes nothing
    stats = run("stats", env=env).stdout
    assert f"moved for good to {server.url('/bbc.xml')} (`sources moved --apply` writes it)" \
        in stats
    assert (f"moved for good to {taken.replace('localhost', 'LocalHost')} (already the URL "
            "of taken: remove one of the two)") in stats

    r = run("sources", "moved", "--apply", env=env)
    assert r.returncode == 1  # one move could not be written
    diff = [d for d in difflib.ndiff(before.splitlines(), feeds.read_text("utf-8").splitlines())
            if d[0] in "+-"]
    assert diff == [f'-     url: "{server.url("/bbc-old.xml")}"  # the Arabic service',
                    f'+     url: "{server.url("/bbc.xml")}"  # the Arabic service']
    # the suggestion belonged to the old URL: neither listed again nor shown by stats
    r = run("sources", "moved", env=env)
    assert r.stdout.startswith("cnn: ") and "bbc" not in r.stdout
    assert "moved for good" not in run("stats", env=env).stdout.split("\n  cnn")[0]


def test_a_mistyped_id_gets_the_closest_one(feeds):
    r = run("sources", "disable", "bbc_arabc", feeds=feeds)
    assert r.returncode == 1 and "did you mean 'bbc_arabic'?" in r.stderr, r.stderr
