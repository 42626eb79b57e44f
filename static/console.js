// The operators' console: timers since the press tick every second. The queue itself is
// refreshed by htmx (hx-trigger="every 3s"); without script the page reloads itself.
(function () {
  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function clock(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    if (s >= 3600) {
      return Math.floor(s / 3600) + ":" + pad(Math.floor((s % 3600) / 60)) + ":" + pad(s % 60);
    }
    return Math.floor(s / 60) + ":" + pad(s % 60);
  }
  function tick() {
    var now = Date.now();
    var timers = document.querySelectorAll("[data-pressed]");
    for (var i = 0; i < timers.length; i++) {
      var pressed = Number(timers[i].getAttribute("data-pressed"));
      timers[i].textContent = clock((now - pressed) / 1000);
    }
  }
  setInterval(tick, 1000);
})();
