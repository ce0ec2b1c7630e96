"""A real browser (Debian's chromium via Playwright's executable_path; never a downloaded
one) against the app served on 127.0.0.1: RTL layout of the timeline and a story page, and
both embedding paths (/embed.js and an iframe of /embed/all) in host pages served from
another origin. Saves docs/screenshot-timeline.png.

Needs the Debian packages chromium and fonts-noto-core (Arabic glyphs); .ci/run installs
both."""
from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from werkzeug.serving import make_server

from httptest import host_pages, serving

from aggregator.config import load_config
from aggregator.store import Store
from aggregator.types import SourceState
from web import create_app
from web.extensions import services

from pages_fixtures import FEEDS_YAML, NOW, GoldGrouper, load_rows, make_item, store_items

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
SCREENSHOT = os.path.join(os.path.dirname(__file__), "..", "docs", "screenshot-timeline.png")

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} absent (apt-get install chromium; CI does)")
sync_api = pytest.importorskip("playwright.sync_api")
ROWS = load_rows()




@pytest.fixture
def app_url(redis_client, keys, tmp_path):
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(FEEDS_YAML, encoding="utf-8")
    config = load_config(feeds)
    store_items(Store(redis_client, keys), list(config.sources), [make_item(r) for r in ROWS])
    app = create_app({
        "REDIS_CLIENT": redis_client, "AGG_KEY_PREFIX": keys.prefix, "AGG_FEEDS": str(feeds),
        "AGG_NOW": NOW, "AGG_TIMEZONE": "Asia/Riyadh",
    })
    with app.app_context():
        services()._grouper = GoldGrouper(ROWS, {s.id: s.rank for s in config.sources})
    with serving(make_server("127.0.0.1", 0, app, threaded=True)) as server:
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def host_url(app_url):
    """Another origin (another port) with two host pages: one using /embed.js, one an iframe."""
    pages = {
        "/script.html": f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>host</title></head><body><h1>Partner site</h1><div id="news"></div>
<script src="{app_url}/embed.js" data-feed="/feeds/all.json" data-limit="5"
 data-target="#news"></script></body></html>""",
        "/iframe.html": f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>host</title></head><body><h1>Partner site</h1>
<iframe id="w" src="{app_url}/embed/all?limit=5" width="420" height="600"
 title="news"></iframe></body></html>""",
        # a host that is hard on widgets: a strict CSP (no inline or foreign styles), its
        # own rules for every div and a 10px rem, the script in <head> before its target
        "/strict.html": f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self'
 {app_url} 'sha256-{{listener}}'; connect-src {app_url}; style-src 'self'; frame-src {app_url}">
<title>host</title><link rel="stylesheet" href="/host.css">
<script src="{app_url}/embed.js" data-feed="/feeds/all.json" data-limit="3" data-target="#news"
 data-theme="dark" data-digits="latin"></script></head>
<body><h1>Partner site</h1><div id="news"></div>
<iframe id="dark" src="{app_url}/embed/all?limit=3&theme=dark" width="420" height="100"
 title="news"></iframe>
<iframe id="typo" src="{app_url}/embed/sources/nosuch" width="420" height="200"
 title="news"></iframe>
<script>{{listener_js}}</script></body></html>""",
        "/host.css": "div{letter-spacing:.05em;text-transform:uppercase;font-style:italic}"
                     "html{font-size:62.5%}",
    }
    import base64
    import hashlib

    listener = ('addEventListener("message", (e) => { if (e.data && e.data.type === '
                '"agg-news:height") for (const f of document.querySelectorAll("iframe")) '
                'if (f.contentWindow === e.source) f.height = e.data.height; });')
    digest = base64.b64encode(hashlib.sha256(listener.encode()).digest()).decode()
    pages["/strict.html"] = pages["/strict.html"].replace("{listener}", digest).replace(
        "{listener_js}", listener)

    with host_pages(pages) as url:
        yield url


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_timeline_and_story_page_are_rtl(browser, app_url):
    page = browser.new_page(viewport={"width": 1000, "height": 1400}, locale="ar")
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.clock.install()  # app.js keeps relative times fresh: drive its clock
    page.goto(app_url + "/")
    assert page.evaluate("getComputedStyle(document.documentElement).direction") == "rtl"
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"

    width = page.evaluate("document.documentElement.clientWidth")
    first = page.locator("article.card").first.bounding_box()
    # the column is centred; in RTL each card starts at the right edge of that column, and
    # the day heading's text hugs the right
    main = page.locator("main").bounding_box()
    assert abs((first["x"] + first["width"]) - (main["x"] + main["width"] - 16)) < 2
    heading = page.locator("h2.day-heading > :first-child").first.bounding_box()
    assert heading["x"] + heading["width"] > main["x"] + main["width"] - 40
    assert heading["x"] > main["x"] + 100  # right-aligned text, not left

    page.set_viewport_size({"width": 420, "height": 900})  # a phone: the card fills the width
    first = page.locator("article.card").first.bounding_box()
    width = page.evaluate("document.documentElement.clientWidth")
    assert width - (first["x"] + first["width"]) < 24
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scroll
    page.set_viewport_size({"width": 1000, "height": 1400})

    # a grouped story shows its outlets, first badge rightmost
    gaza = page.locator('article[data-story="hamdallah-convoy-bombing-gaza"]')
    badges = gaza.locator(".badges .badge")
    assert badges.count() == 4
    assert badges.nth(3).inner_text() == "+مصدران"
    boxes = [badges.nth(i).bounding_box() for i in range(4)]
    assert all(boxes[i]["x"] > boxes[i + 1]["x"] for i in range(3))  # laid out right-to-left
    assert "بي بي سي عربي" in badges.nth(0).inner_text()

    # headline text is right-aligned inside its card (dir=auto resolves to rtl for Arabic)
    h = gaza.locator("h3.headline a")
    assert h.evaluate("e => getComputedStyle(e).direction") == "rtl"

    # an Arabic outlet name that starts with a Latin word still runs right to left
    cnn = page.locator('.badge bdi', has_text="CNN بالعربية").first
    assert cnn.evaluate("e => getComputedStyle(e).direction") == "rtl"

    # Arabic shapes into real glyphs (missing fonts give narrow boxes or nothing)
    assert h.bounding_box()["width"] > 100

    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=False)

    # relative times move on in an open tab, counted from the server's clock
    newest = page.locator("article.card footer time").first
    assert newest.inner_text() == "منذ ١٧ دقيقة"
    page.clock.run_for("10:00")
    assert newest.inner_text() == "منذ ٢٧ دقيقة"
    page.clock.run_for("01:00:00")
    assert newest.inner_text() == "منذ ساعة"

    page.goto(app_url + "/stories/russia-rejects-uk-ultimatum-summons-envoy")
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    assert page.locator("li.report").count() == 5
    outlets = set(page.locator("li.report").evaluate_all(
        "els => els.map(e => e.dataset.outlet)"))
    assert outlets == {"alarabiya", "bbc_arabic", "france24_ar", "skynewsarabia", "cnn_arabic"}
    assert page.locator("ol.tl > li").count() == 5
    assert page.locator("section.related article").count() == 2

    page.goto(app_url + "/topics")  # the threads, each headline right-aligned, no overflow
    skripal = page.locator('article[data-topic="skripal-poisoning"]')
    assert skripal.locator("ul.also a").count() == 3
    line = skripal.locator("ul.also li").first.bounding_box()
    link = skripal.locator("ul.also a").first.bounding_box()
    assert abs((link["x"] + link["width"]) - (line["x"] + line["width"])) < 2
    page.set_viewport_size({"width": 420, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 420
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_sources_table_fits_a_desktop_and_scrolls_inside_itself_on_a_phone(
        browser, app_url, redis_client, keys):
    store = Store(redis_client, keys)
    polled = datetime(2018, 3, 14, 9, 0, tzinfo=timezone.utc)
    for source_id in ("bbc_arabic", "skynewsarabia", "alarabiya", "france24_ar"):
        store.save_state(source_id, SourceState(last_status="ok", last_http_status=200,
                                                last_poll=polled, last_success=polled,
                                                next_poll=polled, polls=40, latency_ms=420.0))
    moved = "https://www.alarabiya.net/.mrss/ar/aswaq/economy/2018/feeds/moved-permanently.xml"
    store.save_state("alarabiya", SourceState(  # a 301 recorded as a suggested edit
        last_status="ok", last_http_status=200, last_poll=polled, last_success=polled,
        next_poll=polled, polls=40, latency_ms=420.0, suggested_url=moved))
    store.save_state("cnn_arabic", SourceState(  # an error as long as a real one
        last_status="protocol", last_poll=polled, next_poll=polled, errors=3, polls=40,
        consecutive_failures=3, last_error="ProtocolError: ('Connection aborted.', "
        "ConnectionResetError(104, 'Connection reset by peer'))"))
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="ar")
    page.goto(app_url + "/sources")
    assert page.locator("table.sources tbody tr").count() == 5
    fits = "e => e.scrollWidth <= e.clientWidth"
    assert page.locator(".table-wrap").evaluate(fits)  # every column on screen
    assert page.locator("tr#src-cnn_arabic .err").inner_text().startswith("ProtocolError")
    assert page.locator(f'tr#src-alarabiya a[href="{moved}"]').get_attribute("title") == moved

    page.set_viewport_size({"width": 420, "height": 900})  # a phone: the table scrolls alone
    assert not page.locator(".table-wrap").evaluate(fits)
    assert page.evaluate("document.documentElement.scrollWidth") <= 420


def test_a_source_url_cut_short_keeps_its_scheme_and_host(browser, app_url):
    page = browser.new_page(viewport={"width": 360, "height": 800}, locale="ar")
    page.goto(app_url + "/sources")
    cut = page.locator(".src-url").evaluate_all("""divs => divs.filter(d =>
        d.scrollWidth > d.clientWidth).map(d => d.getBoundingClientRect().left -
        d.querySelector('a').getBoundingClientRect().left)""")
    assert cut, "no URL is long enough to be cut at this width"
    assert all(hidden <= 1 for hidden in cut), cut  # the URL's start is on screen


def test_keyboard_focus_never_hides_under_the_sticky_day_heading(browser, app_url):
    page = browser.new_page(viewport={"width": 360, "height": 640}, locale="ar")
    page.goto(app_url + "/")
    page.locator("main .card a").last.focus()  # the bottom of the page
    obscured = []
    for _ in range(40):  # backwards through the cards: the browser scrolls each into view
        page.keyboard.press("Shift+Tab")
        hit = page.evaluate("""() => {
            const el = document.activeElement.getBoundingClientRect();
            for (const h of document.querySelectorAll('.day-heading')) {
                const r = h.getBoundingClientRect();
                if (r.top < el.bottom && r.bottom > el.top + 1) return document.activeElement.textContent;
            }
            return null;
        }""")
        if hit:
            obscured.append(hit.strip()[:40])
    assert not obscured, obscured


def test_embed_script_renders_the_json_feed_in_a_host_page(browser, app_url, host_url):
    page = browser.new_page()
    asked = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(host_url + "/script.html")
    items = page.locator("#news .agg-news-widget li a")  # Playwright pierces the shadow root
    items.first.wait_for(timeout=10_000)
    assert items.count() == 5
    # it asks for the five it shows, not the feed's default fifty
    assert [u for u in asked if "/feeds/" in u] == [app_url + "/feeds/all.json?limit=5"]
    titles = items.all_inner_texts()
    assert set(titles) <= {r["title"] for r in ROWS}  # Arabic intact, nothing else
    assert "ترامب: إيران تقف خلف كل المشاكل في الشرق الأوسط" in titles  # the newest
    href = items.first.get_attribute("href")
    assert href.startswith(app_url + "/stories/")
    widget = page.locator("#news .agg-news-widget")
    assert widget.get_attribute("dir") == "rtl"
    assert page.locator("#news .agg-news-widget time").first.inner_text().startswith("منذ")


def test_widgets_hold_up_in_a_strict_host_page(browser, app_url, host_url):
    """Found by a review in chromium: under a host's strict style-src the script widget
    lost all its styles; the host's div rules and rem reached into it; a script in <head>
    put the widget into <head>; a dark frame on a light page was an opaque block; a
    mistyped frame URL showed the whole site inside the frame."""
    page = browser.new_page(color_scheme="light")
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(host_url + "/strict.html")
    items = page.locator("#news .agg-news-widget li a")
    items.first.wait_for(timeout=10_000)
    assert items.count() == 3  # in its target, though the script ran before it was parsed
    card = page.locator("#news .agg-news-widget section.w")
    style = card.evaluate("e => { const s = getComputedStyle(e); return [s.borderTopLeftRadius,"
                          " s.maxWidth, s.backgroundColor, s.fontStyle, s.letterSpacing] }")
    assert style == ["12px", "512px", "rgb(27, 30, 33)", "normal", "normal"]  # dark, not the host's
    title_style = items.first.evaluate("e => getComputedStyle(e).textTransform")
    assert title_style == "none"
    assert page.locator("#news .agg-news-widget time").first.inner_text().startswith("منذ 8")

    dark = page.frame_locator("#dark")
    dark.locator("li.w-item").first.wait_for(timeout=10_000)
    assert dark.locator("html").get_attribute("class") == "t-dark"
    # the frame posted its height and the host's listener sized it to fit
    page.wait_for_function("document.getElementById('dark').height > 200", timeout=5000)
    inner = page.frame(url=lambda u: "theme=dark" in u).evaluate(
        "document.documentElement.scrollHeight")
    assert int(page.locator("#dark").get_attribute("height")) == inner

    typo = page.frame_locator("#typo")
    assert "لم نجد هذه الأخبار" in typo.locator(".w-empty").inner_text(timeout=10_000)
    assert typo.locator("nav").count() == 0  # not the site's page with its navigation
    csp = [e for e in errors if "Content Security Policy" in e]
    assert csp == [], csp


def test_embed_iframe_renders_in_a_host_page_while_pages_refuse_framing(browser, app_url,
                                                                       host_url):
    page = browser.new_page()
    page.goto(host_url + "/iframe.html")
    frame = page.frame_locator("#w")
    items = frame.locator("li.w-item")
    items.first.wait_for(timeout=10_000)
    assert items.count() == 5
    assert frame.locator("html").get_attribute("dir") == "rtl"

    # the timeline itself must not render inside another site's frame
    page.evaluate(f"document.getElementById('w').src = '{app_url}/'")
    page.wait_for_timeout(1000)
    child = next((f for f in page.frames if f != page.main_frame), None)
    assert child is None or child.url != app_url + "/" or \
        child.evaluate("document.querySelectorAll('article.card').length") == 0
