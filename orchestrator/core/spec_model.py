"""The job file as typed models: pydantic v2, strict, unknown keys refused.

These models are the one statement of what `job.toml` (and a GpuJob's `.spec`) may hold. Validation,
the JSON Schema of `orch schema job`, the field tables of docs/job-spec.md
(`orchestrator.core.spec_docs`) and the GpuJob CRD (`orchestrator.k8s.crd`) all come from them, so
none of them can drift from what is accepted.

Strict means what a job file says is taken as written: `gpu_count = "1"`, `gpu_count = 1.5` and
`estimated_hours = true` are refused, never coerced. A refusal is one line naming the field, what is
wrong and what is allowed (`explain`); rules that need two fields or the submission time are checked
after the shape, in `orchestrator.core.spec`.

pydantic is imported only here and by what imports this module: `orch --help` and `orch status`
never load it (`orchestrator.core.spec` imports it inside `parse_spec_dict`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from orchestrator.core.spec_limits import (
    CHECKPOINT_SCHEMES,
    CREDENTIAL_VARIABLES,
    DEFAULT_GRACE_SECONDS,
    DEFAULT_RESTART_OVERHEAD_HOURS,
    ENV_NAME,
    MAX_BUDGET_USD,
    MAX_FAILURES,
    MAX_GPU_COUNT,
    MAX_GPU_MEMORY_GB,
    MAX_GRACE_SECONDS,
    MAX_HOURS,
    MAX_ITEMS,
    MAX_KEEP,
    MAX_NAME,
    MAX_NODES,
    MAX_RESTART_OVERHEAD_HOURS,
    MAX_WORKERS,
    MIN_WORK_HOURS,
    SpecError,
    key_text,
    show,
)
from vocab import ARCHITECTURES

# --- one refusal, one line ------------------------------------------------------------------------

_WANTS = {"int_type": "a whole number", "float_type": "a number", "string_type": "a string", "list_type": "a list",
          "tuple_type": "a list", "dict_type": "a table", "model_type": "a table", "bool_type": "true or false",
          "datetime_type": "a date-time"}


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else show(value)


def explain(err: ErrorDetails, unit: str = "") -> str:
    """One pydantic error as orch says it: what is wrong and what is allowed, with the value given."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "orch":
        return str(ctx["problem"])
    if kind == "missing":
        return "is required"
    if kind in _WANTS:
        if isinstance(value, bool) and kind != "bool_type":
            # bool is an int in Python; a `true` where a number belongs is a mistake, not a 1.
            return f"must be {_WANTS[kind]}, not a boolean"
        if kind == "float_type" and isinstance(value, int):
            return "is too large"  # an integer of hundreds of digits: no float holds it
        return f"must be {_WANTS[kind]}, not {type(value).__name__} {show(value)}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind == "greater_than":
        return f"must be greater than {_number(ctx['gt'])}, got {_number(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {_number(ctx['ge'])}{unit}, got {_number(value)}"
    if kind == "less_than_equal":
        return f"must be at most {_number(ctx['le'])}{unit}, got {_number(value)}"
    if kind == "literal_error":
        choices = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")  # "'a', 'b' or 'c'" -> "a, b, c"
        return f"must be one of {choices}, got {show(value)}"
    if kind == "string_too_short":
        return "must be a non-empty string"
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} item(s)"
    return str(err["msg"])


def _fail(problem: str) -> PydanticCustomError:
    return PydanticCustomError("orch", "{problem}", {"problem": problem})


