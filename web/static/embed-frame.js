/*
 * The iframe widget tells its host page how tall it is, so the host can size the frame
 * to fit instead of scrolling inside it (README, "Embedding"):
 *   addEventListener("message", e => { if (e.data && e.data.type === "agg-news:height")
 *     for (const f of document.querySelectorAll("iframe")) if (f.contentWindow === e.source)
 *       f.style.height = e.data.height + "px"; });
 * Only a number is sent; the host decides whether to listen.
 */
(function () {
  "use strict";
  if (window.parent === window) return;
  var last = 0;
  function send() {
    var h = Math.ceil(document.documentElement.scrollHeight);
    if (h !== last) {
      last = h;
      window.parent.postMessage({ type: "agg-news:height", height: h }, "*");
    }
  }
  send();
  if (window.ResizeObserver) new ResizeObserver(send).observe(document.body);
  window.addEventListener("load", send);
})();
