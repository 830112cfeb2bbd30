"""`job.toml` -> a typed, validated `JobSpec`.

Validation is strict and total: an unknown key, a wrong type or an impossible value is a `SpecError`
that names the file, the dotted field and the problem. Nothing here reads the clock or the disk
except `load_spec`, which reads the one file it is given; the submission time is passed in so that a
relative deadline resolves the same way in the live loop, the simulator and the tests.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.core.items_input import ParsedItem, format_for, load_items
from orchestrator.core.spec_reader import SpecError, _Reader, _show, key_text, nul_path
from providers.base import ARCHITECTURES, Resources
from providers.bounded_read import FileRefused, display, read_bounded_text

__all__ = ["ArraySpec", "CheckpointSpec", "JobSpec", "PlacementSpec", "RetrySpec", "ScheduleSpec", "SpecError",
           "load_items_of", "load_spec", "parse_spec", "parse_spec_dict", "spec_from_dict"]

MARKETS = ("auto", "spot", "on-demand")
# Credential variables of the clouds' standard chains: refused in a job's env on every provider.
CREDENTIAL_VARIABLES = frozenset({
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_OAUTH_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE",
    "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", "AZURE_CLIENT_SECRET",
})
DEFAULT_GRACE_SECONDS = 120.0
DEFAULT_RESTART_OVERHEAD_HOURS = 0.1
# One task row per shard is written at submission, and item bounds are 32-bit columns.
MAX_SHARDS = 100_000
MAX_ITEMS = 2**31 - 1
MAX_WORKERS = 1000  # instances of one campaign at once
# Bounds of the numbers a job may give (docs/job-spec.md, "Limits"): wide enough for any real job,
# narrow enough that no value can overflow a computation, a column or the controller's patience.
MAX_SPEC_BYTES = 1024 * 1024
MAX_HOURS = 87_600.0  # ten years: work, deadlines
MIN_WORK_HOURS = 0.001  # 3.6 s: below the loop's resolution
MAX_RESTART_OVERHEAD_HOURS = 24.0
MAX_GPU_COUNT = 256
MAX_GPU_MEMORY_GB = 4096.0
MAX_BUDGET_USD = 1e9
MAX_KEEP = 1000
MAX_GRACE_SECONDS = 600.0  # beyond every cloud's notice (AWS 120 s, GCE 30 s); a local terminate waits this long
MAX_FAILURES = 1000
# What a pod accepts as an environment variable name, so one spec runs on every provider.
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


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

def _resources(r: _Reader) -> Resources:
    r.expect("gpu", "gpu_count", "min_gpu_memory_gb", "min_architecture")
    gpus = r.strings("gpu", allow_single=True)
    count = r.integer("gpu_count", 1, minimum=1, maximum=MAX_GPU_COUNT)
    mem = r.number("min_gpu_memory_gb", positive=True, maximum=MAX_GPU_MEMORY_GB, unit=" GB")
    arch = r.get("min_architecture", str)
    if arch is not None and arch.lower() not in ARCHITECTURES:
        raise r.fail("min_architecture", f"unknown architecture {_show(arch)}; use one of {', '.join(ARCHITECTURES)}")
    return Resources(gpus=gpus, gpu_count=count, min_gpu_memory_gb=mem,
                     min_architecture=arch.lower() if arch else None)


def _deadline(r: _Reader, submitted_at: float) -> float | None:
    absolute = r.get("deadline", (dt.datetime, str), None)
    relative = r.number("deadline_hours", positive=True, maximum=MAX_HOURS, unit=" h")
    if absolute is not None and relative is not None:
        raise r.fail("deadline_hours", "give either deadline or deadline_hours, not both")
    if relative is not None:
        if not math.isfinite(submitted_at + relative * 3600.0):
            raise r.fail("deadline_hours", "is too large")
        return submitted_at + relative * 3600.0
    if absolute is None:
        return None
    if isinstance(absolute, str):
        try:
            absolute = dt.datetime.fromisoformat(absolute.replace("Z", "+00:00"))
        except ValueError:
            raise r.fail("deadline", f"is not an ISO 8601 date-time: {_show(absolute)}") from None
    if not isinstance(absolute, dt.datetime):
        raise r.fail("deadline", "must be a date-time with a time zone, e.g. 2026-12-04T18:00:00Z")
    if absolute.tzinfo is None:
        raise r.fail("deadline", "needs a time zone (add Z for UTC), e.g. 2026-12-04T18:00:00Z")
    if absolute.timestamp() > submitted_at + MAX_HOURS * 3600.0:
        raise r.fail("deadline", f"is more than {MAX_HOURS:g} h (ten years) away")
    return absolute.timestamp()


def _schedule(r: _Reader, submitted_at: float, policies: Callable[[str], bool] | None) -> ScheduleSpec:
    r.expect("estimated_hours", "deadline", "deadline_hours", "budget_usd", "market", "policy",
             "restart_overhead_hours")
    hours = r.number("estimated_hours", required=True, positive=True, minimum=MIN_WORK_HOURS, maximum=MAX_HOURS,
                     unit=" h")
    assert hours is not None
    deadline = _deadline(r, submitted_at)
    budget = r.number("budget_usd", positive=True, maximum=MAX_BUDGET_USD)
    market = r.get("market", str, "auto")
    if market not in MARKETS:
        raise r.fail("market", f"must be one of {', '.join(MARKETS)}, got {_show(market)}")
    policy = r.get("policy", str)
    if policy is not None and policies is not None and not policies(policy):
        raise r.fail("policy", f"no policy named {_show(policy)}")
    if policy is not None and market != "auto":
        raise r.fail("policy", f"a policy applies to market = \"auto\" only (market is {_show(market)})")
    overhead = r.number("restart_overhead_hours", DEFAULT_RESTART_OVERHEAD_HOURS, minimum=0.0,
                        maximum=MAX_RESTART_OVERHEAD_HOURS, unit=" h")
    assert overhead is not None
    return ScheduleSpec(hours, deadline, budget, market, policy, overhead)


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


def _command(r: _Reader) -> tuple[tuple[str, ...], str | None]:
    if isinstance(r.table.get("command"), str):
        raise r.fail("command", "must be a list of arguments, e.g. [\"python\", \"fold.py\"]; "
                     "orch never runs commands through a shell")
    command = r.strings("command")
    image = r.get("image", str)
    if image is not None and (not image or not image.isprintable() or any(c.isspace() for c in image)):
        raise r.fail("image", f"must be an image reference such as \"ghcr.io/org/fold:1.2\", got {_show(image)}")
    if not command and image is None:
        raise r.fail("command", "is required (or give an image)")
    return command, image


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
    return parse_spec_dict(doc, source=source, submitted_at=submitted_at, policies=policies)


def parse_spec_dict(
    doc: Mapping[str, Any], *, source: str, submitted_at: float, policies: Callable[[str], bool] | None = None
) -> JobSpec:
    """Validate an already-decoded job document (a job.toml table, a GpuJob's `.spec`) the same way."""
    if not isinstance(doc, Mapping):
        raise SpecError(source, "", "must be a table of job settings")
    nul = nul_path(doc)
    if nul is not None:
        raise SpecError(source, nul, "contains a NUL byte (\\0), which no argument, path or environment "
                        "variable can hold")
    r = _Reader(source, doc)
    r.expect("name", "command", "image", "workdir", "env", "resources", "schedule", "checkpoint", "retry",
             "placement", "array")
    name = r.get("name", str, required=True)
    if not name.strip() or len(name) > 128 or not name.isprintable():
        raise r.fail("name", "must be 1 to 128 printable characters, on one line")
    command, image = _command(r)
    workdir = r.get("workdir", str)
    if workdir is not None and not workdir:
        raise r.fail("workdir", "must be a non-empty path (leave it out for the job file's folder)")
    env_table = _env(r)
    resources = _resources(r.table_of("resources"))
    schedule = _schedule(r.table_of("schedule"), submitted_at, policies)
    checkpoint = _checkpoint(r.table_of("checkpoint"))
    retry = _retry(r.table_of("retry"))
    placement = _placement(r.table_of("placement"))
    array = _array(r) if "array" in doc else None
    _check_deadline(source, schedule, array, submitted_at)
    return JobSpec(name=name, command=command, image=image, workdir=workdir, env=env_table,
                   resources=resources, schedule=schedule, checkpoint=checkpoint, retry=retry,
                   placement=placement, array=array)


def _env(root: _Reader) -> dict[str, str]:
    """The job's environment: names a process (and a pod) accepts, string values, nothing orch owns."""
    env_table: dict[str, Any] = root.get("env", dict, {})
    source = root.source
    for key, value in env_table.items():
        where = f"env.{key_text(key)}"
        if not ENV_NAME.fullmatch(key):
            problem = "contains '=', which would end the variable's name" if "=" in key else (
                "is not a valid environment variable name: use letters, digits, '_', '-' and '.', "
                "not starting with a digit")
            raise SpecError(source, where, problem)
        if not isinstance(value, str):
            raise SpecError(source, where, f"must be a string, not {type(value).__name__}")
        if key.startswith("ORCH_"):
            raise SpecError(source, where, "ORCH_* variables are set by orch and cannot be overridden")
        if key.upper() in CREDENTIAL_VARIABLES:
            raise SpecError(source, where, "cloud credentials are never put in a job's environment (they "
                            "would sit in user data, pod specs and logs); grant access through the instance "
                            "profile, service account or workload identity instead")
    return dict(env_table)


def _checkpoint(r: _Reader) -> CheckpointSpec:
    r.expect("uri", "keep", "grace_seconds")
    uri = r.get("uri", str)
    if uri is not None and not uri.startswith(("file://", "s3://", "gs://")):
        raise r.fail("uri", f"must start with file://, s3:// or gs://, got {_show(uri)}")
    keep = r.integer("keep", 3, minimum=1, maximum=MAX_KEEP)
    grace = r.number("grace_seconds", DEFAULT_GRACE_SECONDS, minimum=0.0, maximum=MAX_GRACE_SECONDS, unit=" s")
    assert grace is not None
    return CheckpointSpec(uri, keep, grace)


def _retry(r: _Reader) -> RetrySpec:
    r.expect("max_failures", "recover_on_exit_codes")
    max_failures = r.integer("max_failures", 3, minimum=0, maximum=MAX_FAILURES)
    codes = r.get("recover_on_exit_codes", list, [])
    for i, c in enumerate(codes):
        if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= 255:
            raise SpecError(r.source, f"retry.recover_on_exit_codes[{i}]",
                            f"must be an exit code 0-255, got {_show(c)}")
    return RetrySpec(max_failures, tuple(codes))


def _placement(r: _Reader) -> PlacementSpec:
    r.expect("providers", "regions", "options")
    providers = r.strings("providers", ("local",))
    if not providers:
        raise r.fail("providers", "must name at least one provider")
    regions = r.strings("regions")
    options = r.get("options", dict, {})
    for key, value in options.items():
        if not isinstance(value, dict):
            raise SpecError(r.source, f"placement.options.{key_text(key)}", "must be a table")
        try:  # the spec is stored as JSON: a TOML date here would only fail later, at submit
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise SpecError(r.source, f"placement.options.{key_text(key)}",
                            "may hold only strings, numbers, booleans, lists and tables") from None
    return PlacementSpec(providers, regions, options)


def _array(root: _Reader) -> ArraySpec:
    r = root.table_of("array")
    r.expect("count", "shard_size", "items", "format", "output", "workers")
    if "items" in r.table:
        return _campaign(r)
    for key in ("workers", "output", "format"):
        if key in r.table:
            raise r.fail(key, "applies to a campaign only: give array.items (a FASTA, text or JSONL file)")
    count = r.integer("count", 0, minimum=1) if "count" in r.table else None
    if count is None:
        raise r.fail("count", "is required")
    if count > MAX_ITEMS:
        raise r.fail("count", f"must be at most {MAX_ITEMS}, got {count}")
    shard_size = r.integer("shard_size", count, minimum=1, maximum=MAX_ITEMS)
    array = ArraySpec(count, shard_size)
    if array.shards > MAX_SHARDS:
        raise r.fail("shard_size", f"makes {array.shards} shards; at most {MAX_SHARDS} are allowed")
    return array


def _campaign(r: _Reader) -> ArraySpec:
    """`[array] items = "seqs.fasta"`: items leased by up to `workers` instances (docs/campaigns.md)."""
    items = r.get("items", str)
    if not items or not items.strip():
        raise r.fail("items", "must be the path of a FASTA, text or JSONL file")
    for key in ("count", "shard_size"):
        if key in r.table:
            raise r.fail(key, "is for fixed shards; a campaign has as many items as its items file, leased "
                              "by up to array.workers instances")
    fmt = r.get("format", str)
    try:
        format_for(items, fmt)
    except ValueError as exc:
        raise r.fail("format" if fmt is not None else "items", str(exc)) from None
    output = r.get("output", str)
    if output is not None and not output.startswith(("file://", "s3://", "gs://")):
        raise r.fail("output", f"must be a URI starting with file://, s3:// or gs://, got {_show(output)}")
    workers = r.integer("workers", 1, minimum=1, maximum=MAX_WORKERS)
    # Until the items file is read, one nominal item per worker slot: the deadline check below sees
    # each slot's share of the work, which is what the campaign's slots will each do.
    return ArraySpec(count=workers, shard_size=1, items=items, format=fmt, output=output, workers=workers)


def load_items_of(spec: JobSpec, job_file: str | Path) -> tuple[JobSpec, list[ParsedItem]]:
    """Read a campaign's items file (a relative path is from the job file's folder): the spec with
    the resolved path and the item count, and the items. Every problem is a `SpecError` on
    `array.items` whose message names the items file and line; nothing is stored before this passed."""
    array = spec.array
    if array is None or array.items is None:
        return spec, []
    path = Path(job_file).resolve().parent / array.items
    try:
        items = load_items(str(path), format_for(array.items, array.format), source=display(array.items))
    except ValueError as exc:  # ItemsError included
        raise SpecError(display(job_file), "array.items", str(exc)) from None
    return replace(spec, array=replace(array, items=str(path)).with_item_count(len(items))), items


def load_spec(path: str | Path, *, submitted_at: float, policies: Callable[[str], bool] | None = None) -> JobSpec:
    """Read and parse a job file; a missing, unreadable, special or oversized file is a `SpecError` too.

    A job file is a few hundred bytes: anything past `MAX_SPEC_BYTES` (1 MiB) is a mistake, such as
    `orch submit /dev/zero` or a data file named by accident, and is refused without reading it all.
    """
    source = display(path)
    try:
        text = read_bounded_text(path, MAX_SPEC_BYTES)
    except FileRefused as exc:
        raise SpecError(source, "", f"cannot read the file: {exc}" if exc.unreadable else str(exc)) from None
    return parse_spec(text, source=source, submitted_at=submitted_at, policies=policies)


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
    )
