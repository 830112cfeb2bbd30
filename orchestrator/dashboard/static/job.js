/* The job page: `orch status JOB --json` as cards, the attempts as a timeline, the cost and the
   progress over time, a campaign's items, the zones, the events and the logs; refreshed in place. */
"use strict";
(function () {
  var ref = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  var $ = function (id) { return document.getElementById(id); };

  function card(field, label, value, text, sub, cls) {
    var v = orch.el("div", { cls: "value " + (cls || ""), "data-field": field, text: text });
    v.dataset.value = JSON.stringify(value === undefined ? null : value);
    return orch.el("div", { cls: "card" }, [orch.el("div", { cls: "label", text: label }), v,
                                             sub ? orch.el("div", { cls: "sub", text: sub }) : null]);
  }
  function cards(data) {
    var s = data.status, c = s.cost, k = s.price_known, now = data.now;
    var left = s.deadline_at === null ? null : s.deadline_at - now;
    var deadline = s.deadline_at === null ? "none" : (left >= 0 ? orch.span(left) + " left" : orch.span(left) + " ago");
    var savedLabel = c.saved_usd !== null ? "saved" : (c.projected_saved_usd !== null ? "saved (projected)" : "saved");
    $("cards").replaceChildren(
      card("progress", "progress", s.progress, orch.pct(s.progress), "reported " + orch.pct(s.progress_reported)),
      card("deadline_at", "deadline", s.deadline_at, deadline, s.deadline_at === null ? "" : orch.when(s.deadline_at)),
      card("slack_hours", "slack", s.slack_hours, orch.hours(s.slack_hours), "time left minus work left",
           s.slack_hours !== null && s.slack_hours < 0 ? "neg" : ""),
      card("spent_usd", "spent", c.spent_usd, orch.usd(c.spent_usd, k), "spot " + orch.usd(c.spot_usd, k) + " \u00b7 on-demand " + orch.usd(c.on_demand_usd, k)),
      card("projected_usd", "projected", c.projected_usd, orch.usd(c.projected_usd, k), "if it finishes as planned"),
      card("budget_usd", "budget", s.budget_usd, s.budget_usd === null ? "none" : orch.usd(s.budget_usd)),
      card("on_demand_only_usd", "on-demand only", c.on_demand_only_usd, orch.usd(c.on_demand_only_usd, k), "the same work, no spot"),
      card("saved", savedLabel, orch.savedValue(c), orch.saved(c, k)),
      card("lost_usd", "lost to reclamations", c.lost_usd, orch.usd(c.lost_usd, k), "work done again"),
      card("preemptions", "reclamations", c.preemptions, String(c.preemptions),
           (c.spot_hours).toFixed(2) + " h spot \u00b7 " + (c.on_demand_hours).toFixed(2) + " h on-demand")
    );
  }
  function costChart(data) {
    var h = data.history, s = data.status;
    var xs = h.map(function (p) { return p.at; });
    var series = [
      { label: "spent", colour: "#1c2430", values: h.map(function (p) { return p.spent_usd; }) },
      { label: "projected", colour: "#2f6fde", dash: [6, 4], values: h.map(function (p) { return p.projected_usd; }) },
      { label: "on-demand only", colour: "#e08a00", values: h.map(function (p) { return p.on_demand_only_usd; }) },
    ];
    if (s.budget_usd !== null) series.push({ label: "budget", colour: "#c23030", dash: [2, 3], values: h.map(function () { return s.budget_usd; }) });
    charts.lines($("cost-chart"), "cost", xs, series, { fmt: function (v) { return orch.usd(v); } });
  }
  function progressChart(data) {
    var h = data.history, s = data.status, t0 = data.created_at;
    var xs = h.map(function (p) { return p.at; });
    var series = [{ label: "committed progress", colour: "#1f9d55", values: h.map(function (p) { return p.progress * 100; }) }];
    if (s.deadline_at !== null) {
      var line = function (t) { return Math.min(100, Math.max(0, (t - t0) / (s.deadline_at - t0) * 100)); };
      series.push({ label: "on pace for the deadline", colour: "#9aa4b2", dash: [5, 4], values: xs.map(line) });
    }
    charts.lines($("progress-chart"), "progress", xs, series, { fmt: function (v) { return v.toFixed(0) + "%"; }, ymin: 100 });
  }
  function campaign(data) {
    var c = data.status.campaign;
    $("campaign-panel").hidden = !c;
    if (!c) return;
    var eta = c.eta_at === null ? "-" : orch.when(c.eta_at);
    var onTime = c.on_time === null ? "" : (c.on_time ? "before the deadline" : "AFTER the deadline");
    $("campaign-cards").replaceChildren(
      card("items_done", "items done", c.done, c.done.toLocaleString() + " / " + c.total.toLocaleString()),
      card("items_failed", "failed (will retry)", c.failed, c.failed.toLocaleString()),
      card("items_quarantined", "quarantined", c.quarantined, c.quarantined.toLocaleString()),
      card("spent_usd_per_item", "$ per item (spent)", c.spent_usd_per_item, c.spent_usd_per_item === null ? "-" : "$" + c.spent_usd_per_item.toFixed(4)),
      card("projected_usd_per_item", "$ per item (projected)", c.projected_usd_per_item, c.projected_usd_per_item === null ? "-" : "$" + c.projected_usd_per_item.toFixed(4)),
      card("rate_per_hour", "items per hour", c.rate_per_hour, c.rate_per_hour === null ? "-" : c.rate_per_hour.toLocaleString()),
      card("eta_at", "ETA", c.eta_at, eta, onTime, c.on_time === false ? "neg" : "")
    );
    var pts = data.items_done;
    if (pts.length) {
      charts.lines($("items-chart"), "items", pts.map(function (p) { return p.at; }),
        [{ label: "items done", colour: "#1f9d55", values: pts.map(function (p) { return p.done; }) },
         { label: "total", colour: "#9aa4b2", dash: [4, 4], values: pts.map(function () { return c.total - c.quarantined; }) }],
        { fmt: function (v) { return Math.round(v).toLocaleString(); } });
    }
  }
  function zones(data) {
    var z = data.zones;
    $("zones-panel").hidden = z.length < 2;
    var parts = [];
    z.forEach(function (p, i) {
      if (i) parts.push(orch.el("span", { cls: "muted", text: "\u2192" }));
      var chip = orch.el("span", { cls: "zone", text: p.zone + " (attempt " + p.attempt + ", " + orch.when(p.at) + ")" });
      parts.push(chip);
    });
    $("zones").replaceChildren.apply($("zones"), parts);
  }
  function attempts(data) {
    var rows = data.status.attempts.slice().reverse().map(function (a) {
      return orch.el("tr", { "data-attempt-id": a.id }, [
        orch.el("td", { text: String(a.number) }),
        orch.el("td", {}, [orch.el("span", { cls: "market " + a.market, text: a.market })]),
        orch.el("td", { text: a.instance_type }), orch.el("td", { text: a.zone || a.region }),
        orch.el("td", { cls: "num", text: "$" + a.price_per_hour.toFixed(4) }),
        orch.el("td", { text: orch.when(a.launched_at) }), orch.el("td", { text: orch.when(a.ended_at) }),
        orch.el("td", { text: a.outcome || a.state }),
      ]);
    });
    $("attempts").tBodies[0].replaceChildren.apply($("attempts").tBodies[0], rows);
  }
  function events(data) {
    var rows = data.events.slice().reverse().map(function (e) {
      return orch.el("tr", { "data-event-id": String(e.id), "data-kind": e.kind }, [
        orch.el("td", { text: orch.when(e.at) }), orch.el("td", { text: e.kind }),
        orch.el("td", { text: e.message, style: "white-space:normal" })]);
    });
    $("events").tBodies[0].replaceChildren.apply($("events").tBodies[0], rows);
    $("events-note").textContent = data.event_count > data.events.length
      ? "the newest " + data.events.length + " of " + data.event_count.toLocaleString() + " events (orch events JOB lists all)" : "";
  }
  function logs(data) {
    var parts = [];
    data.logs.slice().reverse().forEach(function (l) {
      parts.push(orch.el("div", { cls: "muted", text: "attempt " + l.number + " (" + l.market + " " + l.instance_type + ", " + l.state + ")" }));
      parts.push(orch.el("pre", { cls: "log", text: l.text === null ? "(no log kept by this provider)" : (l.text || "(no output yet)") }));
    });
    if (!parts.length) parts.push(orch.el("div", { cls: "empty", text: "no attempt has started yet" }));
    $("logs").replaceChildren.apply($("logs"), parts);
  }
  function draw(data) {
    var s = data.status;
    document.title = "orch \u00b7 " + s.name;
    $("error").hidden = true;
    $("name").textContent = s.name;
    $("crumb").textContent = s.name;
    $("jobid").textContent = s.job_id;
    $("state").className = "badge " + s.state;
    $("state").textContent = s.state.replace("_", " ");
    $("market").className = "market " + (s.market || "");
    $("market").textContent = s.market ? s.market + " \u00b7 " + s.instance_type : "";
    cards(data);
    charts.timeline($("timeline"), data);
    costChart(data);
    progressChart(data);
    campaign(data);
    zones(data);
    attempts(data);
    events(data);
    logs(data);
  }
  orch.poll("/api/jobs/" + encodeURIComponent(ref), orch.refreshMs(), draw);
})();
