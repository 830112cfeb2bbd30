"""The controller's /metrics keep the names and labels dashboards query (prometheus_client underneath)."""

from __future__ import annotations

import re

from orchestrator.k8s.metrics import Metrics

# The dashboards' contract: every series a scrape may show, by name and label names. A rename here is a
# broken dashboard somewhere.
SERIES = {
    "orch_gpujobs": {"phase"},
    "orch_preemptions_total": set(),
    "orch_cost_usd": {"market"},
    "orch_unpriced_gpujobs": set(),
    "orch_reconcile_duration_seconds_bucket": {"le"},
    "orch_reconcile_duration_seconds_sum": set(),
    "orch_reconcile_duration_seconds_count": set(),
    "orch_watch_restarts_total": {"reason"},
    "orch_events_total": {"reason"},
    "orch_leader": set(),
}
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def _scrape(m: Metrics) -> dict[str, set[frozenset[str]]]:
    seen: dict[str, set[frozenset[str]]] = {}
    for line in m.render().splitlines():
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, line
        names = frozenset(re.findall(r'(\w+)="', match["labels"] or ""))
        seen.setdefault(match["name"], set()).add(names)
        float(match["value"])
    return seen


def test_a_scrape_has_exactly_the_dashboards_series() -> None:
    m = Metrics()
    m.inc("orch_preemptions_total", 2)
    m.inc("orch_watch_restarts_total", reason="gone")
    m.inc("orch_events_total", reason="Preempted")
    m.replace("orch_gpujobs", {(("phase", "Running"),): 3.0})
    m.replace("orch_cost_usd", {(("market", "spot"),): 1.5})
    m.set("orch_unpriced_gpujobs", 0.0)
    m.set("orch_leader", 1.0)
    m.observe("orch_reconcile_duration_seconds", 0.3)
    seen = _scrape(m)
    assert set(seen) == set(SERIES), "no _created or other new series; none missing"
    for name, labels in SERIES.items():
        assert seen[name] == {frozenset(labels)}, name
    text = m.render()
    assert "# TYPE orch_preemptions_total counter" in text
    assert "# TYPE orch_reconcile_duration_seconds histogram" in text
    assert 'orch_reconcile_duration_seconds_bucket{le="0.5"} 1.0' in text
    assert 'orch_reconcile_duration_seconds_bucket{le="0.25"} 0.0' in text
    assert m.value("orch_preemptions_total") == 2 and m.value("orch_gpujobs", phase="Running") == 3


def test_replace_zeroes_a_phase_no_job_is_in_any_more() -> None:
    m = Metrics()
    m.replace("orch_gpujobs", {(("phase", "Running"),): 1.0})
    m.replace("orch_gpujobs", {(("phase", "Succeeded"),): 1.0})
    assert m.value("orch_gpujobs", phase="Running") == 0 and m.value("orch_gpujobs", phase="Succeeded") == 1
    assert Metrics().value("orch_gpujobs", phase="Running") == 0, "each Metrics has its own registry"
