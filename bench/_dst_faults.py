"""Faults the deterministic simulation harness injects between the loop and its world.

A run's faults are a list of `Fault`s, each due at one tick, drawn from the seed (`draw_faults`), so a
failing run can be replayed with a prefix of its list to find the shortest one that still fails.
Two seams carry them:

- `FaultyProvider` wraps the world as each controller sees it: throttling, capacity errors for spot
  and on-demand, a launch that times out before or after the cloud made the instance (the answer
  lost), a listing that omits a live instance for a few ticks;
- `FaultyStore` is the real `Store` with a hook before every write: a dropped database connection,
  and a controller crash between any two provider calls or store writes (every later call of the
  dead controller raises `ControllerCrash`, a `BaseException` no handler in the loop catches, so
  nothing more is done or written by it; the harness builds a new controller from the store).

World faults (a reclamation storm, duplicated notices, a corrupt newest checkpoint, an unreadable
checkpoint store, a worker that dies holding items, a second controller, a stalled one) are applied
by the harness at their tick.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import OperationalError

from orchestrator.loop.executor import CallTimedOut
from orchestrator.store import Store
from vocab import CapacityError, Instance, LaunchRequest, Market, Notice, Offer, Resources, TransientError

# Faults the seams inject (the rest are the world's, applied by the harness).
SEAM_KINDS = ("throttle", "capacity_spot", "capacity_od", "timeout_launch", "lost_answer", "omit", "crash",
              "db_drop")
WORLD_KINDS = ("storm", "duplicate_notices", "corrupt_ckpt", "storage_down", "second_controller", "stall")
KINDS = SEAM_KINDS + WORLD_KINDS


class ControllerCrash(BaseException):
    """The controller process died here: nothing after this point of its tick happens."""


@dataclass(frozen=True, slots=True)
class Fault:
    tick: int
    kind: str
    arg: int = 0

    def __str__(self) -> str:
        return f"tick {self.tick}: {self.kind}({self.arg})"


def draw_faults(rng: random.Random, ticks: int, rate: float) -> list[Fault]:
    """About `rate` faults per tick over the first `ticks` ticks, of every kind, sorted by tick."""
    out = []
    for tick in range(ticks):
        if rng.random() < rate:
            kind = rng.choice(KINDS)
            out.append(Fault(tick, kind, rng.randrange(1, 12)))
    return out


class Seams:
    """The faults due this tick for one controller, and its step counter (provider calls + store writes)."""

    def __init__(self, faults: Sequence[Fault]) -> None:
        self.faults = list(faults)
        self.tick = -1
        self.steps = 0
        self.dead = False
        self.omitted: dict[str, int] = {}  # attempt id -> the tick until which the listing omits it
        self.injected: list[str] = []  # what was injected, for the trace

    def start_tick(self, tick: int) -> None:
        self.tick, self.steps = tick, 0

    def due(self, kind: str) -> Fault | None:
        return next((f for f in self.faults if f.tick == self.tick and f.kind == kind), None)

    def take(self, kind: str) -> Fault | None:
        """The fault of `kind` due this tick, once."""
        f = self.due(kind)
        if f is not None:
            self.faults.remove(f)
            self.injected.append(str(f))
        return f

    def step(self, what: str) -> None:
        """One provider call or store write is about to happen: the crash point, if this is it."""
        if self.dead:
            raise ControllerCrash(f"the controller is dead ({what})")
        self.steps += 1
        f = self.due("crash")
        if f is not None and self.steps >= f.arg:
            self.take("crash")
            self.dead = True
            raise ControllerCrash(f"crashed before {what}")


class FaultyProvider:
    """The world as one controller sees it, with this controller's seam faults."""

    def __init__(self, inner: Any, seams: Seams) -> None:
        self.inner = inner
        self.seams = seams
        self.name = inner.name
        self.abilities = inner.abilities

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        self.seams.step("offers")
        self._throttle("offers", 1)
        result: list[Offer] = self.inner.offers(resources, regions, job_id=job_id, options=options)
        return result

    def launch(self, request: LaunchRequest) -> Instance:
        self._before_launch(request)
        inst: Instance = self.inner.launch(request)
        self._after_launch()
        return inst

    def launch_gang(self, request: LaunchRequest) -> list[Instance]:
        """The same seams as one node's launch: the gang is one call."""
        self._before_launch(request)
        nodes: list[Instance] = self.inner.launch_gang(request)
        self._after_launch()
        return nodes

    def _before_launch(self, request: LaunchRequest) -> None:
        self.seams.step("launch")
        self._throttle("launch", 2)
        market = request.offer.market
        if self.seams.take("capacity_spot" if market is Market.SPOT else "capacity_od") is not None:
            raise CapacityError(f"injected: no {market} capacity", provider=self.name, retry_after=300.0)
        if self.seams.take("timeout_launch") is not None:
            raise CallTimedOut("injected: the launch call timed out before the cloud saw it")

    def _after_launch(self) -> None:
        if self.seams.take("lost_answer") is not None:
            raise CallTimedOut("injected: the cloud made the instance, its answer was lost")

    def release_gang(self, request: LaunchRequest) -> bool:
        self.seams.step("release_gang")
        released: bool = self.inner.release_gang(request)
        return released

    def instances(self) -> list[Instance]:
        self.seams.step("instances")
        self._throttle("instances", 3)
        found: list[Instance] = self.inner.instances()
        f = self.seams.take("omit")
        if f is not None:
            alive = sorted((i for i in found if i.alive and i.attempt_id), key=lambda i: i.instance_id)
            if alive:
                victim = alive[f.arg % len(alive)]
                self.seams.omitted[victim.attempt_id or ""] = self.seams.tick + 1 + f.arg % 3
        return [i for i in found if self.seams.omitted.get(i.attempt_id or "", -1) < self.seams.tick]

    def terminate(self, instance: Instance) -> None:
        self.seams.step("terminate")
        self._throttle("terminate", 4)
        self.inner.terminate(instance)

    def notices(self) -> list[Notice]:
        self.seams.step("notices")
        found: list[Notice] = self.inner.notices()
        return found

    def _throttle(self, call: str, which: int) -> None:
        f = self.seams.due("throttle")
        if f is not None and f.arg % 4 + 1 == which:
            self.seams.take("throttle")
            raise TransientError(f"injected: {call} throttled (RequestLimitExceeded)", provider=self.name,
                                 code="throttled")


WRITES = ("claim", "renew_lease", "release_jobs", "transition", "record_observations", "begin_attempt",
          "attempt_instance", "attempt_running", "end_attempt", "add_event", "mark_finished", "record_prices",
          "record_attempt_nodes", "end_attempt_node")


class FaultyStore(Store):
    """The real store, with this controller's crash and dropped-connection faults before each write."""

    seams: Seams

    @classmethod
    def of(cls, engine: Any, seams: Seams) -> FaultyStore:
        store = cls(engine)
        store.seams = seams
        return store


def _hooked(name: str) -> Callable[..., Any]:
    original = getattr(Store, name)

    def write(self: FaultyStore, *args: Any, **kwargs: Any) -> Any:
        self.seams.step(name)
        if self.seams.take("db_drop") is not None:
            raise OperationalError(f"{name} (injected)", {}, Exception("server closed the connection unexpectedly"))
        return original(self, *args, **kwargs)

    write.__name__ = name
    write.__doc__ = original.__doc__
    return write


for _name in WRITES:
    setattr(FaultyStore, _name, _hooked(_name))
