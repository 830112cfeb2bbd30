"""A cache of GpuJobs kept current by list-then-watch.

One list gives every object and the collection's resourceVersion; a watch from that version streams
what changed. A watch ends when the server closes it (timeout) and is resumed from the newest version
seen; a `410 Gone` means the server no longer has that history, so the cache is rebuilt from a new
list. A full relist also happens every `relist_s` to heal anything a watch could have missed. The
controller never acts on a watch event itself: events only wake it, and it reconciles every object in
the cache (level-triggered), so a missed or duplicated event cannot cause a wrong action.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from orchestrator.k8s.kube import GpuJobClient, KubeError, key_of
from orchestrator.k8s.metrics import Metrics

log = logging.getLogger(__name__)


class Informer:
    def __init__(self, client: GpuJobClient, *, on_change: Callable[[], None], metrics: Metrics,
                 watch_timeout_s: int = 300, relist_s: float = 600.0, max_backoff_s: float = 30.0) -> None:
        self.client = client
        self.on_change = on_change
        self.metrics = metrics
        self.watch_timeout_s = watch_timeout_s
        self.relist_s = relist_s
        self.max_backoff_s = max_backoff_s
        self.synced = threading.Event()
        self.lists = 0
        self._cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._cache.values())

    def remember(self, obj: dict[str, Any]) -> None:
        """Take an object this process just wrote, unless the cache already holds a newer one."""
        with self._lock:
            key = key_of(obj)
            if key in self._cache and not _newer(obj, self._cache[key]):
                return
            if (obj.get("metadata") or {}).get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
                self._cache.pop(key, None)  # released: the API server deletes it now
            else:
                self._cache[key] = obj


    def run(self, stop: threading.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                version = self._relist()
                backoff = 0.2
                listed_at = time.monotonic()
                while not stop.is_set() and time.monotonic() - listed_at < self.relist_s:
                    version = self._watch(version, stop)
            except KubeError as exc:
                if exc.gone:
                    log.info("watch expired (410 Gone); relisting")
                    self.metrics.inc("orch_watch_restarts_total", reason="gone")
                    continue
                log.warning("gpujob list/watch failed: %s; retrying in %.1f s", exc, backoff)
                self.metrics.inc("orch_watch_restarts_total", reason="error")
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    def _relist(self) -> str:
        items, version = self.client.list_all()
        with self._lock:
            self._cache = {key_of(o): o for o in items}
        self.lists += 1
        self.synced.set()
        self.on_change()
        return version

    def _watch(self, version: str, stop: threading.Event) -> str:
        for kind, obj in self.client.watch(version, self.watch_timeout_s):
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            with self._lock:
                key = key_of(obj)
                if kind == "DELETED":
                    self._cache.pop(key, None)
                elif key not in self._cache or _newer(obj, self._cache[key]):
                    self._cache[key] = obj
            self.on_change()
            if stop.is_set():
                break
        return version


def _newer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether `a` is a later version of the same object than `b`.

    resourceVersions are opaque by contract but are etcd revisions in practice; when both parse as
    integers they order, and otherwise the newer arrival wins, as it would without this check.
    """
    ra, rb = (str((o.get("metadata") or {}).get("resourceVersion", "")) for o in (a, b))
    if ra.isdigit() and rb.isdigit():
        return int(ra) > int(rb)
    return True
