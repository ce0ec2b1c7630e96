/*
 * Progressive enhancement only: pages are complete without it. Keeps "منذ ٥ دقائق" true
 * in a tab left open by re-computing relative times every minute.
 *
 * "Now" is the server's clock at render time (<body data-now>) plus the time elapsed since
 * the page loaded, so a visitor's wrong system clock cannot make news look hours old or
 * from the future. The Arabic counting rules mirror web/arabic_time.py.
 */
(function () {
  "use strict";
  var root = document.body;  // the script is deferred: body exists
  var serverNow = Date.parse(root.getAttribute("data-now") || "");
  if (isNaN(serverNow)) return;
  var loadedAt = Date.now();
  var latin = root.getAttribute("data-digits") === "latin";

  function num(n) {
    var s = String(n);
    return latin ? s : s.replace(/[0-9]/g, function (d) { return "٠١٢٣٤٥٦٧٨٩"[+d]; });
  }
  // [one, dual (genitive, after منذ/بعد), 3-10, 11-99, 100-102…]
  var MINUTE = ["دقيقة", "دقيقتين", "دقائق", "دقيقة", "دقيقة"];
  var HOUR = ["ساعة", "ساعتين", "ساعات", "ساعة", "ساعة"];
  var DAY = ["يوم", "يومين", "أيام", "يومًا", "يوم"];
  var WEEK = ["أسبوع", "أسبوعين", "أسابيع", "أسبوعًا", "أسبوع"];
  var MONTH = ["شهر", "شهرين", "أشهر", "شهرًا", "شهر"];
  var YEAR = ["سنة", "سنتين", "سنوات", "سنة", "سنة"];

  function counted(n, f) {
    if (n === 1) return f[0];
    if (n === 2) return f[1];
    var r = n % 100;
    if (r >= 3 && r <= 10) return num(n) + " " + f[2];
    if (r >= 11 && r <= 99) return num(n) + " " + f[3];
    return num(n) + " " + f[4];
  }

  function relative(then, now) {
    var s = (now - then) / 1000;
    var prefix = "منذ";
    if (s < 0) {
      if (s > -120) return "الآن";
      prefix = "بعد";
      s = -s;
    }
    if (s < 45) return "الآن";
    if (s < 60) return prefix + " أقل من دقيقة";
    var m = Math.floor(s / 60);
    var unit, n;
    if (m < 60) { unit = MINUTE; n = m; }
    else if (m < 1440) { unit = HOUR; n = Math.floor(m / 60); }
    else if (m < 10080) { unit = DAY; n = Math.floor(m / 1440); }
    else if (m < 43200) { unit = WEEK; n = Math.floor(m / 10080); }
    else if (m < 525600) { unit = MONTH; n = Math.floor(m / 43200); }
    else { unit = YEAR; n = Math.floor(m / 525600); }
    return prefix + " " + counted(n, unit);
  }

  function refresh() {
    var now = serverNow + (Date.now() - loadedAt);
    var els = document.querySelectorAll("time[data-rel]");
    for (var i = 0; i < els.length; i++) {
      var then = Date.parse(els[i].getAttribute("datetime"));
      if (isNaN(then)) continue;
      var text = relative(then, now);
      if (els[i].textContent !== text) els[i].textContent = text;
    }
  }

  window.setInterval(refresh, 60 * 1000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });
})();
