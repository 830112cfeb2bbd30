"""A refusal of a job file names the line the field is on, where the file says where that is."""

from __future__ import annotations

import pytest

from orchestrator.core.spec import SpecError, line_of, parse_spec

JOB = """\
name = "lines"
command = ["true"]
env = { MODEL = "esmfold" }
[resources]
gpu_count = 1
[schedule]
estimated_hours = 2
[retry]
recover_on_exit_codes = [1]
"""


@pytest.mark.parametrize(("old", "new", "field", "line"), [
    ("gpu_count = 1", "gpu_count = 300", "resources.gpu_count", 5),
    ("gpu_count = 1", "gpu_cont = 1", "resources.gpu_cont", 5),
    ("estimated_hours = 2\n", "", "schedule.estimated_hours", 6),  # missing: its table's header
    ("recover_on_exit_codes = [1]", "recover_on_exit_codes = [1, 300]", "retry.recover_on_exit_codes[1]", 9),
    ('MODEL = "esmfold"', 'ORCH_X = "1"', "env.ORCH_X", 3),  # an inline table: its line
])
def test_the_line_is_named(old: str, new: str, field: str, line: int) -> None:
    assert old in JOB
    with pytest.raises(SpecError) as err:
        parse_spec(JOB.replace(old, new), source="job.toml", submitted_at=0.0)
    assert err.value.field == field and str(err.value).endswith(f"(line {line})"), str(err.value)


def test_no_line_is_guessed_for_keys_it_cannot_place() -> None:
    assert line_of('"quoted" = 1\n', "quoted") is None
    assert line_of("a.b = 1\n", "a.b") is None
    assert line_of(JOB, "") is None
    assert line_of(JOB, "env.'odd key'") is None
