/* Shared by both pages: formatting as the CLI formats (orchestrator/cli/render.py), and polling. */
"use strict";
var orch = (function () {
  // One formatter each, made once: toLocaleString with options builds a new one per call, which
  // costs more than the rest of a 500-row table.
  var MONEY = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  var WHEN = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit",
                                                  minute: "2-digit", second: "2-digit" });
  function usd(v, known) {
    if (v === null || v === undefined || known === false) return "n/a";
    var s = MONEY.format(Math.abs(v));
    return (v < 0 ? "-$" : "$") + s;
  }
  function saved(cost, known) {
    if (cost.saved_usd !== null && cost.saved_usd !== undefined) return usd(cost.saved_usd, known);
    if (cost.projected_saved_usd !== null && cost.projected_saved_usd !== undefined)
      return known === false ? "n/a" : "~" + usd(cost.projected_saved_usd, known);
    return "-";
  }
  function savedValue(cost) {
    if (cost.saved_usd !== null && cost.saved_usd !== undefined) return cost.saved_usd;
    return cost.projected_saved_usd === undefined ? null : cost.projected_saved_usd;
  }
  function hours(h) {
    if (h === null || h === undefined) return "-";
    var sign = h >= 0 ? "+" : "-";
    return sign + Math.abs(h).toFixed(Math.abs(h) < 100 ? 1 : 0) + "h";
  }
  function pct(f) { return (f * 100).toFixed(1) + "%"; }
  function when(ts) {
    if (ts === null || ts === undefined) return "-";
    return WHEN.format(new Date(ts * 1000));
  }
  function ago(ts, now) {
    if (ts === null || ts === undefined) return "-";
    var s = Math.max(0, now - ts);
    if (s < 90) return Math.round(s) + "s";
    if (s < 5400) return Math.round(s / 60) + "m";
    if (s < 172800) return (s / 3600).toFixed(1) + "h";
    return Math.round(s / 86400) + "d";
  }
  function span(s) {
    s = Math.abs(s);
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " days";
  }
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "cls") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c !== null) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  /* Fetch `url` now and every `ms`; `draw(body)` on each answer. Errors show in the header, and the
     page keeps trying: a controller restart or a moment without the database is not a dead page. */
  function poll(url, ms, draw) {
    var live = document.getElementById("live");
    var inflight = false;
    function once() {
      if (inflight) return;
      inflight = true;
      fetch(typeof url === "function" ? url() : url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          return r.json().then(function (body) {
            if (!r.ok) throw new Error(body.error || r.statusText);
            return body;
          });
        })
        .then(function (body) {
          draw(body);
          var n = Number(document.body.dataset.updates || 0) + 1;
          // Milliseconds from navigation to the first page drawn with data (bench/dashboard.py reads it).
          if (n === 1) document.body.dataset.firstDrawMs = String(Math.round(performance.now()));
          document.body.dataset.updates = String(n);
          if (live) { live.textContent = "live \u00b7 updated " + new Date().toLocaleTimeString(); live.className = "live"; }
        })
        .catch(function (err) {
          if (live) { live.textContent = "not updated: " + err.message; live.className = "live stale"; }
        })
        .then(function () { inflight = false; });
    }
    once();
    return setInterval(once, ms);
  }
  function refreshMs() {
    var v = Number(new URLSearchParams(location.search).get("refresh"));
    return v >= 0.2 && v <= 3600 ? v * 1000 : 2000;
  }
  return { usd: usd, saved: saved, savedValue: savedValue, hours: hours, pct: pct, when: when, ago: ago,
           span: span, el: el, poll: poll, refreshMs: refreshMs };
})();
