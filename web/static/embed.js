/*
 * News widget for host pages. Copy-paste:
 *   <script src="https://NEWS.EXAMPLE/embed.js" data-feed="/feeds/all.json" data-limit="10" async></script>
 * Options (data-*): feed (a JSON Feed URL, relative to this script's origin), limit (1-50),
 * title (heading; default the feed's title), target (CSS selector of an element to render
 * into, found once the page has loaded if it is not there yet; default right after the
 * script tag), link ("article": link the outlet's article, the JSON Feed external_url;
 * default: our story page, the item's url), theme ("light", "dark"; default "auto", the
 * reader's setting), digits ("latin" or "arabic"; default the site's AGG_DIGITS).
 *
 * Only standard JSON Feed 1.1 fields are read (title, home_page_url, items[].title, url,
 * external_url, date_published, authors[].name). Feed text is set with textContent and
 * links are checked to be http(s): nothing from the feed is ever parsed as HTML.
 * The widget lives in a shadow root: its styles are a constructed stylesheet (allowed by
 * a host's strict style-src CSP, where a <style> element is not) and reset whatever the
 * host's rules pass down (:host all:initial !important; sizes in px, not the host's rem).
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch) return;

  var base = new URL(script.src, document.baseURI);
  var feedUrl = new URL(script.getAttribute("data-feed") || "/feeds/all.json", base);
  var limit = parseInt(script.getAttribute("data-limit") || "10", 10);
  if (!(limit >= 1)) limit = 10;
  if (limit > 50) limit = 50;
  // ask our feed for what is shown, not its default 50 entries
  if (feedUrl.origin === base.origin && !feedUrl.searchParams.has("limit")) {
    feedUrl.searchParams.set("limit", String(limit));
  }
  var linkMode = script.getAttribute("data-link") || "story";
  var heading = script.getAttribute("data-title");
  var theme = script.getAttribute("data-theme");
  if (theme !== "light" && theme !== "dark") theme = "auto";
  var digits = script.getAttribute("data-digits") || "arabic";  // the server sets the default

  var host = document.createElement("div");
  host.className = "agg-news-widget";
  host.setAttribute("lang", "ar");
  host.setAttribute("dir", "rtl");
  var targetSel = script.getAttribute("data-target");
  function place() {
    var target = targetSel ? document.querySelector(targetSel) : null;
    if (target) target.appendChild(host);
    else script.parentNode.insertBefore(host, script.nextSibling);
  }
  // an async script in <head> may run before its target is parsed: wait for the page
  if (targetSel && !document.querySelector(targetSel) && document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", place);
  } else {
    place();
  }
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;

  var DARK = ".w{background:#1b1e21;color:#e8e6e3;border-color:#33373b}li{border-color:#2b2f33}" +
    ".m,.e{color:#a0a4a8}.h a,.src{color:#6cc4c4}.h{border-color:#6cc4c4}";
  var CSS = [
    // !important: the host page's own rules for its elements (div{...}) beat a plain :host
    ":host{all:initial !important;display:block !important;direction:rtl !important}",
    ".w{font-family:'Noto Naskh Arabic','Noto Sans Arabic','Segoe UI',Tahoma,'Geeza Pro','DejaVu Sans',sans-serif;",
    "direction:rtl;text-align:right;border:1px solid #e3e0d8;border-radius:12px;background:#fff;color:#1c1c1e;",
    "padding:12px 16px;max-width:512px;line-height:1.6;font-size:15px;overflow-wrap:anywhere}",
    ".h{display:flex;justify-content:space-between;align-items:baseline;gap:8px;border-bottom:2px solid #0d6e6e;",
    "padding-bottom:6px;margin-bottom:4px}",
    ".h a{font-weight:700;color:#0d6e6e;text-decoration:none;font-size:16px}",
    "ol{list-style:none;margin:0;padding:0}",
    "li{padding:8px 0;border-bottom:1px solid #eeebe4}li:last-child{border-bottom:0}",
    "li a{color:inherit;text-decoration:none;font-weight:600}li a:hover{text-decoration:underline}",
    "a:focus-visible{outline:2px solid #0d6e6e;outline-offset:2px;border-radius:3px}",
    ".m{display:block;color:#6b6b70;font-size:12.5px;margin-top:2px}",
    ".src{font-weight:600;color:#0d6e6e}",
    ".e{color:#6b6b70;font-size:13px}",
    theme === "dark" ? DARK : theme === "auto" ? "@media (prefers-color-scheme:dark){" + DARK + "}" : ""
  ].join("");

  if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } else {
    var style = document.createElement("style");
    style.textContent = CSS;
    root.appendChild(style);
  }
  var box = document.createElement("section");
  box.className = "w";
  root.appendChild(box);
  var head = document.createElement("div");
  head.className = "h";
  box.appendChild(head);
  var list = document.createElement("ol");
  list.setAttribute("aria-live", "polite");
  box.appendChild(list);
  note("جارٍ التحميل…");

  // --- Arabic numbers and relative times (mirrors web/arabic_time.py) ---
  var DIGITS = "٠١٢٣٤٥٦٧٨٩";
  function ar(n) {
    if (digits === "latin") return String(n);
    return String(n).replace(/[0-9]/g, function (d) { return DIGITS[+d]; });
  }
  // [one, dual (genitive, after منذ), 3-10 plural, 11-99 singular, 100+ singular]
  var UNITS = {
    minute: ["دقيقة", "دقيقتين", "دقائق", "دقيقة", "دقيقة"],
    hour: ["ساعة", "ساعتين", "ساعات", "ساعة", "ساعة"],
    day: ["يوم", "يومين", "أيام", "يومًا", "يوم"],
    week: ["أسبوع", "أسبوعين", "أسابيع", "أسبوعًا", "أسبوع"],
    month: ["شهر", "شهرين", "أشهر", "شهرًا", "شهر"],
    year: ["سنة", "سنتين", "سنوات", "سنة", "سنة"]
  };
  function counted(n, f) {
    if (n === 1) return f[0];
    if (n === 2) return f[1];
    var r = n % 100;
    if (r >= 3 && r <= 10) return ar(n) + " " + f[2];
    if (r >= 11 && r <= 99) return ar(n) + " " + f[3];
    return ar(n) + " " + f[4];
  }
  function relative(date) {
    var s = (Date.now() - date.getTime()) / 1000;
    if (s < 60) return "الآن";
    var m = Math.floor(s / 60);
    if (m < 60) return "منذ " + counted(m, UNITS.minute);
    if (m < 1440) return "منذ " + counted(Math.floor(m / 60), UNITS.hour);
    if (m < 10080) return "منذ " + counted(Math.floor(m / 1440), UNITS.day);
    if (m < 43200) return "منذ " + counted(Math.floor(m / 10080), UNITS.week);
    if (m < 525600) return "منذ " + counted(Math.floor(m / 43200), UNITS.month);
    return "منذ " + counted(Math.floor(m / 525600), UNITS.year);
  }

  function safeUrl(u) {
    if (typeof u !== "string" || !u) return null;
    try {
      var parsed = new URL(u, feedUrl);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }
  function text(s) { return typeof s === "string" ? s : ""; }
  // Direction from the language (JSON Feed 1.1 item/feed "language"), not the first letter:
  // dir=auto would lay out an Arabic title that starts with "CNN" left to right.
  var RTL = /^(ar|fa|ur|he|iw|ps|ckb|sd|ug|yi|dv|ku)(-|_|$)/i;
  function dirOf(lang) { return RTL.test(text(lang)) ? "rtl" : "auto"; }
  function note(msg) {
    list.textContent = "";
    var li = document.createElement("li");
    li.className = "e";
    li.textContent = msg;
    list.appendChild(li);
  }

  var feedLang = "";
  function render(feed) {
    feedLang = text(feed.language);
    var a = document.createElement("a");
    a.textContent = heading || text(feed.title) || "آخر الأخبار";
    a.href = safeUrl(feed.home_page_url) || base.origin + "/";
    a.target = "_blank";
    a.rel = "noopener";
    head.appendChild(a);

    var items = Array.isArray(feed.items) ? feed.items.slice(0, limit) : [];
    list.textContent = "";
    if (!items.length) return note("لا أخبار بعد.");
    items.forEach(function (item) {
      var title = text(item.title) || text(item.summary);
      var href = linkMode === "article"
        ? safeUrl(item.external_url) || safeUrl(item.url)
        : safeUrl(item.url) || safeUrl(item.external_url);
      if (!title) return;
      var li = document.createElement("li");
      var link = document.createElement(href ? "a" : "span");
      var lang = text(item.language) || text(feedLang);
      link.textContent = title;
      link.setAttribute("dir", dirOf(lang));
      if (lang) link.setAttribute("lang", lang);
      if (href) {
        link.href = href;
        link.target = "_blank";
        link.rel = "noopener";
      }
      li.appendChild(link);
      var meta = document.createElement("span");
      meta.className = "m";
      var authors = Array.isArray(item.authors) ? item.authors : [];
      var who = authors.length && authors[0] ? text(authors[0].name) : "";
      if (who) {
        var src = document.createElement("bdi");
        src.className = "src";
        src.setAttribute("dir", dirOf(lang));
        src.textContent = who;
        meta.appendChild(src);
        meta.appendChild(document.createTextNode(" · "));
      }
      var when = item.date_published ? new Date(item.date_published) : null;
      if (when && !isNaN(when.getTime())) {
        var t = document.createElement("time");
        t.setAttribute("datetime", when.toISOString());
        t.title = when.toLocaleString("ar");
        t.textContent = relative(when);
        meta.appendChild(t);
      }
      li.appendChild(meta);
      list.appendChild(li);
    });
  }

  fetch(feedUrl.href, { credentials: "omit", mode: "cors" })
    .then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    })
    .then(render)
    .catch(function () { note("تعذّر تحميل الأخبار."); });
})();
