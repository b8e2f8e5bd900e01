/*
 * Batches — live countdowns to expiry (QP queue, batch and certification pages).
 *
 * Each <time class="countdown" data-expires="ISO 8601"> shows the time left, ticking every
 * second. The clock is the server's: the nearest [data-server-now] gives its time when the
 * page or the polled fragment was rendered, so a wrong clock on the device never shows a
 * batch as fresher than it is (the best of the last minute's readings, see readSkew). Under 15 minutes the countdown turns red; past expiry it reads
 * "expired". htmx swaps in new rows every 2 s; the ticking carries on over them.
 */
(function () {
  "use strict";

  var URGENT_SECONDS = 15 * 60;
  var SAMPLE_WINDOW_MS = 60 * 1000;
  var skew = 0;
  var samples = [];

  // Each rendered fragment says the server's time when it was rendered; by the time it is read
  // the server has moved on by the request's latency, so every sample of (server - device)
  // falls short by that much. The largest recent sample is the best estimate, and keeps the
  // countdown from stepping back when a slow poll lands.
  function readSkew(root) {
    var holder = (root || document).querySelector("[data-server-now]");
    if (!holder) {
      return;
    }
    var server = Date.parse(holder.getAttribute("data-server-now"));
    if (isNaN(server)) {
      return;
    }
    var now = Date.now();
    samples.push([now, server - now]);
    samples = samples.filter(function (sample) {
      return now - sample[0] <= SAMPLE_WINDOW_MS;
    });
    skew = Math.max.apply(
      null,
      samples.map(function (sample) {
        return sample[1];
      })
    );
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function label(seconds) {
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    return h > 0 ? h + " h " + pad(m) + " min" + (h < 2 ? " " + pad(s) + " s" : "") : m + " min " + pad(s) + " s";
  }

  function tick() {
    var now = Date.now() + skew;
    var all = document.querySelectorAll("time.countdown[data-expires]");
    for (var i = 0; i < all.length; i++) {
      var el = all[i];
      var expires = Date.parse(el.getAttribute("data-expires"));
      if (isNaN(expires)) {
        continue;
      }
      var left = Math.floor((expires - now) / 1000);
      var text = left <= 0 ? "expired" : label(left);
      if (el.textContent !== text) {
        el.textContent = text;
      }
      el.classList.toggle("countdown-expired", left <= 0);
      el.classList.toggle("countdown-urgent", left > 0 && left < URGENT_SECONDS);
    }
  }

  function start() {
    readSkew(document);
    tick();
    window.setInterval(tick, 1000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
  document.addEventListener("htmx:afterSwap", function () {
    readSkew(document);
    tick();
  });
})();
