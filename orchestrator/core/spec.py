"""`job.toml` -> a typed, validated `JobSpec`.

The file's shape is the typed models of `orchestrator.core.spec_model` (pydantic, strict): every
unknown key, wrong type or out-of-range value is a `SpecError` that names the file, the dotted field
and the problem, in one line. The rules that need two fields or the submission time (a deadline the
work cannot meet, a policy beside a fixed market, a campaign's keys) follow here. The records below
are what the rest of orch uses: frozen dataclasses, light to import, rebuilt from the stored JSON by
`spec_from_dict` without validating again, so `orch status` never loads pydantic.

Nothing here reads the clock or a file: the submission time is passed in so that a relative deadline
resolves the same way in the live loop, the simulator and the tests, and the job file and a campaign's
items file are read by `orchestrator.job_files`; everything here takes text or a decoded document.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from orchestrator.core.spec_limits import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_RESTART_OVERHEAD_HOURS,
    MARKETS,
    MAX_HOURS,
    MAX_RESTART_OVERHEAD_HOURS,
    MAX_SHARDS,
    MAX_SPEC_BYTES,
    SpecError,
    nul_path,
    show,
)
from orchestrator.job.items_format import format_for
from vocab import Resources

if TYPE_CHECKING:
    from orchestrator.core.spec_model import ArrayFile, ScheduleFile

# The bounds and the vocabulary live in spec_limits, shared with the models; named here as well.
__all__ = ["MARKETS", "MAX_HOURS", "MAX_RESTART_OVERHEAD_HOURS", "MAX_SPEC_BYTES", "ArraySpec", "CheckpointSpec",
           "GangSpec", "JobSpec", "PlacementSpec", "RetrySpec", "ScheduleSpec", "SpecError", "check_gang_providers",
           "parse_spec", "parse_spec_dict", "spec_from_dict"]


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    estimated_hours: float
    deadline: float | None = None  # Unix seconds, resolved at submission
    budget_usd: float | None = None
    market: str = "auto"
    policy: str | None = None  # None: the market's default policy
    restart_overhead_hours: float = DEFAULT_RESTART_OVERHEAD_HOURS


@dataclass(frozen=True, slots=True)
class CheckpointSpec:
    uri: str | None = None  # None: a folder under ORCH_HOME, chosen at submission
    keep: int = 3
    grace_seconds: float = DEFAULT_GRACE_SECONDS


@dataclass(frozen=True, slots=True)
class RetrySpec:
    max_failures: int = 3
    recover_on_exit_codes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PlacementSpec:
    providers: tuple[str, ...] = ("local",)
    regions: tuple[str, ...] = ()
    # Per-provider settings passed to that provider untouched, e.g. [placement.options.local].
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GangSpec:
    """`[resources] nodes`: a job that runs on `nodes` instances at once, all or nothing (docs/gangs.md).

    `min_nodes` < `nodes` makes it elastic: it may run on as few as `min_nodes`. `mixed_markets` lets one
    gang hold spot and on-demand nodes together; without it every node of a gang is on one market.
    """

    nodes: int = 1
    min_nodes: int = 1
    mixed_markets: bool = False

    @property
    def is_gang(self) -> bool:
        return self.nodes > 1

    @property
    def elastic(self) -> bool:
        return self.min_nodes < self.nodes


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """An array job: `count` items split into shards of `shard_size`, one task per shard.

    A campaign (`items` set) is different: its items live in the store and are leased by up to
    `workers` instances, whichever is free, instead of being pinned to shards. Its `count` is the
    items file's, set at submission (`with_item_count`); its tasks are the worker slots, each with a
    nominal, even share of the work for the projections (`shard_size = ceil(count / workers)`).
    """

    count: int
    shard_size: int
    items: str | None = None  # the items file, as given (resolved against the job file at submission)
    format: str | None = None  # fasta, text or jsonl; None: by the file's extension
    output: str | None = None  # where the results are written when the campaign ends (a URI)
    workers: int | None = None  # at most this many instances at once (campaigns only)

    @property
    def is_campaign(self) -> bool:
        return self.items is not None

    @property
    def shards(self) -> int:
        return -(-self.count // self.shard_size)

    def with_item_count(self, count: int) -> ArraySpec:
        """The campaign once its items file is read: `count` items over at most `workers` worker slots."""
        slots = max(1, min(self.workers or 1, count))
        return replace(self, count=count, shard_size=-(-count // slots))

    def bounds(self, shard: int) -> tuple[int, int]:
        start = shard * self.shard_size
        return start, min(self.count, start + self.shard_size)


@dataclass(frozen=True, slots=True)
class JobSpec:
    name: str
    command: tuple[str, ...]
    resources: Resources
    schedule: ScheduleSpec
    image: str | None = None
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    retry: RetrySpec = field(default_factory=RetrySpec)
    placement: PlacementSpec = field(default_factory=PlacementSpec)
    array: ArraySpec | None = None
    gang: GangSpec = field(default_factory=GangSpec)

    @property
    def policy_name(self) -> str:
        if self.schedule.market == "spot":
            return "spot-only"
        if self.schedule.market == "on-demand":
            return "on-demand"
        return self.schedule.policy or "auto"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form that `spec_from_dict` reads back exactly (stored with the job)."""
        out: dict[str, Any] = _plain(asdict(self))
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


