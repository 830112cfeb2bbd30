"""A small Compute Engine REST fake: the handful of calls orch's GCP provider makes, over real HTTP.

It is hand-written from the public REST reference, not Google: it keeps instances and zone operations
in memory, honours `requestId` (a repeated insert gets the first one's operation), answers a second
insert of a taken name with 409 alreadyExists, filters `aggregatedList` on one label and pages every
list. Tests inject what GCE does to users: HTTP errors on any call (`fail_next`), a stockout reported
in the insert operation (`stockout`), operations that stay RUNNING for a few polls (`slow_operations`),
and preemption (`preempt`: the instance stops, optionally disappears, and a
`compute.instances.preempted` operation is recorded in its zone, as GCE does).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from providers.gcp.provider import GcpProvider
from providers.gcp.settings import GcpSettings, parse_gcp_settings
from tests.gce_fake_gangs import GangRoutes
from tests.gcs_fake import anonymous
from tests.http_fake import ManualClock as ManualClock  # re-exported: the GCP tests' clock
from tests.http_fake import QuietHandler, ServedFake, serving

BASE = "https://www.googleapis.com/compute/v1"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/compute/v1/projects/([^/]+)/zones/([^/]+)/instances$"), "insert"),
    ("GET", re.compile(r"^/compute/v1/projects/([^/]+)/zones/([^/]+)/instances/([^/]+)$"), "get"),
    ("DELETE", re.compile(r"^/compute/v1/projects/([^/]+)/zones/([^/]+)/instances/([^/]+)$"), "delete"),
    ("GET", re.compile(r"^/compute/v1/projects/([^/]+)/aggregated/instances$"), "aggregatedList"),
    ("GET", re.compile(r"^/compute/v1/projects/([^/]+)/zones/([^/]+)/operations$"), "operations.list"),
    ("GET", re.compile(r"^/compute/v1/projects/([^/]+)/zones/([^/]+)/operations/([^/]+)$"), "operations.get"),
    ("POST", re.compile(r"^/compute/v1/projects/([^/]+)/zones/([^/]+)/operations/([^/]+)/wait$"), "operations.wait"),
    ("GET", re.compile(r"^/compute/v1/projects/([^/]+)/global/firewalls/([^/]+)$"), "firewalls.get"),
    ("POST", re.compile(r"^/compute/v1/projects/([^/]+)/global/firewalls$"), "firewalls.insert"),
    ("POST", re.compile(r"^/compute/v1/projects/([^/]+)/global/operations/([^/]+)/wait$"), "globalOperations.wait"),
    ("POST", re.compile(r"^/compute/v1/projects/([^/]+)/zones/([^/]+)/instances/bulkInsert$"), "bulkInsert"),
    ("POST", re.compile(r"^/compute/v1/projects/([^/]+)/regions/([^/]+)/resourcePolicies$"), "resourcePolicies.insert"),
    ("GET", re.compile(r"^/compute/v1/projects/([^/]+)/regions/([^/]+)/resourcePolicies/([^/]+)$"),
     "resourcePolicies.get"),
    ("DELETE", re.compile(r"^/compute/v1/projects/([^/]+)/regions/([^/]+)/resourcePolicies/([^/]+)$"),
     "resourcePolicies.delete"),
    ("POST", re.compile(r"^/compute/v1/projects/([^/]+)/regions/([^/]+)/operations/([^/]+)/wait$"),
     "regionOperations.wait"),
]
_LABEL_FILTER = re.compile(r'^labels\.([a-z0-9_-]+)\s*=\s*"?([^"\s]*)"?$')
_OPTYPE_FILTER = re.compile(r'^operationType\s*=\s*"?([^"\s]*)"?$')


def rfc3339(at: float | None = None) -> str:
    when = dt.datetime.now(dt.UTC) if at is None else dt.datetime.fromtimestamp(at, dt.UTC)
    return when.isoformat(timespec="milliseconds")


class HttpFault(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass
class Operation:
    name: str
    zone: str
    kind: str  # operationType
    target: str  # instance name
    polls_left: int = 0
    error: dict[str, Any] | None = None
    insert_time: str = field(default_factory=rfc3339)
    end_time: str | None = None
    on_done: list[Any] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.polls_left <= 0

    def poll(self) -> None:
        if self.polls_left > 0:
            self.polls_left -= 1
        if self.done and self.end_time is None:
            self.end_time = rfc3339()
            for action in self.on_done:
                action()

    def json(self, project: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "compute#operation",
            "id": str(abs(hash(self.name)) % 10**18),
            "name": self.name,
            "zone": f"{BASE}/projects/{project}/zones/{self.zone}",
            "operationType": self.kind,
            "targetLink": f"{BASE}/projects/{project}/zones/{self.zone}/instances/{self.target}",
            "status": "DONE" if self.done else "RUNNING",
            "progress": 100 if self.done else 50,
            "insertTime": self.insert_time,
            "selfLink": f"{BASE}/projects/{project}/zones/{self.zone}/operations/{self.name}",
        }
        if self.done and self.end_time:
            out["endTime"] = self.end_time
        if self.done and self.error:
            out.update(self.error)
        return out


class GceFake(GangRoutes, ServedFake):
    """State and fault injection; `url` is the `api_endpoint` to give the real client."""

    def __init__(self, project: str = "orch-test") -> None:
        super().__init__()
        self.project = project
        self.lock = threading.RLock()
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        self.operations: dict[tuple[str, str], Operation] = {}
        self.by_request_id: dict[str, tuple[str, str]] = {}
        self.calls: Counter[str] = Counter()
        self.request_ids: list[str] = []
        self.inserted: list[dict[str, Any]] = []  # every accepted insert body, as sent
        self.firewalls: dict[str, dict[str, Any]] = {}  # by name, as inserted
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}  # (region, name) -> resource policy
        self.bulk_inserted: list[dict[str, Any]] = []  # every accepted bulkInsert body, as sent
        self.free_vms: dict[str, int] = {}  # zone -> VMs a bulkInsert can have there (absent: any number)
        self.forget_request_ids = False
        self._faults: dict[str, list[HttpFault]] = {}
        self._stockouts: dict[str, tuple[str, bool]] = {}
        self._slow = 0
        self.wait_hold_seconds = 0.0  # how long `wait` holds a request whose operation is not done
        self._ids = itertools.count(1000)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    # --- injection -------------------------------------------------------------------------

    def fail_next(self, action: str, status: int, reason: str, message: str = "", *, times: int = 1) -> None:
        """The next `times` calls of `action` answer with this HTTP error."""
        with self.lock:
            fault = HttpFault(status, reason, message or f"injected {reason}")
            self._faults.setdefault(action, []).extend([fault] * times)

    def stockout(self, zone: str, code: str = "ZONE_RESOURCE_POOL_EXHAUSTED", *, leave_instance: bool = False) -> None:
        """The next insert in `zone` is accepted, then its operation fails with `code`."""
        with self.lock:
            self._stockouts[zone] = (code, leave_instance)

    def slow_operations(self, polls: int) -> None:
        """Operations created from now on stay RUNNING for `polls` get/wait calls."""
        self._slow = polls

    def preempt(self, name: str, *, delete: bool = True) -> None:
        """Reclaim a SPOT instance the way GCE does: a preempted operation, then stopped or deleted."""
        with self.lock:
            zone, inst = self.find(name)
            self._add_op(zone, "compute.instances.preempted", name, polls=0).poll()
            if delete:
                del self.instances[(zone, name)]
            else:
                inst["status"] = "TERMINATED"
                inst["lastStopTimestamp"] = rfc3339()

    def stop_instance(self, name: str) -> None:
        """The guest shut itself down (what the agent does when the job exits)."""
        with self.lock:
            _, inst = self.find(name)
            inst["status"] = "TERMINATED"
            inst["lastStopTimestamp"] = rfc3339()

    def find(self, name: str) -> tuple[str, dict[str, Any]]:
        with self.lock:
            for (zone, n), inst in self.instances.items():
                if n == name:
                    return zone, inst
        raise KeyError(name)

    # --- the API ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        for verb, pattern, action in _ROUTES:
            match = pattern.match(path)
            if verb == method and match:
                with self.lock:
                    self.calls[action] += 1
                    faults = self._faults.get(action)
                    if faults:
                        raise faults.pop(0)
                    if match.group(1) != self.project:
                        raise HttpFault(404, "notFound", f"The resource 'projects/{match.group(1)}' was not found")
                    handlers: dict[str, Callable[..., dict[str, Any]]] = {
                        "insert": self._insert,
                        "get": self._get,
                        "delete": self._delete,
                        "aggregatedList": self._aggregated_list,
                        "operations.list": self._operations_list,
                        "operations.get": self._operations_get,
                        "operations.wait": self._operations_wait,
                        "firewalls.get": self._firewall_get,
                        "firewalls.insert": self._firewall_insert,
                        "globalOperations.wait": self._global_operation,
                        "bulkInsert": self._bulk_insert,
                        "resourcePolicies.insert": self._policy_insert,
                        "resourcePolicies.get": self._policy_get,
                        "resourcePolicies.delete": self._policy_delete,
                        "regionOperations.wait": self._region_operation,
                    }
                    return 200, handlers[action](*match.groups()[1:], query=query, body=body)
        raise HttpFault(404, "notFound", f"no route for {method} {path}")

    def _add_op(self, zone: str, kind: str, target: str, *, polls: int | None = None) -> Operation:
        op = Operation(f"operation-{next(self._ids)}", zone, kind, target, self._slow if polls is None else polls)
        self.operations[(zone, op.name)] = op
        return op

    def _insert(self, zone: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        rid = query.get("requestId", "")
        self.request_ids.append(rid)
        if rid and rid in self.by_request_id and not self.forget_request_ids:
            return self.operations[self.by_request_id[rid]].json(self.project)
        name = str(body["name"])
        if (zone, name) in self.instances:
            raise HttpFault(409, "alreadyExists", f"The resource 'projects/{self.project}/zones/{zone}/instances/"
                                                  f"{name}' already exists")
        inst = dict(body)
        inst.update(
            id=str(next(self._ids)), status="PROVISIONING", creationTimestamp=rfc3339(),
            zone=f"{BASE}/projects/{self.project}/zones/{zone}",
            selfLink=f"{BASE}/projects/{self.project}/zones/{zone}/instances/{name}",
        )
        self.instances[(zone, name)] = inst
        self.inserted.append(body)
        op = self._add_op(zone, "insert", name)
        stockout = self._stockouts.pop(zone, None)
        if stockout is not None:
            code, leave = stockout
            op.error = {
                "error": {"errors": [{"code": code, "message": f"The zone '{zone}' does not have enough "
                                                                "resources available to fulfill the request."}]},
                "httpErrorStatusCode": 503,
                "httpErrorMessage": "SERVICE UNAVAILABLE",
            }
            op.on_done.append(lambda: self._failed_insert(zone, name, leave))
        else:
            op.on_done.append(lambda: inst.update(status="RUNNING"))
        if rid:
            self.by_request_id[rid] = (zone, op.name)
        if op.done:
            op.poll()  # completes it now, running `on_done`
        return op.json(self.project)

    def _failed_insert(self, zone: str, name: str, leave: bool) -> None:
        if leave:
            self.instances[(zone, name)]["status"] = "TERMINATED"
        else:
            self.instances.pop((zone, name), None)

    def _get(self, zone: str, name: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        if (zone, name) not in self.instances:
            raise HttpFault(404, "notFound", f"The resource 'projects/{self.project}/zones/{zone}/instances/"
                                             f"{name}' was not found")
        return self.instances[(zone, name)]

    def _delete(self, zone: str, name: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        self._get(zone, name, query=query, body=body)
        del self.instances[(zone, name)]
        op = self._add_op(zone, "delete", name, polls=0)
        op.poll()
        return op.json(self.project)

    def _aggregated_list(self, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        wanted = _LABEL_FILTER.match(query.get("filter", "").strip())
        if query.get("filter") and not wanted:
            raise HttpFault(400, "invalid", f"the fake understands only labels.KEY = VALUE, not {query['filter']!r}")
        found = sorted(
            (zone, name, inst) for (zone, name), inst in self.instances.items()
            if not wanted or inst.get("labels", {}).get(wanted.group(1)) == wanted.group(2)
        )
        page, token = _page(found, query)
        items: dict[str, Any] = {}
        for zone, _, inst in page:
            items.setdefault(f"zones/{zone}", {"instances": []})["instances"].append(inst)
        # GCE lists scopes without instances too, with a warning instead of a list.
        items.setdefault("zones/europe-west4-a", {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "none"}})
        return {"kind": "compute#instanceAggregatedList", "items": items, **token}

    def _operations_list(self, zone: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        wanted = _OPTYPE_FILTER.match(query.get("filter", "").strip())
        if query.get("filter") and not wanted:
            raise HttpFault(400, "invalid", f"the fake understands only operationType = X, not {query['filter']!r}")
        found = [op for (z, _), op in sorted(self.operations.items()) if z == zone
                 and (not wanted or op.kind == wanted.group(1))]
        page, token = _page(found, query)
        return {"kind": "compute#operationList", "items": [op.json(self.project) for op in page], **token}

    def _operations_get(self, zone: str, name: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        op = self.operations.get((zone, name))
        if op is None:
            raise HttpFault(404, "notFound", f"operation {name} not found")
        op.poll()
        return op.json(self.project)

    def _operations_wait(self, zone: str, name: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        op = self.operations.get((zone, name))
        if op is not None and op.polls_left > 1 and self.wait_hold_seconds:
            time.sleep(self.wait_hold_seconds)  # GCE holds a wait up to two minutes; tests need seconds
        return self._operations_get(zone, name, query=query, body=body)


    # --- firewalls (global; their operations finish at once) ---------------------------------

    def _firewall_get(self, name: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        if name not in self.firewalls:
            raise HttpFault(404, "notFound", f"The resource 'projects/{self.project}/global/firewalls/{name}' "
                                             "was not found")
        return self.firewalls[name]

    def _firewall_insert(self, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        name = str(body.get("name", ""))
        if name in self.firewalls:
            raise HttpFault(409, "alreadyExists", f"The resource 'projects/{self.project}/global/firewalls/{name}' "
                                                  "already exists")
        self.firewalls[name] = {**body, "kind": "compute#firewall",
                                "selfLink": f"{BASE}/projects/{self.project}/global/firewalls/{name}"}
        return self._global_operation(f"operation-{next(self._ids)}", query=query, body=None, target=name)

    def _global_operation(self, name: str, *, query: dict[str, str], body: Any, target: str = "") -> dict[str, Any]:
        return {"kind": "compute#operation", "name": name, "operationType": "insert", "status": "DONE",
                "progress": 100, "insertTime": rfc3339(), "endTime": rfc3339(),
                "targetLink": f"{BASE}/projects/{self.project}/global/firewalls/{target}",
                "selfLink": f"{BASE}/projects/{self.project}/global/operations/{name}"}


def _page(items: list[Any], query: dict[str, str]) -> tuple[list[Any], dict[str, str]]:
    size = int(query.get("maxResults", "500"))
    start = int(query.get("pageToken") or 0)
    end = start + size
    return items[start:end], ({"nextPageToken": str(end)} if end < len(items) else {})


def _handler(fake: GceFake) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def _serve(self) -> None:
            path, query, raw = self.read_request()
            try:
                status, doc = fake.handle(self.command, path, query, json.loads(raw) if raw else None)
            except HttpFault as f:
                status = f.status
                doc = {"error": {"code": f.status, "message": f.message,
                                 "errors": [{"message": f.message, "domain": "global", "reason": f.reason}]}}
            except Exception as exc:  # a bug of the fake: answer 500 and fail the test at teardown
                fake.crashes.append(f"{self.command} {self.path}: {exc!r}")
                status, doc = 500, {"error": {"code": 500, "message": "fake crashed"}}
            self.reply(status, json.dumps(doc).encode(), {"Content-Type": "application/json; charset=UTF-8"})

        do_GET = do_POST = do_DELETE = _serve

    return Handler


def running(project: str = "orch-test") -> Iterator[GceFake]:
    """Generator for a pytest fixture: a started fake, stopped afterwards."""
    return serving(GceFake(project))


def settings(**changes: Any) -> GcpSettings:
    """Provider settings for tests: two zones of us-central1, every catalog zone of us-east1, fast retries."""
    doc: dict[str, Any] = {
        "project": "orch-test",
        "image": "projects/orch-test/global/images/family/orch-gpu",
        "regions": ["us-central1", "us-east1"],
        "region": {"us-central1": {"zones": ["us-central1-a", "us-central1-b"]}},
        "retry": {"attempts": 3, "initial_wait_seconds": 0.01, "max_wait_seconds": 0.05, "deadline_seconds": 5},
        "operation_timeout_seconds": 30,
        "request_timeout_seconds": 5,
    }
    doc.update(changes)
    return parse_gcp_settings(doc, source="test")


def provider(fake: GceFake, clock: ManualClock, **changes: Any) -> GcpProvider:
    """The real provider and the real compute_v1 REST client, pointed at the fake over HTTP."""
    return GcpProvider(
        clock,
        settings(**changes),
        credentials=anonymous(),
        client_options={"api_endpoint": fake.url},
    )



# Fixtures the GCP test files share; each binds them with `fake, clock, gcp = gce_fake.FIXTURES`.
@pytest.fixture(name="fake")
def _fake() -> Iterator[GceFake]:
    yield from running()


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(name="gcp")
def _gcp(fake: GceFake, clock: ManualClock) -> GcpProvider:
    return provider(fake, clock)


FIXTURES = (_fake, _clock, _gcp)
