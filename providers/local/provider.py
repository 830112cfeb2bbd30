"""The `local` provider: each attempt is a process session on this machine, in a simulated spot market.

It is the embedded default, so a newcomer sees launch, reclamation with notice, and resume from a
checkpoint with one command and no cloud account. Each attempt runs under the agent (whose argv
prefix is injected: this package must not import the orchestrator), with the notice and status files
as the only channel between the simulated cloud and the agent, as IMDS is on a real instance.

Everything lives on disk (see `providers.local.records`), so a provider object over the same home,
in this process or after a restart, lists, adopts and terminates what an earlier one started. The
market only moves when the provider is asked (`instances()`, `notices()`): notices are written and
deadlines enforced then, the way a real notice reaches the controller on its next poll.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

from providers.base import check_gang_size
from providers.catalog import load_catalog
from providers.local.gang import MAX_GANG_NODES, forget_gang, gang_port, node_instance_id
from providers.local.market import SpotMarket, build_market
from providers.local.proc import Attempt, Sessions, find_by_argument, job_environment, program_problem
from providers.local.records import (
    Gone,
    InstanceDir,
    InstanceRecord,
    MarketFiles,
    instance_id_for,
    locked,
    read_json,
    write_json,
)
from providers.local.settings import LOCAL_REGION, LocalSettings
from vocab import (
    Abilities,
    CapacityError,
    Clock,
    EndReason,
    Instance,
    InstanceState,
    LaunchRequest,
    Market,
    Notice,
    NoticeKind,
    Offer,
    PermanentError,
    ProviderError,
    Resources,
    TransientError,
)

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["LocalProvider", "LocalSettings"]

REGION = LOCAL_REGION  # where every zone is unless `region_names = "from-zones"`


def _translated(method: Callable[P, R]) -> Callable[P, R]:
    """Disk and process errors leave the provider only as the errors the protocol allows."""

    @functools.wraps(method)
    def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except PermissionError as exc:
            raise PermanentError(f"local: {exc}", provider="local", code="permission") from exc
        except OSError as exc:
            raise TransientError(f"local: {exc}", provider="local", code="os-error") from exc

    return translated


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57]) + "..."


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _region(record: InstanceRecord) -> str:
    """The region the instance's offer named (records written before regions were per zone: `local`)."""
    region = record.offer.get("region")
    return region if isinstance(region, str) and region else REGION


def _attempt(record: InstanceRecord) -> Attempt:
    return Attempt(record.instance_id, record.pid, record.pid_start_time)


# How old a walk over the instances `notices()` may reuse (instances() and notices() come together).
_WALK_REUSE_S = 1.0