# --- parsing -----------------------------------------------------------------------------------

def parse_spec(
    text: str, *, source: str, submitted_at: float, policies: Callable[[str], bool] | None = None
) -> JobSpec:
    """Parse and validate one job file. Raises `SpecError`; never anything else for any input."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, "", f"not valid TOML: {exc}") from None
    except (ValueError, RecursionError):  # what tomllib lets through: a 5000-digit integer, deep nesting
        raise SpecError(source, "", "not valid TOML: a number too long or values nested too deep") from None
    try:
        return parse_spec_dict(doc, source=source, submitted_at=submitted_at, policies=policies)
    except SpecError as exc:
        line = line_of(text, exc.field)
        if line is None:
            raise
        raise SpecError(source, exc.field, f"{exc.problem} (line {line})") from None


def parse_spec_dict(
    doc: Mapping[str, Any], *, source: str, submitted_at: float, policies: Callable[[str], bool] | None = None
) -> JobSpec:
    """Validate an already-decoded job document (a job.toml table, a GpuJob's `.spec`) the same way."""
    from orchestrator.core.spec_model import validate_job  # pydantic: only when a job is read

    if not isinstance(doc, Mapping):
        raise SpecError(source, "", "must be a table of job settings")
    nul = nul_path(doc)
    if nul is not None:
        raise SpecError(source, nul, "contains a NUL byte (\\0), which no argument, path or environment "
                        "variable can hold")
    job = validate_job(dict(doc), source)
    if not job.command and job.image is None:
        raise SpecError(source, "command", "is required (or give an image)")
    schedule = _schedule(source, job.schedule, submitted_at, policies)
    array = _array(source, job.array) if job.array is not None else None
    gang = _gang(source, job.resources.nodes, job.resources.min_nodes, job.resources.mixed_markets, array)
    _check_deadline(source, schedule, array, submitted_at)
    resources, checkpoint, retry, placement = job.resources, job.checkpoint, job.retry, job.placement
    return JobSpec(
        name=job.name, command=tuple(job.command), image=job.image, workdir=job.workdir, env=dict(job.env),
        resources=Resources(gpus=tuple(resources.gpu), gpu_count=resources.gpu_count,
                            min_gpu_memory_gb=resources.min_gpu_memory_gb,
                            min_architecture=resources.min_architecture),
        schedule=schedule,
        checkpoint=CheckpointSpec(checkpoint.uri, checkpoint.keep, checkpoint.grace_seconds),
        retry=RetrySpec(retry.max_failures, tuple(retry.recover_on_exit_codes)),
        placement=PlacementSpec(tuple(placement.providers), tuple(placement.regions), dict(placement.options)),
        array=array,
        gang=gang,
    )


def _gang(source: str, nodes: int, min_nodes: int | None, mixed: bool, array: ArraySpec | None) -> GangSpec:
    if min_nodes is not None and min_nodes > nodes:
        raise SpecError(source, "resources.min_nodes", f"must be at most nodes ({nodes}), got {min_nodes}")
    if nodes > 1 and array is not None:
        kind = "a campaign" if array.is_campaign else "an array job"
        raise SpecError(source, "resources.nodes",
                        f"a gang (nodes = {nodes}) cannot be {kind}: each task of [array] runs on its own "
                        "instance and is launched, preempted and resumed alone, while a gang's nodes run one task "
                        "together; submit the gang as its own job")
    return GangSpec(nodes, nodes if min_nodes is None else min_nodes, mixed)


def check_gang_providers(spec: JobSpec, max_gang_nodes: Mapping[str, int], *, source: str) -> None:
    """Refuse a gang that a listed provider cannot launch as one (its `Abilities.max_gang_nodes`).

    Every provider the job names must hold the whole gang: the loop may place the job on any of them.
    """
    if not spec.gang.is_gang:
        return
    for name in spec.placement.providers:
        limit = max_gang_nodes.get(name, 1)
        if limit < spec.gang.nodes:
            held = "launches no gangs" if limit <= 1 else f"launches gangs of at most {limit} nodes"
            raise SpecError(source, "resources.nodes",
                            f"{spec.gang.nodes} nodes, but provider {name!r} {held} all-or-nothing; "
                            "remove it from placement.providers or ask for fewer nodes")


_HEADER = re.compile(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=")


def line_of(text: str, field_path: str) -> int | None:
    """The line of the file where `field_path` is written, or where the nearest table above it is
    (a missing key: its table's header); None when it cannot be told (quoted or dotted keys, inline
    tables). TOML's decoder gives lines for syntax errors only; this points a user at the rest."""
    parts = re.sub(r"\[\d+\]", "", field_path).split(".")
    if not field_path or not all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts):
        return None
    table, found = "", None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = header.group(1)
            if table == ".".join(parts[:-1]) or (found is None and table == ".".join(parts)):
                found = number
            continue
        key = _KEY.match(line)
        if key and table == ".".join(parts[:-1]) and key.group(1) == parts[-1]:
            return number
        if key and found is None and len(parts) > 1 and table == ".".join(parts[:-2]) and key.group(1) == parts[-2]:
            found = number  # `env = { ... }`: the inline table's line
    return found


def _schedule(source: str, s: ScheduleFile, submitted_at: float, policies: Callable[[str], bool] | None
              ) -> ScheduleSpec:
    if s.policy is not None and policies is not None and not policies(s.policy):
        raise SpecError(source, "schedule.policy", f"no policy named {show(s.policy)}")
    if s.policy is not None and s.market != "auto":
        raise SpecError(source, "schedule.policy",
                        f"a policy applies to market = \"auto\" only (market is {show(s.market)})")
    return ScheduleSpec(s.estimated_hours, _deadline(source, s, submitted_at), s.budget_usd, s.market, s.policy,
                        s.restart_overhead_hours)


def _deadline(source: str, s: ScheduleFile, submitted_at: float) -> float | None:
    if s.deadline is not None and s.deadline_hours is not None:
        raise SpecError(source, "schedule.deadline_hours", "give either deadline or deadline_hours, not both")
    if s.deadline_hours is not None:
        if not math.isfinite(submitted_at + s.deadline_hours * 3600.0):
            raise SpecError(source, "schedule.deadline_hours", "is too large")
        return submitted_at + s.deadline_hours * 3600.0
    if s.deadline is None:
        return None
    if s.deadline.timestamp() > submitted_at + MAX_HOURS * 3600.0:
        raise SpecError(source, "schedule.deadline", f"is more than {MAX_HOURS:g} h (ten years) away")
    return s.deadline.timestamp()


def _check_deadline(source: str, schedule: ScheduleSpec, array: ArraySpec | None, submitted_at: float) -> None:
    """Refuse a deadline that on-demand capacity could not meet.

    The shards of an array job run side by side, each on its own instance, so what must fit is the
    largest shard's share of the work (by item count), not the whole job's hours.
    """
    deadline = schedule.deadline
    if deadline is None:
        return
    if deadline <= submitted_at:
        raise SpecError(source, "schedule.deadline", "is already in the past")
    hours, overhead = schedule.estimated_hours, schedule.restart_overhead_hours
    what = f"the work needs {hours:g} h"
    if array is not None and array.shards > 1:
        hours = hours * min(array.shard_size, array.count) / array.count
        what = f"its largest shard needs {hours:.2f} h"
    left_h = (deadline - submitted_at) / 3600.0
    if left_h < hours + overhead:
        raise SpecError(
            source, "schedule.deadline",
            f"leaves {left_h:.2f} h, but {what} plus {overhead:g} h to start even on on-demand capacity: "
            "the deadline cannot be met",
        )


def _array(source: str, a: ArrayFile) -> ArraySpec:
    given = a.model_fields_set
    if a.items is not None:
        return _campaign(source, a)
    for key in ("workers", "output", "format"):
        if key in given:
            raise SpecError(source, f"array.{key}",
                            "applies to a campaign only: give array.items (a FASTA, text or JSONL file)")
    if a.count is None:
        raise SpecError(source, "array.count", "is required")
    array = ArraySpec(a.count, a.shard_size if a.shard_size is not None else a.count)
    if array.shards > MAX_SHARDS:
        raise SpecError(source, "array.shard_size",
                        f"makes {array.shards} shards; at most {MAX_SHARDS} are allowed")
    return array


def _campaign(source: str, a: ArrayFile) -> ArraySpec:
    """`[array] items = "seqs.fasta"`: items leased by up to `workers` instances (docs/campaigns.md)."""
    assert a.items is not None
    for key in ("count", "shard_size"):
        if key in a.model_fields_set:
            raise SpecError(source, f"array.{key}", "is for fixed shards; a campaign has as many items as its "
                            "items file, leased by up to array.workers instances")
    try:
        format_for(a.items, a.format)
    except ValueError as exc:
        raise SpecError(source, "array.format" if a.format is not None else "array.items", str(exc)) from None
    workers = a.workers or 1
    # Until the items file is read, one nominal item per worker slot: the deadline check sees each
    # slot's share of the work, which is what the campaign's slots will each do.
    return ArraySpec(count=workers, shard_size=1, items=a.items, format=a.format, output=a.output, workers=workers)


def spec_from_dict(data: Mapping[str, Any]) -> JobSpec:
    """Rebuild a spec stored by `JobSpec.to_dict` (already validated at submission)."""
    arr = data.get("array")
    return JobSpec(
        name=data["name"],
        command=tuple(data["command"]),
        image=data.get("image"),
        workdir=data.get("workdir"),
        env=dict(data.get("env", {})),
        resources=Resources(**{**data["resources"], "gpus": tuple(data["resources"]["gpus"])}),
        schedule=ScheduleSpec(**data["schedule"]),
        checkpoint=CheckpointSpec(**data["checkpoint"]),
        retry=RetrySpec(data["retry"]["max_failures"], tuple(data["retry"]["recover_on_exit_codes"])),
        placement=PlacementSpec(tuple(data["placement"]["providers"]), tuple(data["placement"]["regions"]),
                                dict(data["placement"]["options"])),
        array=ArraySpec(**arr) if arr else None,
        gang=GangSpec(**data["gang"]) if data.get("gang") else GangSpec(),  # specs stored before gangs: none
    )
