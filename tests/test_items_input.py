"""Items files (FASTA, text, JSONL) and the campaign form of `[array]`: every problem names the file,
the field or line, and what is wrong; a campaign is stored with its items, or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.cli.wiring import open_store
from orchestrator.core.spec import ArraySpec, JobSpec, SpecError, parse_spec, spec_from_dict
from orchestrator.job.items_format import ItemsError, format_for, parse_items
from orchestrator.job_files import load_items, load_items_of
from orchestrator.store.items import ItemStore

NOW = 1.8e9
JOB = """name = "c"
command = ["python3", "w.py"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 2
[array]
"""


def test_fasta_records_become_items_in_file_order() -> None:
    text = ">P1 first protein\nMKV\nlaa\n\n; a comment\n>P2\r\nGG*\n"
    items = parse_items(text, "fasta", source="s.fasta")
    assert [(i.index, i.key) for i in items] == [(0, "P1"), (1, "P2")]
    assert json.loads(items[0].payload) == {"id": "P1", "description": "first protein", "sequence": "MKVLAA"}
    assert json.loads(items[1].payload)["sequence"] == "GG*"


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("MKV\n>a\nMK\n", 1, "before the first '>' header"),
    (">a\nMK\n>\nMK\n", 3, "without a record id"),
    (">a\nMK\n>a\nGG\n", 3, "duplicate record id 'a' (first at line 1)"),
    (">a\nMK1V\n", 2, "'1' is not a residue letter (record 'a')"),
    (">a\n>b\nMK\n", 1, "record 'a' has no sequence"),
])
def test_a_malformed_fasta_names_the_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(ItemsError) as err:
        parse_items(text, "fasta", source="s.fasta")
    assert err.value.line == line and problem in str(err.value)
    assert str(err.value).startswith(f"s.fasta line {line}: ")


def test_text_lines_and_jsonl_objects() -> None:
    assert [json.loads(i.payload) for i in parse_items("a b\n\n  \nc\r\n", "text", source="t")] == ["a b", "c"]
    items = parse_items('{"id": "x", "v": 1}\n\n{"v": 2}\n', "jsonl", source="j")
    assert [(i.key, json.loads(i.payload)) for i in items] == [("x", {"id": "x", "v": 1}), (None, {"v": 2})]


@pytest.mark.parametrize(("text", "problem"), [
    ('{"a": 1}\n{"a": \n', "line 2: not valid JSON"),
    ('{"a": 1}\n[1, 2]\n', "line 2: must be a JSON object, not list"),
    ('{"a": NaN}\n', "line 1: not valid JSON: NaN is not allowed"),
])
def test_a_malformed_jsonl_names_the_line(text: str, problem: str) -> None:
    with pytest.raises(ItemsError, match=problem):
        parse_items(text, "jsonl", source="j")


def test_an_empty_file_and_an_unreadable_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ItemsError, match="holds no items"):
        parse_items("\n\n", "text", source="t")
    with pytest.raises(ItemsError, match="no such file"):
        load_items(str(tmp_path / "missing.txt"), "text")
    with pytest.raises(ItemsError, match="is a directory"):
        load_items(str(tmp_path), "text")


def test_the_format_comes_from_the_extension_or_is_named() -> None:
    assert [format_for(p) for p in ("a.fasta", "b.FA", "c.jsonl", "d.txt")] == ["fasta", "fasta", "jsonl", "text"]
    assert format_for("seqs.dat", "fasta") == "fasta"
    with pytest.raises(ValueError, match=r"set array\.format"):
        format_for("seqs.dat")


# --- the spec ----------------------------------------------------------------------------------


def spec_of(array: str) -> JobSpec:
    return parse_spec(JOB + array, source="job.toml", submitted_at=NOW)


def test_a_campaign_spec_and_its_round_trip() -> None:
    spec = spec_of('items = "seqs.fasta"\nworkers = 8\noutput = "file:///out/results.jsonl"\n')
    assert spec.array == ArraySpec(count=8, shard_size=1, items="seqs.fasta", output="file:///out/results.jsonl",
                                   workers=8)
    assert spec.array.is_campaign and spec.array.with_item_count(100).shards == 8
    assert spec.array.with_item_count(3).shards == 3  # never more worker slots than items
    assert spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_the_fixed_shard_form_still_works() -> None:
    spec = spec_of("count = 100\nshard_size = 25\n")
    assert spec.array == ArraySpec(100, 25) and not spec.array.is_campaign and spec.array.shards == 4


@pytest.mark.parametrize(("array", "field", "problem"), [
    ('items = "s.fasta"\ncount = 10\n', "array.count", "is for fixed shards"),
    ('items = "s.dat"\n', "array.items", "set array.format"),
    ('items = "s.dat"\nformat = "csv"\n', "array.format", "must be one of fasta, text, jsonl"),
    ('items = "s.txt"\nworkers = 0\n', "array.workers", "at least 1"),
    ('items = "s.txt"\nworkers = 1001\n', "array.workers", "at most 1000"),
    ('items = "s.txt"\noutput = "/tmp/out"\n', "array.output", "file://, s3:// or gs://"),
    ('items = ""\n', "array.items", "must be the path"),
    ("count = 10\nworkers = 2\n", "array.workers", "campaign only"),
])
def test_a_bad_campaign_spec_names_the_field(array: str, field: str, problem: str) -> None:
    with pytest.raises(SpecError) as err:
        spec_of(array)
    assert err.value.field == field and problem in err.value.problem


def test_load_items_of_resolves_the_path_from_the_job_file_and_counts(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": 1}\n{"id": 2}\n{"id": 3}\n')
    spec, items = load_items_of(spec_of('items = "in.jsonl"\nworkers = 2\n'), tmp_path / "job.toml")
    assert spec.array is not None and spec.array.items == str(tmp_path / "in.jsonl")
    assert (spec.array.count, spec.array.shards, len(items)) == (3, 2, 3)


# --- orch submit ---------------------------------------------------------------------------------


def test_submit_stores_the_campaign_with_its_items(tmp_path: Path, orch_home: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "seqs.fasta").write_text("".join(f">s{i}\nMKV\n" for i in range(30)))
    (tmp_path / "job.toml").write_text(JOB + 'items = "seqs.fasta"\nworkers = 4\n')
    assert main(["submit", str(tmp_path / "job.toml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["items"], out["workers"]) == (30, 4)
    store = open_store()
    assert len(store.tasks(out["job_id"])) == 4
    assert ItemStore(store.engine).counts(out["job_id"]).queued == 30


def test_a_malformed_items_file_names_it_and_stores_nothing(tmp_path: Path, orch_home: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "seqs.fasta").write_text(">a\nMKV\n>b\nMK7\n")
    job = tmp_path / "job.toml"
    job.write_text(JOB + 'items = "seqs.fasta"\n')
    assert main(["submit", str(job)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"orch: {job}: array.items: seqs.fasta line 4: '7' is not a residue letter (record 'b')"
    assert open_store().jobs() == []