class LocalProvider:
    """`Provider` and `LogSource` over processes on this machine; all its state is under `home`."""

    name = "local"

    # Each job has its own simulated market (its options, its recorded epoch): offers are per job. A
    # gang is a process per rank on this machine (`providers.local.gang`).
    abilities = Abilities(offers_per_job=True, max_gang_nodes=MAX_GANG_NODES)

    def __init__(self, home: Path, clock: Clock, *, agent_command: Sequence[str],
                 settings: LocalSettings | None = None) -> None:
        if not agent_command:
            raise ValueError("agent_command must name the agent, e.g. ['orch', 'agent']")
        self.home = Path(home)
        self.settings = settings or LocalSettings()
        self._clock = clock
        self._agent = tuple(agent_command)
        self._root = self.home / "instances"
        self._root.mkdir(parents=True, exist_ok=True)
        self._market_files = MarketFiles(self.home)
        self._markets: dict[str, tuple[float, SpotMarket]] = {}
        self._default: tuple[float, SpotMarket] | None = None
        # Markets previewed from jobs' options before their first launch, by option set.
        self._previews: dict[str, tuple[float, SpotMarket]] = {}
        self._sessions = Sessions()
        # The last walk over the instances, reused by `notices()` right after `instances()`.
        self._walked: tuple[float, list[tuple[InstanceDir, InstanceRecord]]] | None = None

    # --- offers ---------------------------------------------------------------------------------

    @_translated
    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        """Catalog instance types at `price_provider` list prices, in every zone of the market.

        Spot offers carry the market's current state per zone: that of `job_id`'s market when the
        job has launched here before; before that, of the market its `options` describe (its zones,
        its trace), so that the first launch already goes where the job may run; with neither, the
        provider's default market.
        """
        epoch, market = self._market_for_offers(job_id, options)
        settings = market.settings
        catalog = load_catalog()
        billing = catalog.billing_for(settings.price_provider)
        t = self._clock.now() - epoch
        out: list[Offer] = []
        for itype in catalog.of(settings.price_provider):
            price = itype.region(settings.price_region)
            if price is None or not itype.satisfies(resources):
                continue
            for zone in settings.zones:
                region = settings.region_of(zone)
                if regions and region not in regions:
                    continue
                for kind in (Market.SPOT, Market.ON_DEMAND):
                    out.append(itype.offer(provider=self.name, region=region, zone=zone, market=kind, price=price,
                                           billing=billing,
                                           available=market.available(zone, t) if kind is Market.SPOT else None))
        return out

    def _stored_market(self, job_id: str) -> tuple[float, SpotMarket] | None:
        """A job's market as recorded by its first launch here (by this or an earlier provider)."""
        if job_id not in self._markets:
            stored = self._market_files.load(job_id)
            if stored is None:
                return None
            self._markets[job_id] = (stored.epoch, build_market(stored.settings))
        return self._markets[job_id]

    def _market_for_offers(self, job_id: str | None, options: Mapping[str, object] | None) -> tuple[float, SpotMarket]:
        """The market whose state the offers show (see `offers`): recorded, else previewed, else the default."""
        if job_id:
            stored = self._stored_market(job_id)
            if stored is not None:
                return stored
        if not options:
            return self._default_market()
        key = repr(sorted(options.items(), key=lambda kv: kv[0]))
        preview = self._previews.get(key)
        if preview is None:
            epoch = self._default_market()[0]
            # Relative trace paths resolve against the job's workdir only at launch; a preview that
            # cannot read its trace offers spot in the job's own zones, and the launch settles it.
            settings = self.settings.with_options(options)
            try:
                preview = (epoch, build_market(settings.resolved(Path.cwd())))
            except (OSError, ValueError, ProviderError):
                always = dataclasses.replace(settings, availability="always", trace=None, traces=None)
                preview = (epoch, build_market(always))
            if len(self._previews) >= 256:  # bounded: one entry per distinct option set
                self._previews.clear()
            self._previews[key] = preview
        return preview

    def _default_market(self) -> tuple[float, SpotMarket]:
        if self._default is None:
            epoch = self._market_files.default_epoch(self._clock.now())
            self._default = (epoch, build_market(self.settings.resolved(Path.cwd())))
        return self._default

    def _job_market(self, request: LaunchRequest) -> tuple[float, SpotMarket]:
        """The job's market, fixed by its first launch here: later options do not change it."""
        known = self._stored_market(request.job_id)
        if known is not None:
            return known
        base = Path(request.workdir) if request.workdir else Path.cwd()
        settings = self.settings.with_options(request.options).resolved(base)
        market = build_market(settings)  # a bad trace fails this launch, before the market is recorded
        settings = market.settings  # a traces folder's files, as listed now: the job's zones from here on
        stored = self._market_files.create(request.job_id, self._clock.now(), settings)
        if stored.settings != settings:  # another process recorded this job's market first: theirs holds
            market = build_market(stored.settings)
        self._markets[request.job_id] = (stored.epoch, market)
        return self._markets[request.job_id]

    def check_options(self, options: Mapping[str, object], workdir: str | None) -> None:
        """Validate a job's `[placement.options.local]` (and read its trace) without recording a market."""
        base = Path(workdir) if workdir else Path.cwd()
        build_market(self.settings.with_options(options).resolved(base))

    # --- launch ---------------------------------------------------------------------------------

    @_translated
    def launch(self, request: LaunchRequest) -> Instance:
        """Start the attempt; a second call with the same `attempt_id` returns the same instance."""
        return self._launch_node(request, instance_id_for(request.attempt_id), None, request.environment())

    @_translated
    def launch_gang(self, request: LaunchRequest) -> list[Instance]:
        """`request.nodes` processes, one per rank, all or nothing (see `LaunchesGangs`).

        The head is 127.0.0.1 on a port free when the gang is first launched, recorded so that a
        repeated launch gives every node the same one. A node that cannot start (capacity, a bad
        program) terminates the nodes started before it, then the error leaves.
        """
        check_gang_size(self.name, request, MAX_GANG_NODES)
        with locked(self.home / "launch.lock"):
            port = gang_port(self.home, request.attempt_id)
        started: list[Instance] = []
        try:
            for rank in range(request.nodes):
                env = {**request.environment(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
                started.append(self._launch_node(request, node_instance_id(request.attempt_id, rank), rank, env))
        except BaseException:
            for instance in started:
                self.terminate(instance)
            raise
        return started

    def release_gang(self, request: LaunchRequest) -> bool:
        """The gang's recorded port is forgotten once no node of it is alive."""
        if any(i.alive and i.attempt_id == request.attempt_id for i in self.instances()):
            return False
        forget_gang(self.home, request.attempt_id)
        return True

    def _launch_node(self, request: LaunchRequest, instance_id: str, rank: int | None,
                     env: Mapping[str, str]) -> Instance:
        self._walked = None
        offer = request.offer
        if offer.provider != self.name:
            raise PermanentError(f"local cannot launch offer {offer.key}", provider=self.name)
        idir = InstanceDir(self._root, instance_id)
        # The home-wide lock makes "is there a record?" and "create it" one step across processes.
        with locked(self.home / "launch.lock"):
            created = not idir.path.exists()
            idir.path.mkdir(parents=True, exist_ok=True)
            with idir.lock():
                record = idir.load()
                if record is None:
                    record = self._create(idir, request, rank, remove_on_error=created)
                    self._start(idir, record, request, env)
                elif record.pid is None and not record.ended:
                    self._adopt_or_start(idir, record, request, env)
                return self._instance(idir, record)

    def _create(self, idir: InstanceDir, request: LaunchRequest, rank: int | None, *,
                remove_on_error: bool) -> InstanceRecord:
        try:
            record = self._new_record(idir, request)
            if rank is not None:
                record.extra["node_rank"] = rank
        except BaseException:
            if remove_on_error:  # a refused launch (no capacity, bad options) leaves no trace
                shutil.rmtree(idir.path, ignore_errors=True)
            raise
        idir.save(record)  # before the process exists: a crash now leaves nothing untracked
        return record

    def _new_record(self, idir: InstanceDir, request: LaunchRequest) -> InstanceRecord:
        offer = request.offer
        epoch, market = self._job_market(request)
        settings = market.settings
        if offer.zone not in settings.zones:
            # The offer came from the default market, shown while this job had not launched here: its
            # own market (its `zones`) is recorded now, and the next offers for the job come from it.
            raise CapacityError(f"local/{offer.zone} is not one of this job's zones ({', '.join(settings.zones)})",
                                provider=self.name, code="zone-not-in-job", retry_after=1.0)
        if offer.region != settings.region_of(offer.zone):
            raise PermanentError(f"local cannot launch offer {offer.key}: {offer.zone} is in region "
                                 f"{settings.region_of(offer.zone)}", provider=self.name)
        if request.workdir and not Path(request.workdir).is_dir():
            raise PermanentError(f"workdir {request.workdir} is not a directory", provider=self.name)
        now = self._clock.now()
        reclaim_at = None
        if offer.market is Market.SPOT:
            t = now - epoch
            if not market.available(offer.zone, t):
                back = market.next_available(offer.zone, t)
                raise CapacityError(f"no spot capacity in local/{offer.zone} now (simulated market)",
                                    provider=self.name, code="capacity",
                                    retry_after=max(1.0, back - t) if back is not None else 300.0)
            nxt = market.next_unavailable(offer.zone, t)
            reclaim_at = epoch + nxt if nxt is not None else None
        offer_fields = dataclasses.asdict(offer)
        offer_fields["market"] = offer.market.value
        return InstanceRecord(
            instance_id=idir.instance_id, attempt_id=request.attempt_id, job_id=request.job_id,
            task_id=request.task_id, attempt_number=request.attempt_number, market=offer.market.value,
            zone=offer.zone, instance_type=offer.instance_type, offer=offer_fields, launched_at=now,
            reclaim_at=reclaim_at, notice_seconds=settings.notice_seconds,
            # Terminating gives the job the grace it asked for (to save), plus a moment for the agent.
            terminate_grace_seconds=max(settings.terminate_grace_seconds, request.grace_seconds + 1.0),
            workdir=request.workdir,
        )

    def _adopt_or_start(self, idir: InstanceDir, record: InstanceRecord, request: LaunchRequest,
                        env: Mapping[str, str]) -> None:
        """Finish a launch that crashed after writing its record: the process may exist already."""
        found = find_by_argument(str(idir.notice_path))
        if found is None:
            self._start(idir, record, request, env)
        else:
            record.pid, record.pid_start_time = found.pid, found.start_time
            idir.save(record)

    def _start(self, idir: InstanceDir, record: InstanceRecord, request: LaunchRequest,
               job_env: Mapping[str, str]) -> None:
        argv = [*self._agent, "--notice-file", str(idir.notice_path), "--status-file", str(idir.status_path),
                "--grace", str(request.grace_seconds), "--", *request.command]
        env = job_environment(os.environ, job_env, record.instance_id)
        problem = program_problem(request.command, cwd=request.workdir, env=env)
        if problem is not None:
            self._failed_to_start(idir, record, f"local cannot start the job: {_shown(request.command[0])} {problem}")
        try:
            info = self._sessions.spawn(argv, cwd=request.workdir, env=env, log=idir.log_path)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte or an '=' where the OS allows none
            self._failed_to_start(idir, record, f"local could not start {_shown(argv[0])}: {_one_line(exc)}")
        record.pid, record.pid_start_time = info.pid, info.start_time or None
        idir.save(record)

    def _failed_to_start(self, idir: InstanceDir, record: InstanceRecord, message: str) -> NoReturn:
        """Nothing was started: the instance ends FAILED_TO_START (never billed) and the launch fails for good."""
        record.end(EndReason.FAILED_TO_START, self._clock.now())
        idir.save(record)
        raise PermanentError(message, provider=self.name, code="failed-to-start")

    # --- observe --------------------------------------------------------------------------------

    @_translated
    def instances(self) -> list[Instance]:
        """Every instance in the home, after moving the market on to now."""
        return [self._instance(idir, record) for idir, record in self._refresh()]

    @_translated
    def notices(self) -> list[Notice]:
        """Interruption notices of instances that are still alive.

        Right after `instances()` (the reconciler calls both each tick) its walk is reused: going over
        every instance again (locks, /proc) would double the provider's cost for nothing.
        """
        recent = self._walked
        walked = recent[1] if recent and self._clock.now() - recent[0] < _WALK_REUSE_S else self._refresh()
        return [
            Notice(provider=self.name, instance_id=r.instance_id, attempt_id=r.attempt_id,
                   kind=NoticeKind.INTERRUPTION, at=r.notice_at, deadline=r.notice_deadline)
            for _, r in walked if r.notice_at is not None and not r.ended
        ]

    @_translated
    def read_log(self, instance: Instance) -> str:
        path = InstanceDir(self._root, instance.instance_id).log_path
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _refresh(self) -> list[tuple[InstanceDir, InstanceRecord]]:
        self._walked = None
        out = []
        for entry in sorted(p.name for p in self._root.iterdir() if p.is_dir()):
            idir = InstanceDir(self._root, entry)
            try:
                with idir.lock(blocking=False) as held:
                    record = idir.load()
                    if record is None:
                        continue
                    if held and not record.ended:
                        self._advance(idir, record)
                    if held and self._collect_garbage(idir, record):
                        continue
            except Gone:
                continue  # collected by another provider object meanwhile
            out.append((idir, record))
        self._walked = (self._clock.now(), out)
        return out

    def _advance(self, idir: InstanceDir, record: InstanceRecord) -> None:
        """Move one live instance on to now: adopt, notify, reclaim, or record how it ended."""
        now = self._clock.now()
        if record.pid is None:
            found = find_by_argument(str(idir.notice_path))
            if found is None:  # the launch crashed before starting anything
                record.end(EndReason.FAILED_TO_START, now)
                idir.save(record)
                return
            record.pid, record.pid_start_time = found.pid, found.start_time
            idir.save(record)
        alive = self._sessions.agent_alive(_attempt(record))
        if alive and record.reclaim_at is not None and record.notice_at is None and now >= record.reclaim_at:
            record.notice_at = record.reclaim_at
            record.notice_deadline = record.reclaim_at + record.notice_seconds
            record.notice_written_at = now
            write_json(idir.notice_path, {"kind": NoticeKind.INTERRUPTION.value, "at": record.notice_at,
                                          "deadline": record.notice_deadline})
            idir.save(record)
        if alive and record.notice_deadline is not None and now >= record.notice_deadline:
            record.killed_at = now  # the simulated cloud takes the capacity back
            alive = False
        if not alive:
            # Also whatever the job left behind when the agent ended.
            self._sessions.kill(_attempt(record))
            record.finish(read_json(idir.status_path), now, agent_exit=self._sessions.agent_exit(_attempt(record)))
            idir.save(record)

    def _collect_garbage(self, idir: InstanceDir, record: InstanceRecord) -> bool:
        if record.ended_at is None or self._clock.now() - record.ended_at < self.settings.gc_after_seconds:
            return False
        shutil.rmtree(idir.path, ignore_errors=True)
        return True

    # --- terminate ------------------------------------------------------------------------------

    @_translated
    def terminate(self, instance: Instance) -> None:
        """SIGTERM the attempt's session, SIGKILL it after the grace; idempotent."""
        self._walked = None
        idir = InstanceDir(self._root, instance.instance_id)
        try:
            with idir.lock():
                self._terminate_locked(idir)
        except Gone:
            return  # never launched here, or ended and collected long ago

    def _terminate_locked(self, idir: InstanceDir) -> None:
        record = idir.load()
        if record is None or record.ended:
            return
        self._advance(idir, record)
        if record.ended:
            return
        record.terminate_requested_at = self._clock.now()
        idir.save(record)
        self._sessions.terminate(_attempt(record), record.terminate_grace_seconds, self._clock)
        record.finish(read_json(idir.status_path), self._clock.now())
        idir.save(record)

    def _instance(self, idir: InstanceDir, record: InstanceRecord) -> Instance:
        if record.ended:
            state = InstanceState.TERMINATED
        else:
            state = InstanceState.RUNNING if record.pid is not None else InstanceState.PENDING
        return Instance(
            provider=self.name, region=_region(record), zone=record.zone, instance_id=record.instance_id,
            instance_type=record.instance_type, market=Market(record.market), state=state,
            attempt_id=record.attempt_id, job_id=record.job_id, task_id=record.task_id,
            launched_at=record.launched_at, ended_at=record.ended_at, exit_code=record.exit_code,
            reason=EndReason(record.reason) if record.reason else None, log_uri=str(idir.log_path),
            node_rank=int(record.extra.get("node_rank", 0)),
        )