def _says(problem: str, *, types: bool = False) -> WrapValidator:
    """A refusal of this value is `problem` (`{got}` is the value given): for values whose rule is
    better said in words than as the constraint that enforces it. A value of the wrong type is said
    as such unless `types`."""

    def wrap(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            if not types and first["type"] in _WANTS and not first["loc"]:
                raise _fail(explain(first)) from None
            raise _fail(problem.replace("{got}", show(value))) from None

    return WrapValidator(wrap)


def _unit(unit: str) -> WrapValidator:
    """Bounds said with their unit: "must be at most 87600 h", not "less than or equal to 87600"."""

    def wrap(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            raise _fail(explain(exc.errors()[0], unit)) from None

    return WrapValidator(wrap)


def _rule(ok: Any, problem: str) -> AfterValidator:
    def check(value: Any) -> Any:
        if not ok(value):
            raise _fail(problem.replace("{got}", show(value)))
        return value

    return AfterValidator(check)


def refusal(source: str, exc: ValidationError, model: type[BaseModel]) -> SpecError:
    """The one error a user sees. Unknown keys first, with the closest known key: a misspelt
    required key is reported as the misspelling, not as the key it left missing."""
    errors = exc.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    err = min(unknown, key=lambda e: len(e["loc"])) if unknown else errors[0]
    loc = [part for part in err["loc"] if part != "[key]"]
    if unknown:
        known = _keys_at(model, loc[:-1])
        problem = "unknown key" + _suggest(str(loc[-1]), known)
    else:
        problem = explain(err)
    return SpecError(source, dotted(loc), problem)


def dotted(loc: list[int | str] | tuple[int | str, ...]) -> str:
    """`('retry', 'recover_on_exit_codes', 1)` -> `retry.recover_on_exit_codes[1]`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{key_text(part)}" if out else key_text(part))
    return out


def _keys_at(model: type[BaseModel], loc: list[int | str]) -> list[str]:
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        model = next(t for t in (annotation, *typing.get_args(annotation))
                     if isinstance(t, type) and issubclass(t, BaseModel))
    return list(model.model_fields)


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(sorted(known))})"


# --- value types ------------------------------------------------------------------------------------

NonEmpty = Annotated[str, Field(min_length=1), _says("must be a non-empty string, got {got}", types=True)]


def _argv(value: Any) -> Any:
    if isinstance(value, str):
        raise _fail('must be a list of arguments, e.g. ["python", "fold.py"]; orch never runs commands '
                    "through a shell")
    return value


def _one_or_many(value: Any) -> Any:
    if isinstance(value, str):
        if not value:
            raise _fail("must be a non-empty string")
        return [value]
    return value


def _deadline(value: Any) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _fail(f"is not an ISO 8601 date-time: {show(value)}") from None
    if not isinstance(value, dt.datetime):
        raise _fail("must be a date-time with a time zone, e.g. 2026-12-04T18:00:00Z")
    if value.tzinfo is None:
        raise _fail("needs a time zone (add Z for UTC), e.g. 2026-12-04T18:00:00Z")
    return value


def _env_name(key: str) -> str:
    if not ENV_NAME.fullmatch(key):
        raise _fail("contains '=', which would end the variable's name" if "=" in key else
                    "is not a valid environment variable name: use letters, digits, '_', '-' and '.', "
                    "not starting with a digit")
    if key.startswith("ORCH_"):
        raise _fail("ORCH_* variables are set by orch and cannot be overridden")
    if key.upper() in CREDENTIAL_VARIABLES:
        raise _fail("cloud credentials are never put in a job's environment (they would sit in user data, pod "
                    "specs and logs); grant access through the instance profile, service account or workload "
                    "identity instead")
    return key


def _json_only(value: dict[str, Any]) -> dict[str, Any]:
    try:  # the spec is stored as JSON: a TOML date here would only fail later, at submit
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise _fail("may hold only strings, numbers, booleans, lists and tables") from None
    return value


def _architecture(value: str) -> str:
    if value.lower() not in ARCHITECTURES:
        raise _fail(f"unknown architecture {show(value)}; use one of {', '.join(ARCHITECTURES)}")
    return value.lower()


def _has_scheme(value: str) -> bool:
    return value.startswith(CHECKPOINT_SCHEMES)


URI_PATTERN = "^(file|s3|gs)://"
_SCHEME = Field(json_schema_extra={"pattern": URI_PATTERN})
CheckpointUri = Annotated[str, _SCHEME, _rule(_has_scheme, "must start with file://, s3:// or gs://, got {got}")]
OutputUri = Annotated[str, _SCHEME,
                      _rule(_has_scheme, "must be a URI starting with file://, s3:// or gs://, got {got}")]
Image = Annotated[str, _rule(lambda v: bool(v) and v.isprintable() and not any(c.isspace() for c in v),
                             'must be an image reference such as "ghcr.io/org/fold:1.2", got {got}')]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME),
                 _says(f"must be 1 to {MAX_NAME} printable characters, on one line"),
                 _rule(lambda v: bool(v.strip()) and v.isprintable(),
                       f"must be 1 to {MAX_NAME} printable characters, on one line")]
ItemsPath = Annotated[str, Field(json_schema_extra={"minLength": 1}),
                      _rule(lambda v: bool(v.strip()), "must be the path of a FASTA, text or JSONL file")]
Workdir = Annotated[str, Field(min_length=1),
                    _says("must be a non-empty path (leave it out for the job file's folder)")]
EnvName = Annotated[str, AfterValidator(_env_name)]
ExitCode = Annotated[int, Field(ge=0, le=255), _says("must be an exit code 0-255, got {got}", types=True)]
Deadline = Annotated[dt.datetime, PlainValidator(_deadline),
                     WithJsonSchema({"type": "string", "format": "date-time"})]
GpuNames = Annotated[list[NonEmpty], BeforeValidator(_one_or_many),
                     WithJsonSchema({"anyOf": [{"type": "string", "minLength": 1},
                                               {"type": "array", "items": {"type": "string", "minLength": 1}}]})]
ProviderOptions = Annotated[dict[str, Any], AfterValidator(_json_only)]


def _none(shown: str) -> Any:
    """No default value, and what leaving the key out means, for the docs (`x-default`)."""
    return Field(default=None, json_schema_extra={"x-default": shown})


# --- the models -----------------------------------------------------------------------------------

class Table(BaseModel):
    """A TOML table: strict types, unknown keys refused, `nan` and `inf` never a number."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)


class ResourcesFile(Table):
    """`[resources]`: what one instance must have."""

    gpu: GpuNames = Field(default=[], json_schema_extra={"x-default": "any GPU"})
    """Acceptable GPU models (`"V100"`, `["A100", "H100"]`), case-insensitive."""
    gpu_count: Annotated[int, Field(ge=1, le=MAX_GPU_COUNT)] = 1
    """GPUs per instance (at least this many)."""
    min_gpu_memory_gb: Annotated[float, Field(gt=0, le=MAX_GPU_MEMORY_GB), _unit(" GB")] | None = None
    """Memory of each GPU, at least, in GB."""
    min_architecture: Annotated[str, AfterValidator(_architecture)] | None = Field(
        default=None, json_schema_extra={"x-one-of": list(ARCHITECTURES)})
    """Oldest acceptable architecture, case-insensitive; newer ones qualify (`"ampere"` for bf16)."""
    nodes: Annotated[int, Field(ge=1, le=MAX_NODES)] = 1
    """Instances that run the job together as one gang, each with the resources above: all launched at once
    or none, ranks `0 … nodes-1` (see [gangs.md](gangs.md)). Not with `[array]`."""
    min_nodes: Annotated[int, Field(ge=1, le=MAX_NODES)] | None = _none("`nodes`")
    """Fewest nodes the job can run on (an elastic job: torchrun's elastic rendezvous, DeepSpeed's elastic
    config); at most `nodes`."""
    mixed_markets: bool = False
    """Whether one gang may mix spot and on-demand nodes. `false`: every node of a gang is on the same market."""


class ScheduleFile(Table):
    """`[schedule]`: work, time and money."""

    estimated_hours: Annotated[float, Field(gt=0, le=MAX_HOURS, json_schema_extra={"minimum": MIN_WORK_HOURS}),
                               _unit(" h"),
                               _rule(lambda v: v >= MIN_WORK_HOURS, f"must be at least {MIN_WORK_HOURS:g} h, "
                                                                    "got {got}")]
    """The whole job's work in hours on the requested GPU, without restarts. For array jobs, see below."""
    deadline: Deadline | None = None
    """When the job must be done: a TOML offset date-time (`2026-12-04T18:00:00Z`) or the same as an ISO 8601
    string. A date-time without a zone is refused, not guessed; at most ten years after submission."""
    deadline_hours: Annotated[float, Field(gt=0, le=MAX_HOURS), _unit(" h")] | None = None
    """The deadline relative to submission. Give `deadline` or `deadline_hours`, not both."""
    budget_usd: Annotated[float, Field(gt=0, le=MAX_BUDGET_USD)] | None = None
    """Cap on the job's projected total cost. orch never launches an attempt whose projected cost would break
    it (see [cost.md](cost.md))."""
    market: Literal["auto", "spot", "on-demand"] = "auto"
    """`auto`: a deadline-aware policy chooses per task and tick. `spot`: spot only, waiting when none is
    available (policy `spot-only`). `on-demand`: on-demand only."""
    policy: str | None = _none("orch's default (`auto`)")
    """A registered policy name, only with `market = "auto"`. Registered now: `greedy`, `uniform-progress`,
    `spot-only`, `on-demand`; `orch submit` refuses any other name."""
    restart_overhead_hours: Annotated[float, Field(ge=0, le=MAX_RESTART_OVERHEAD_HOURS), _unit(" h")] = (
        DEFAULT_RESTART_OVERHEAD_HOURS)
    """Launch to first progress (boot, image pull, checkpoint restore): a guess used until orch has measured
    it on this job's attempts."""


class CheckpointFile(Table):
    """`[checkpoint]`: where the job's checkpoints live."""

    uri: CheckpointUri | None = _none("a folder under `$ORCH_HOME/checkpoints`")
    """Where the job's checkpoints and heartbeats live (`file://`, `s3://` or `gs://`). Each task gets its own
    folder under it: `<uri>/task-00000`, `<uri>/task-00001`, …"""
    keep: Annotated[int, Field(ge=1, le=MAX_KEEP)] = 3
    """Verified checkpoints to keep per task, older ones pruned (the checkpoint SDK's `keep`)."""
    grace_seconds: Annotated[float, Field(ge=0, le=MAX_GRACE_SECONDS), _unit(" s")] = DEFAULT_GRACE_SECONDS
    """Seconds between the signal to save (SIGTERM) and the kill, where the provider allows that much."""


class RetryFile(Table):
    """`[retry]`: what a task survives."""

    max_failures: Annotated[int, Field(ge=0, le=MAX_FAILURES)] = 3
    """Failures of the job's own process (non-zero exit) a task survives: the task fails at failure
    `max_failures + 1`. `0` fails on the first."""
    recover_on_exit_codes: list[ExitCode] = []
    """Exit codes (0-255) that mean "interrupted, resume me" (e.g. 75 after saving on SIGTERM): requeued like a
    preemption, not counted as failures."""


class PlacementFile(Table):
    """`[placement]`: where attempts may run."""

    providers: Annotated[list[NonEmpty], Field(min_length=1), _says("must name at least one provider")] = ["local"]
    """Where the job may run: `local`, `sim`, `aws`, `gcp`, `kubernetes` (those this orch build knows)."""
    regions: list[NonEmpty] = Field(default=[], json_schema_extra={"x-default": "`[]` (all)"})
    """Regions the offers may come from."""
    options: dict[str, ProviderOptions] = {}
    """`[placement.options.<provider>]`: settings passed to that provider untouched (documented by each
    provider). Values are strings, numbers, booleans, lists and tables; TOML dates are refused because the
    spec is stored as JSON."""


class ArrayFile(Table):
    """`[array]`: one job, many items: fixed shards (`count`), or a campaign (`items`)."""

    count: Annotated[int, Field(ge=1, le=MAX_ITEMS)] | None = _none("required")
    """Number of items (proteins, files, …)."""
    shard_size: Annotated[int, Field(ge=1, le=MAX_ITEMS)] | None = _none("`count`")
    """Items per task. The job has `ceil(count / shard_size)` tasks (at most 100,000)."""
    items: ItemsPath | None = _none("required")
    """The items file: FASTA, text (one item per line) or JSONL. A relative path is from the job file's folder.
    Read whole at submission."""
    format: Literal["fasta", "text", "jsonl"] | None = _none("by extension")
    """`.fasta .fa .faa .fas .fna`: fasta; `.txt .lines`: text; `.jsonl .ndjson`: jsonl. Another extension
    needs `format`."""
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] | None = _none("1")
    """Instances working at once, at most."""
    output: OutputUri | None = None
    """Where the results (JSON lines, in item order) are written when the campaign ends (`file://`, `s3://`
    or `gs://`); they are always in `orch results JOB`."""


class JobFile(Table):
    """A job file (`job.toml`), or a GpuJob's `.spec`: what to run, on what GPU, how long the work takes,
    by when it must be done, what it may cost, and where its checkpoints live."""

    name: Name
    """Shown by `orch status`, in events and in instance tags."""
    command: Annotated[list[NonEmpty], BeforeValidator(_argv)] = Field(
        default=[], json_schema_extra={"x-default": "required unless `image` is given"})
    """The job's argv. Never a single string: orch never runs commands through a shell."""
    image: Image | None = None
    """Container image reference, for providers that run containers (`kubernetes`); non-empty, no whitespace
    or control characters."""
    workdir: Workdir | None = _none("folder of the job file")
    """Working folder of the command; relative paths are resolved against the job file's folder at submission."""
    env: dict[EnvName, str] = {}
    """Extra environment of every attempt. Names are letters, digits, `_`, `-` and `.`, not starting with a
    digit (what a pod accepts; never `=` or empty). Names starting with `ORCH_` are reserved, and cloud
    credentials are refused."""
    resources: ResourcesFile = Field(default_factory=lambda: ResourcesFile())
    schedule: ScheduleFile
    checkpoint: CheckpointFile = Field(default_factory=lambda: CheckpointFile())
    retry: RetryFile = Field(default_factory=lambda: RetryFile())
    placement: PlacementFile = Field(default_factory=lambda: PlacementFile())
    array: ArrayFile | None = None


def validate_job(doc: dict[str, Any], source: str) -> JobFile:
    """The job document as a `JobFile`, or the one `SpecError` that says what is wrong first."""
    # Every key of [schedule] but one has a default: a file without the table is missing that key.
    doc = {"schedule": {}, **doc}
    try:
        return JobFile.model_validate(doc)
    except ValidationError as exc:
        raise refusal(source, exc, JobFile) from None


class _FileSchema(GenerateJsonSchema):
    """A JSON Schema of what a file may hold: TOML has no null, so an optional key is one that may be
    left out (not one that may be null), and a default of "none" is not written."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        out = super().default_schema(schema)
        if out.get("default", 0) is None:
            del out["default"]
        return out

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # "Gpu Count" beside `gpu_count` says nothing the key does not


def _one_line(value: Any) -> Any:
    """Descriptions come from docstrings wrapped at 120 columns: one line each, as a schema wants."""
    if isinstance(value, dict):
        return {k: " ".join(v.split()) if k == "description" and isinstance(v, str) else _one_line(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_one_line(v) for v in value]
    return value


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON Schema (draft 2020-12) in the file's terms (`_FileSchema`)."""
    schema: dict[str, Any] = _one_line(model.model_json_schema(schema_generator=_FileSchema))
    return schema


def job_schema() -> dict[str, Any]:
    """The JSON Schema of `job.toml`, as `orch schema job` prints it (editors use it for completion)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **model_schema(JobFile),
            "title": "orch job file (job.toml)"}
