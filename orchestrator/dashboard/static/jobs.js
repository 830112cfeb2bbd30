/* The jobs page: the rows of `orch status --json`, filtered by the server (state, name) and in the
   browser (any text), sorted by any column, refreshed in place. */
"use strict";
(function () {
  var sortKey = "created_at", sortDir = -1, last = null;
  var state = document.getElementById("state"), name = document.getElementById("name"), find = document.getElementById("find");
  var params = new URLSearchParams(location.search);
  state.value = params.get("state") || "";
  name.value = params.get("name") || "";

  function key(row, k) {
    if (k === "spent_usd" || k === "projected_usd") return row.cost[k];
    if (k === "saved") return orch.savedValue(row.cost);
    if (k === "preemptions") return row.cost.preemptions;
    return row[k];
  }
  function compare(a, b) {
    var x = key(a, sortKey), y = key(b, sortKey);
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * sortDir;
  }
  function cell(field, value, text, cls) {
    var td = orch.el("td", { "data-field": field, cls: cls || "" }, [text]);
    td.dataset.value = JSON.stringify(value === undefined ? null : value);
    return td;
  }
  function row(j, now) {
    var known = j.price_known;
    var link = orch.el("a", { href: "/jobs/" + encodeURIComponent(j.job_id) }, [j.name]);
    var bar = orch.el("span", { cls: "bar" }, [orch.el("span", { style: "width:" + (j.progress * 100).toFixed(1) + "%" })]);
    var tr = orch.el("tr", { "data-job-id": j.job_id }, [
      orch.el("td", {}, [link, orch.el("span", { cls: "muted", text: " " + j.job_id.slice(0, 8) })]),
      cell("state", j.state, orch.el("span", { cls: "badge " + j.state, text: j.state.replace("_", " ") })),
      cell("market", j.market, orch.el("span", { cls: "market " + (j.market || ""), text: j.market || "-" })),
      cell("zone", j.zone, j.zone || "-"),
      cell("progress", j.progress, orch.el("span", {}, [bar, orch.pct(j.progress)])),
      cell("slack_hours", j.slack_hours, orch.hours(j.slack_hours), "num" + (j.slack_hours !== null && j.slack_hours < 0 ? " neg" : "")),
      cell("spent_usd", j.cost.spent_usd, orch.usd(j.cost.spent_usd, known), "num"),
      cell("projected_usd", j.cost.projected_usd, orch.usd(j.cost.projected_usd, known), "num"),
      cell("saved", orch.savedValue(j.cost), orch.saved(j.cost, known), "num"),
      cell("budget_usd", j.budget_usd, j.budget_usd === null ? "-" : orch.usd(j.budget_usd), "num"),
      cell("preemptions", j.cost.preemptions, String(j.cost.preemptions), "num"),
      cell("created_at", j.created_at, orch.ago(j.created_at, now), "num"),
    ]);
    tr.title = "submitted " + orch.when(j.created_at);
    return tr;
  }
  function draw(body) {
    if (body) last = body;
    if (!last) return;
    var text = find.value.trim().toLowerCase();
    var rows = last.jobs.filter(function (j) {
      return !text || (j.name + " " + j.job_id + " " + j.state + " " + (j.market || "") + " " + (j.zone || "")).toLowerCase().indexOf(text) >= 0;
    }).sort(compare);
    var tbody = document.querySelector("#jobs tbody");
    var fresh = document.createElement("tbody");
    rows.forEach(function (j) { fresh.appendChild(row(j, last.now)); });
    tbody.parentNode.replaceChild(fresh, tbody);
    document.getElementById("empty").hidden = rows.length > 0;
    document.getElementById("count").textContent = "showing " + rows.length.toLocaleString() + " of " +
      last.total.toLocaleString() + " jobs";
    document.querySelectorAll("#jobs th").forEach(function (th) {
      th.classList.toggle("sorted-asc", th.dataset.key === sortKey && sortDir > 0);
      th.classList.toggle("sorted-desc", th.dataset.key === sortKey && sortDir < 0);
    });
  }
  function url() {
    var q = new URLSearchParams();
    if (state.value) q.set("state", state.value);
    if (name.value.trim()) q.set("name", name.value.trim());
    if (params.get("limit")) q.set("limit", params.get("limit"));
    return "/api/jobs" + (q.toString() ? "?" + q.toString() : "");
  }
  document.querySelectorAll("#jobs th.sortable").forEach(function (th) {
    th.addEventListener("click", function () {
      if (sortKey === th.dataset.key) sortDir = -sortDir; else { sortKey = th.dataset.key; sortDir = 1; }
      draw();
    });
  });
  var timer = null;
  function restart() {
    var q = new URLSearchParams(location.search);
    ["state", "name"].forEach(function (k) { var v = document.getElementById(k).value.trim(); if (v) q.set(k, v); else q.delete(k); });
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q.toString() : ""));
    if (timer !== null) clearInterval(timer);
    timer = orch.poll(url, orch.refreshMs(), draw);
  }
  state.addEventListener("change", restart);
  name.addEventListener("change", restart);
  find.addEventListener("input", function () { draw(); });
  restart();
})();
