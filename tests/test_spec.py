"""job.toml validation: the good file parses exactly; every bad one is one SpecError naming file and field.

The submission time is fixed (2026-11-28T00:00:00Z) so that the example's absolute deadline, six days
and eighteen hours later, is deterministic: no test here reads the clock.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.policy import has_policy
from orchestrator.core.spec import (
    ArraySpec,
    CheckpointSpec,
    JobSpec,
    PlacementSpec,
    RetrySpec,
    ScheduleSpec,
    SpecError,
    parse_spec,
    spec_from_dict,
)
from orchestrator.job_files import load_spec
from vocab import Resources

SUBMITTED = dt.datetime(2026, 11, 28, tzinfo=dt.UTC).timestamp()
DEADLINE = dt.datetime(2026, 12, 4, 18, tzinfo=dt.UTC).timestamp()
SOURCE = "jobs/fold.toml"

GOOD = """\
name = "fold-batch"
command = ["python", "fold.py", "--in", "seqs.fasta"]
workdir = "."
env = { MODEL = "esmfold" }
[resources]
gpu = "V100"
gpu_count = 1
min_gpu_memory_gb = 16
min_architecture = "volta"
[schedule]
estimated_hours = 39
deadline = "2026-12-04T18:00:00Z"
budget_usd = 80
market = "auto"
policy = "uniform-progress"
[checkpoint]
uri = "file:///data/ckpt/fold-batch"
keep = 3
[retry]
max_failures = 3
recover_on_exit_codes = []
[placement]
providers = ["local"]
regions = []
"""


def parse(text: str) -> JobSpec:
    return parse_spec(text, source=SOURCE, submitted_at=SUBMITTED, policies=has_policy)


def edit(old: str, new: str, text: str = GOOD) -> str:
    """The good file with one line changed; fails loudly if the line is not there (a stale test)."""
    assert old in text, old
    return text.replace(old, new, 1)


def refused(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(text)
    err = info.value
    message = str(err)
    assert err.source == SOURCE
    assert message.startswith(f"{SOURCE}: {err.field}: " if err.field else f"{SOURCE}: ")
    assert "\n" not in message, "one message, one line"
    return err


# --- the good file -----------------------------------------------------------------------------


def test_the_example_parses_into_the_expected_model(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text(GOOD)
    spec = load_spec(path, submitted_at=SUBMITTED, policies=has_policy)
    assert spec == JobSpec(
        name="fold-batch",
        command=("python", "fold.py", "--in", "seqs.fasta"),
        workdir=".",
        env={"MODEL": "esmfold"},
        resources=Resources(gpus=("V100",), gpu_count=1, min_gpu_memory_gb=16.0, min_architecture="volta"),
        schedule=ScheduleSpec(estimated_hours=39.0, deadline=DEADLINE, budget_usd=80.0, market="auto",
                              policy="uniform-progress", restart_overhead_hours=0.1),
        checkpoint=CheckpointSpec(uri="file:///data/ckpt/fold-batch", keep=3, grace_seconds=120.0),
        retry=RetrySpec(max_failures=3, recover_on_exit_codes=()),
        placement=PlacementSpec(providers=("local",), regions=()),
        array=None,
    )
    assert spec.policy_name == "uniform-progress"


def test_defaults_of_a_minimal_file() -> None:
    spec = parse('name = "n"\ncommand = ["true"]\n[schedule]\nestimated_hours = 1\n')
    assert spec.resources == Resources()
    assert spec.schedule == ScheduleSpec(estimated_hours=1.0)
    assert spec.checkpoint == CheckpointSpec()
    assert spec.retry == RetrySpec()
    assert spec.placement == PlacementSpec()
    assert (spec.image, spec.workdir, dict(spec.env), spec.array) == (None, None, {}, None)
    assert spec.policy_name == "auto"


def test_deadline_forms_resolve_to_the_same_instant() -> None:
    toml_datetime = parse(edit('deadline = "2026-12-04T18:00:00Z"', "deadline = 2026-12-04T19:00:00+01:00"))
    relative = parse(edit('deadline = "2026-12-04T18:00:00Z"', "deadline_hours = 162"))
    assert toml_datetime.schedule.deadline == relative.schedule.deadline == DEADLINE


def test_image_alone_is_enough_and_markets_name_their_policy() -> None:
    spec = parse(edit('command = ["python", "fold.py", "--in", "seqs.fasta"]', 'image = "ghcr.io/x/fold:1"'))
    assert (spec.command, spec.image) == ((), "ghcr.io/x/fold:1")
    spot = parse(edit('policy = "uniform-progress"\n', "", edit('market = "auto"', 'market = "spot"')))
    assert spot.policy_name == "spot-only"


def test_array_job_shards_cover_every_item_once() -> None:
    spec = parse(GOOD + "[array]\ncount = 10\nshard_size = 4\n")
    assert spec.array == ArraySpec(count=10, shard_size=4)
    assert spec.array.shards == 3
    assert [spec.array.bounds(i) for i in range(3)] == [(0, 4), (4, 8), (8, 10)]


def test_array_deadline_is_checked_against_the_largest_shard() -> None:
    # 39 h of work in 4 shards of 25 items: each shard ~9.75 h, so a 12 h deadline is feasible ...
    text = edit('deadline = "2026-12-04T18:00:00Z"', "deadline_hours = 12") + "[array]\ncount = 100\nshard_size = 25\n"
    assert parse(text).schedule.deadline == SUBMITTED + 12 * 3600
    # ... but not one of 9 h, and the message says which part of the work does not fit.
    err = refused(text.replace("deadline_hours = 12", "deadline_hours = 9"))
    assert err.field == "schedule.deadline"
    assert "largest shard needs 9.75 h" in str(err)


def test_round_trip_through_json_is_exact() -> None:
    text = GOOD + '[placement.options.local]\nspot_interruptions_per_hour = 0.5\nlabels = ["a", "b"]\n'
    text += "[array]\ncount = 7\nshard_size = 2\n"
    spec = parse(text)
    again = spec_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.placement.options == {"local": {"spot_interruptions_per_hour": 0.5, "labels": ["a", "b"]}}


# --- each kind of bad file ---------------------------------------------------------------------

BAD: list[tuple[str, str, str, str, str]] = [
    # (case id, the good file's text replaced by ..., field, words the message must contain)
    ("toml-syntax", 'name = "fold-batch"\n', 'name = "fold-batch\n', "", "not valid TOML"),
    ("toml-int-too-long", "gpu_count = 1", "gpu_count = 1" + "0" * 5000, "", "number too long"),
    ("toml-too-deep", "regions = []", "regions = " + "[" * 50_000 + "]" * 50_000, "", "nested too deep"),
    ("unknown-top", 'command = ["python"', 'comand = ["python"', "comand", "did you mean 'command'"),
    ("unknown-table", "[resources]\n", "[resource]\n", "resource", "did you mean 'resources'"),
    ("unknown-nested", "gpu_count = 1", "gpu_cont = 1", "resources.gpu_cont", "did you mean 'gpu_count'"),
    ("unknown-required-typo", "estimated_hours = 39", "estimated_hour = 39", "schedule.estimated_hour",
     "did you mean 'estimated_hours'"),
    ("missing-required", "estimated_hours = 39\n", "", "schedule.estimated_hours", "is required"),
    ("missing-name", 'name = "fold-batch"\n', "", "name", "is required"),
    ("string-for-number", "gpu_count = 1", 'gpu_count = "1"', "resources.gpu_count", "whole number, not str"),
    ("float-for-integer", "gpu_count = 1", "gpu_count = 1.5", "resources.gpu_count", "whole number"),
    ("bool-for-number", "estimated_hours = 39", "estimated_hours = true", "schedule.estimated_hours",
     "not a boolean"),
    ("number-for-list", 'providers = ["local"]', "providers = 3", "placement.providers", "must be a list"),
    ("number-for-table", "env = { MODEL = \"esmfold\" }", "env = 3", "env", "must be a table"),
    ("env-value-type", 'MODEL = "esmfold"', "MODEL = 1", "env.MODEL", "must be a string"),
    ("list-item-type", '"--in", "seqs.fasta"]', '"--in", 3]', "command[3]", "non-empty string"),
    ("gpu-count-zero", "gpu_count = 1", "gpu_count = 0", "resources.gpu_count", "at least 1"),
    ("empty-gpu", 'gpu = "V100"', 'gpu = ""', "resources.gpu", "non-empty"),
    ("negative-hours", "estimated_hours = 39", "estimated_hours = -5", "schedule.estimated_hours",
     "greater than 0"),
    ("nan-hours", "estimated_hours = 39", "estimated_hours = nan", "schedule.estimated_hours", "finite"),
    ("huge-hours", "estimated_hours = 39", "estimated_hours = 1" + "0" * 400, "schedule.estimated_hours",
     "too large"),
    ("negative-budget", "budget_usd = 80", "budget_usd = -1", "schedule.budget_usd", "greater than 0"),
    ("deadline-before-work", '"2026-12-04T18:00:00Z"', '"2026-11-29T12:00:00Z"', "schedule.deadline",
     "cannot be met"),
    ("deadline-past", '"2026-12-04T18:00:00Z"', '"2026-11-27T00:00:00Z"', "schedule.deadline",
     "already in the past"),
    ("deadline-no-zone-string", '"2026-12-04T18:00:00Z"', '"2026-12-04T18:00:00"', "schedule.deadline",
     "needs a time zone"),
    ("deadline-no-zone-toml", 'deadline = "2026-12-04T18:00:00Z"', "deadline = 2026-12-04T18:00:00",
     "schedule.deadline", "needs a time zone"),
    ("deadline-date-only", 'deadline = "2026-12-04T18:00:00Z"', "deadline = 2026-12-04", "schedule.deadline",
     "date-time"),
    ("deadline-garbage", '"2026-12-04T18:00:00Z"', '"next friday"', "schedule.deadline", "not an ISO 8601"),
    ("deadline-and-hours", 'deadline = "2026-12-04T18:00:00Z"',
     'deadline = "2026-12-04T18:00:00Z"\ndeadline_hours = 100', "schedule.deadline_hours", "not both"),
    ("command-string", '["python", "fold.py", "--in", "seqs.fasta"]', '"python fold.py"', "command",
     "must be a list of arguments"),
    ("command-empty", '["python", "fold.py", "--in", "seqs.fasta"]', "[]", "command", "is required"),
    ("orch-env", 'MODEL = "esmfold"', 'ORCH_ATTEMPT = "7"', "env.ORCH_ATTEMPT", "cannot be overridden"),
    ("unknown-architecture", '"volta"', '"vulcan"', "resources.min_architecture", "unknown architecture"),
    ("unknown-market", 'market = "auto"', 'market = "cheap"', "schedule.market", "must be one of"),
    ("unknown-policy", '"uniform-progress"', '"yolo"', "schedule.policy", "no policy named 'yolo'"),
    ("policy-with-fixed-market", 'market = "auto"', 'market = "spot"', "schedule.policy",
     'market = "auto" only'),
    ("checkpoint-scheme", '"file:///data/ckpt/fold-batch"', '"http://x/ckpt"', "checkpoint.uri",
     "file://, s3:// or gs://"),
    ("checkpoint-keep", "keep = 3", "keep = 0", "checkpoint.keep", "at least 1"),
    ("exit-code-range", "recover_on_exit_codes = []", "recover_on_exit_codes = [1, 256]",
     "retry.recover_on_exit_codes[1]", "0-255"),
    ("exit-code-negative", "recover_on_exit_codes = []", "recover_on_exit_codes = [-1]",
     "retry.recover_on_exit_codes[0]", "0-255"),
    ("exit-code-type", "recover_on_exit_codes = []", 'recover_on_exit_codes = ["1"]',
     "retry.recover_on_exit_codes[0]", "0-255"),
    ("exit-code-bool", "recover_on_exit_codes = []", "recover_on_exit_codes = [true]",
     "retry.recover_on_exit_codes[0]", "0-255"),
    ("max-failures-negative", "max_failures = 3", "max_failures = -1", "retry.max_failures", "at least 0"),
    ("no-providers", 'providers = ["local"]', "providers = []", "placement.providers", "at least one"),
    ("options-not-table", 'regions = []', 'regions = []\noptions = { local = 3 }', "placement.options.local",
     "must be a table"),
    ("options-date", 'regions = []', 'regions = []\noptions = { local = { at = 2026-01-01 } }',
     "placement.options.local", "only strings"),
    ("array-count-zero", 'regions = []', 'regions = []\n[array]\ncount = 0', "array.count", "at least 1"),
    ("array-no-count", 'regions = []', 'regions = []\n[array]\nshard_size = 2', "array.count", "is required"),
    ("array-too-many-shards", 'regions = []', 'regions = []\n[array]\ncount = 1000000\nshard_size = 1',
     "array.shard_size", "at most 100000"),
    ("name-blank", 'name = "fold-batch"', 'name = "  "', "name", "1 to 128"),
]


@pytest.mark.parametrize(("old", "new", "field", "words"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_file_is_refused_with_one_clear_message(old: str, new: str, field: str, words: str) -> None:
    err = refused(edit(old, new))
    assert err.field == field
    assert words in str(err)


def test_long_values_are_cut_short_in_messages() -> None:
    err = refused(edit('market = "auto"', 'market = "' + "x" * 5000 + '"'))
    assert err.field == "schedule.market" and len(str(err)) < 200


def test_toml_error_names_the_line() -> None:
    err = refused(edit("gpu_count = 1", "gpu_count = = 1"))
    assert "line 7" in str(err)


def test_unreadable_files_are_spec_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(SpecError, match=r"nope\.toml: cannot read the file"):
        load_spec(missing, submitted_at=SUBMITTED)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"name = \"\xff\xfe\"\n")
    with pytest.raises(SpecError, match=r"bin\.toml: is not UTF-8 text"):
        load_spec(binary, submitted_at=SUBMITTED)


# --- property: random mutations raise SpecError or nothing -------------------------------------

MUTATION_BASE = GOOD + '[placement.options.local]\nrate = 0.5\n[array]\ncount = 8\nshard_size = 3\n'

GARBAGE: list[Any] = [
    "", "x", "ORCH_X", "s3://", 0, -1, 1, 1.5, -0.0, 10**30, 10**400, 1e308, float("inf"), float("nan"),
    True, False, [], [1, "a"], [[]], {}, {"a": 1}, {"gpu": {"x": 1}},
    dt.datetime(2026, 12, 1), dt.datetime(2026, 12, 1, tzinfo=dt.UTC), dt.date(2026, 12, 1), dt.time(12, 0),
]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _toml(doc: dict[str, Any]) -> str:
    """A tiny TOML writer (tomli_w is not a dependency): one line per top-level key, inline tables."""
    return "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in doc.items())


def _paths(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for k, v in doc.items():
        out.append((*prefix, k))
        if isinstance(v, dict):
            out.extend(_paths(v, (*prefix, k)))
    return out


def _mutate(rng: random.Random, doc: dict[str, Any]) -> str:
    path = rng.choice(_paths(doc))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    kind = rng.randrange(4)
    if kind == 0:
        del parent[path[-1]]
    elif kind == 1:
        parent[path[-1]] = rng.choice(GARBAGE)
    elif kind == 2:
        parent[rng.choice([path[-1] + "x", "junk", path[-1].upper()])] = rng.choice(GARBAGE)
    else:
        text = _toml(doc)
        at = rng.randrange(len(text))
        return text[:at] + rng.choice(['"', "=", "[", "]]", "\n", "{", "#", "\\u", "\x00", ""]) + text[at + 1:]
    return _toml(doc)


def test_random_mutations_raise_spec_error_or_nothing() -> None:
    import tomllib

    assert parse(_toml(tomllib.loads(MUTATION_BASE))) == parse(MUTATION_BASE)  # the writer is faithful
    rng = random.Random(20261128)
    outcomes: dict[str, int] = {"ok": 0, "refused": 0}
    for _ in range(400):
        doc = tomllib.loads(MUTATION_BASE)
        text = _mutate(rng, doc)
        if rng.random() < 0.3:
            text = _mutate(rng, tomllib.loads(text)) if _parses(text) else text
        try:
            spec = parse(text)
        except SpecError as err:
            assert str(err).startswith(SOURCE)
            outcomes["refused"] += 1
            continue
        outcomes["ok"] += 1
        assert spec_from_dict(json.loads(json.dumps(spec.to_dict(), allow_nan=False))) == spec, text
    assert outcomes["ok"] > 20 and outcomes["refused"] > 100, outcomes


def _parses(text: str) -> bool:
    import tomllib

    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def test_parse_never_leaks_other_exceptions_for_any_policy_registry() -> None:
    # A registry that refuses every name still only produces SpecError (the CLI passes has_policy).
    never: Callable[[str], bool] = lambda _name: False  # noqa: E731
    with pytest.raises(SpecError, match="no policy named"):
        parse_spec(GOOD, source=SOURCE, submitted_at=SUBMITTED, policies=never)


@pytest.mark.parametrize("name", ["AWS_SECRET_ACCESS_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "aws_session_token"])
def test_cloud_credentials_in_a_job_env_are_refused(name: str) -> None:
    text = (f'name = "x"\ncommand = ["true"]\nenv = {{ {name} = "secret" }}\n'
            '[resources]\n[schedule]\nestimated_hours = 1\n')
    with pytest.raises(SpecError) as err:
        parse_spec(text, source="job.toml", submitted_at=0.0)
    assert err.value.field == f"env.{name}" and "secret" not in str(err.value)
