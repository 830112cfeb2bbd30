/* The job page's drawings: the attempts' timeline (SVG, drawn here: bars on a time axis) and line
   charts (uPlot, shipped in static/). Each `draw*` replaces what it drew before. */
"use strict";
var charts = (function () {
  var NS = "http://www.w3.org/2000/svg";
  var COLOURS = { "spot": "#2f6fde", "on-demand": "#e08a00", notice: "#d63b3b" };
  function svg(tag, attrs, text) {
    var e = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function ticks(t0, t1, n) {
    var span = t1 - t0, steps = [60, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 604800];
    var step = steps.find(function (s) { return span / s <= n; }) || 604800;
    var out = [];
    for (var t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
    return out;
  }
  function label(t, span) {
    var d = new Date(t * 1000);
    var hm = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    return span > 172800 ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + hm : hm;
  }

  /* One row per task (the newest 30 of an array job), one bar per attempt coloured by market,
     notices as red marks, a reclamation as a cross at the bar's end, the deadline dashed. */
  function timeline(box, data) {
    var st = data.status, now = data.now;
    var attempts = st.attempts.filter(function (a) { return !(a.outcome === "launch_failed" && a.ended_at === a.launched_at); });
    var t0 = data.created_at;
    var end = data.finished_at !== null ? data.finished_at : now;
    attempts.forEach(function (a) { end = Math.max(end, a.ended_at || now); });
    var t1 = Math.max(end, st.deadline_at && st.deadline_at < end + (end - t0) * 0.5 ? st.deadline_at : end, t0 + 60);
    var tasks = st.tasks.slice(-30);
    var width = Math.max(box.clientWidth || 900, 400), rowH = 30, top = 8, left = 70, right = 14;
    var height = top + tasks.length * rowH + 28;
    var x = function (t) { return left + (t - t0) / (t1 - t0) * (width - left - right); };
    var root = svg("svg", { "class": "timeline", viewBox: "0 0 " + width + " " + height, height: height, role: "img",
                             "aria-label": "timeline of attempts" });
    var axis = svg("g", { "class": "axis" });
    ticks(t0, t1, 8).forEach(function (t) {
      axis.appendChild(svg("line", { x1: x(t), x2: x(t), y1: top, y2: height - 22 }));
      axis.appendChild(svg("text", { x: x(t), y: height - 8, "text-anchor": "middle" }, label(t, t1 - t0)));
    });
    root.appendChild(axis);
    var notices = {};
    data.events.forEach(function (e) { if (e.kind === "notice" && e.attempt_id) notices[e.attempt_id] = e.at; });
    tasks.forEach(function (task, i) {
      var y = top + i * rowH;
      root.appendChild(svg("text", { x: 4, y: y + 19 }, st.tasks.length > 1 ? "task " + task.index : "attempts"));
      attempts.filter(function (a) { return a.task_id === task.id; }).forEach(function (a) {
        var x0 = x(a.launched_at), x1 = Math.max(x(a.ended_at || now), x0 + 2);
        var g = svg("g", { "class": "attempt", "data-attempt-id": a.id, "data-market": a.market });
        g.appendChild(svg("title", {}, "attempt " + a.number + ": " + a.market + " " + a.instance_type + " in " +
          (a.zone || a.region) + "\nlaunched " + orch.when(a.launched_at) + "\nended " + orch.when(a.ended_at) +
          (a.outcome ? " (" + a.outcome + ")" : " (running)") + "\n$" + a.price_per_hour.toFixed(4) + "/h"));
        g.appendChild(svg("rect", { x: x0, y: y + 5, width: x1 - x0, height: rowH - 10, rx: 3,
                                    fill: COLOURS[a.market] || "#888", opacity: a.ended_at ? 0.85 : 1 }));
        var text = a.market + " \u00b7 " + a.instance_type + " \u00b7 " + (a.zone || a.region);
        if (x1 - x0 > text.length * 6.2 + 8) g.appendChild(svg("text", { x: x0 + 5, y: y + 19, fill: "#fff", style: "fill:#fff" }, text));
        else if (x1 - x0 > 40) g.appendChild(svg("text", { x: x0 + 4, y: y + 19, style: "fill:#fff" }, a.market === "spot" ? "spot" : "OD"));
        if (notices[a.id] !== undefined) {
          var nx = x(notices[a.id]);
          g.appendChild(svg("path", { "class": "notice", d: "M" + nx + " " + (y + 1) + " l5 -6 h-10 z", fill: COLOURS.notice }));
          g.appendChild(svg("line", { x1: nx, x2: nx, y1: y + 2, y2: y + rowH - 3, stroke: COLOURS.notice, "stroke-width": 2 }));
        }
        if (a.outcome === "preempted") g.appendChild(svg("text", { "class": "reclaimed", x: x1 + 2, y: y + 19, style: "fill:#d63b3b;font-weight:700" }, "\u2715"));
        root.appendChild(g);
      });
    });
    if (st.deadline_at) {
      root.appendChild(svg("line", { x1: x(st.deadline_at), x2: x(st.deadline_at), y1: top - 4, y2: height - 22,
                                      stroke: "#c23030", "stroke-dasharray": "4 3" }));
    }
    if (data.finished_at === null) root.appendChild(svg("line", { x1: x(now), x2: x(now), y1: top - 4, y2: height - 22, stroke: "#9aa4b2" }));
    box.replaceChildren(root);
  }

  var plots = {};
  /* A uPlot line chart in `box`, redrawn only when its data changed. */
  function lines(box, id, xs, series, opts) {
    var key = JSON.stringify([xs, series.map(function (s) { return s.values; })]);
    if (plots[id] && plots[id].key === key) return;
    if (plots[id]) plots[id].plot.destroy();
    var width = Math.max(box.clientWidth || 600, 300);
    var plot = new uPlot({
      width: width, height: 240,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(max * 1.08, opts.ymin || 0)]; } } },
      axes: [{}, { values: function (u, vals) { return vals.map(opts.fmt); }, size: 64 }],
      legend: { live: true },
      series: [{ label: "time" }].concat(series.map(function (s) {
        return { label: s.label, stroke: s.colour, width: s.width || 2, dash: s.dash, points: { show: false },
                 value: function (u, v) { return v === null || v === undefined ? "-" : opts.fmt(v); } };
      })),
    }, [xs].concat(series.map(function (s) { return s.values; })), box);
    box.replaceChildren(plot.root);
    plots[id] = { plot: plot, key: key };
  }
  return { timeline: timeline, lines: lines };
})();
