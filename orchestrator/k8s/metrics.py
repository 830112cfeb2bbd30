"""Prometheus metrics in the text exposition format, and the HTTP server for probes and scrapes.

Written by hand rather than with prometheus_client: five families do not justify a dependency, and
the format (https://prometheus.io/docs/instrumenting/exposition_formats/) is a few lines of text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Labels = tuple[tuple[str, str], ...]

FAMILIES: dict[str, tuple[str, str]] = {
    "orch_gpujobs": ("gauge", "GpuJobs by phase, as last reconciled."),
    "orch_preemptions_total": ("counter", "Spot preemptions seen on GpuJobs by this controller."),
    "orch_cost_usd": ("gauge", "Cost so far of all GpuJobs, by market (priced attempts only)."),
    "orch_unpriced_gpujobs": ("gauge", "GpuJobs whose cost cannot be known (nodes without a catalog price)."),
    "orch_reconcile_duration_seconds": ("histogram", "Time of one reconcile tick over every GpuJob."),
    "orch_watch_restarts_total": ("counter", "GpuJob watches restarted, by reason (gone: 410, error)."),
    "orch_events_total": ("counter", "Kubernetes Events recorded, by reason."),
    "orch_leader": ("gauge", "1 while this replica holds the leader Lease."),
}
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _labels(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _fmt_labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    pairs = [*labels, *([extra] if extra else [])]
    if not pairs:
        return ""
    escaped = (v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for _, v in pairs)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(pairs, escaped, strict=True)) + "}"


class Metrics:
    """Thread-safe counters, gauges and one histogram, rendered on scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = {name: {} for name in FAMILIES}
        self._hist: dict[str, tuple[list[int], float, int]] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            family = self._values[name]
            key = _labels(labels)
            family[key] = family.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name][_labels(labels)] = value

    def replace(self, name: str, values: Mapping[Labels, float]) -> None:
        """Set a whole gauge family at once, so a phase no job is in any more reads 0, not stale."""
        with self._lock:
            family = self._values[name]
            for key in family:
                family[key] = 0.0
            family.update(values)

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            counts, total, n = self._hist.get(name, ([0] * len(BUCKETS), 0.0, 0))
            counts = [c + (1 if seconds <= b else 0) for c, b in zip(counts, BUCKETS, strict=True)]
            self._hist[name] = (counts, total + seconds, n + 1)

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values[name].get(_labels(labels), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, help_text) in FAMILIES.items():
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                if kind == "histogram":
                    counts, total, n = self._hist.get(name, ([0] * len(BUCKETS), 0.0, 0))
                    lines += [f'{name}_bucket{{le="{b}"}} {c}' for b, c in zip(BUCKETS, counts, strict=True)]
                    lines += [f'{name}_bucket{{le="+Inf"}} {n}', f"{name}_sum {total}", f"{name}_count {n}"]
                    continue
                lines += [f"{name}{_fmt_labels(k)} {v:g}" for k, v in sorted(self._values[name].items())]
        return "\n".join(lines) + "\n"


Check = Callable[[], tuple[bool, str]]


class HealthServer:
    """/healthz (the loops are alive), /readyz (able to serve), /metrics, on one port."""

    def __init__(self, *, host: str, port: int, metrics: Metrics, healthz: Check, readyz: Check) -> None:
        routes: dict[str, Callable[[], tuple[int, str, str]]] = {
            "/healthz": lambda: _probe(healthz),
            "/readyz": lambda: _probe(readyz),
            "/metrics": lambda: (200, "text/plain; version=0.0.4; charset=utf-8", metrics.render()),
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
