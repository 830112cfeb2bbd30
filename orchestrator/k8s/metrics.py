"""Prometheus metrics (prometheus_client), and the HTTP server for probes and scrapes.

The families, their names and their labels are the dashboards' contract (docs/kubernetes.md): a
scrape shows `orch_gpujobs{phase="Running"}`, `orch_cost_usd{market="spot"}`,
`orch_reconcile_duration_seconds_bucket{le="0.5"}` and so on, and tests/test_k8s_metrics.py
compares the names. Each `Metrics` has its own registry, so controllers in one process (the tests')
do not share counts; `_created` series are off, as they were before the library came in, so a
scrape has the same series as it always had.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import disable_created_metrics as _disable_created_metrics

Labels = tuple[tuple[str, str], ...]

# name -> (kind, help, label names)
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "orch_gpujobs": ("gauge", "GpuJobs by phase, as last reconciled.", ("phase",)),
    "orch_preemptions_total": ("counter", "Spot preemptions seen on GpuJobs by this controller.", ()),
    "orch_cost_usd": ("gauge", "Cost so far of all GpuJobs, by market (priced attempts only).", ("market",)),
    "orch_unpriced_gpujobs": ("gauge", "GpuJobs whose cost cannot be known (nodes without a catalog price).", ()),
    "orch_reconcile_duration_seconds": ("histogram", "Time of one reconcile tick over every GpuJob.", ()),
    "orch_watch_restarts_total": ("counter", "GpuJob watches restarted, by reason (gone: 410, error).", ("reason",)),
    "orch_events_total": ("counter", "Kubernetes Events recorded, by reason.", ("reason",)),
    "orch_leader": ("gauge", "1 while this replica holds the leader Lease.", ()),
}
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client


def _build(name: str, registry: CollectorRegistry) -> Counter | Gauge | Histogram:
    kind, help_text, labels = FAMILIES[name]
    if kind == "counter":
        return Counter(name.removesuffix("_total"), help_text, labels, registry=registry)
    if kind == "gauge":
        return Gauge(name, help_text, labels, registry=registry)
    return Histogram(name, help_text, labels, registry=registry, buckets=BUCKETS)


class Metrics:
    """The controller's metric families in one registry, rendered on scrape. prometheus_client's
    metrics are thread-safe; the lock only keeps `replace` whole against a concurrent scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._families = {name: _build(name, self.registry) for name in FAMILIES}
        self._seen: dict[str, set[Labels]] = {name: set() for name in FAMILIES}

    def _child(self, name: str, labels: Mapping[str, str]) -> Any:
        family = self._families[name]
        if not labels:
            return family
        self._seen[name].add(tuple(sorted(labels.items())))
        return family.labels(**labels)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._child(name, labels).inc(amount)

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._child(name, labels).set(value)

    def replace(self, name: str, values: Mapping[Labels, float]) -> None:
        """Set a whole gauge family at once, so a phase no job is in any more reads 0, not stale."""
        with self._lock:
            for key in self._seen[name] - set(values):
                self._child(name, dict(key)).set(0.0)
            for key, value in values.items():
                self._child(name, dict(key)).set(value)

    def observe(self, name: str, seconds: float) -> None:
        self._child(name, {}).observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        sample = self.registry.get_sample_value(name, dict(labels))
        return 0.0 if sample is None else sample

    def render(self) -> str:
        with self._lock:
            return generate_latest(self.registry).decode()


Check = Callable[[], tuple[bool, str]]


class HealthServer:
    """/healthz (the loops are alive), /readyz (able to serve), /metrics, on one port."""

    def __init__(self, *, host: str, port: int, metrics: Metrics, healthz: Check, readyz: Check) -> None:
        routes: dict[str, Callable[[], tuple[int, str, str]]] = {
            "/healthz": lambda: _probe(healthz),
            "/readyz": lambda: _probe(readyz),
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, metrics.render()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                code, ctype, body = route() if route else (404, "text/plain", "not found\n")
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="orch-health",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _probe(check: Check) -> tuple[int, str, str]:
    ok, text = check()
    return (200 if ok else 503), "text/plain", (text or ("ok" if ok else "not ok")) + "\n"
