"""`[resources] nodes`, `min_nodes` and `mixed_markets`: parsed, bounded, stored, and refused where a gang
cannot run (an array job, a campaign, a provider that cannot hold the gang), naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.submit import prepare
from orchestrator.cli.wiring import open_store
from orchestrator.core.spec import GangSpec, check_gang_providers, spec_from_dict
from tests.test_spec import GOOD, edit, parse, refused

GANG = edit("gpu_count = 1\n", "gpu_count = 8\nnodes = 4\n")


def test_a_gang_is_parsed_with_its_defaults_and_stored_exactly() -> None:
    spec = parse(GANG)
    assert spec.gang == GangSpec(nodes=4, min_nodes=4, mixed_markets=False)
    assert spec.gang.is_gang and not spec.gang.elastic and spec.resources.gpu_count == 8
    elastic = parse(edit("nodes = 4\n", "nodes = 4\nmin_nodes = 2\nmixed_markets = true\n", GANG))
    assert elastic.gang == GangSpec(4, 2, True) and elastic.gang.elastic
    assert spec_from_dict(elastic.to_dict()) == elastic
    single = parse(GOOD)
    assert single.gang == GangSpec() and not single.gang.is_gang
    stored_before_gangs = {k: v for k, v in single.to_dict().items() if k != "gang"}
    assert spec_from_dict(stored_before_gangs) == single


@pytest.mark.parametrize(("line", "field", "problem"), [
    ("nodes = 0\n", "resources.nodes", "at least 1"),
    ("nodes = 129\n", "resources.nodes", "at most 128"),
    ("nodes = 4\nmin_nodes = 5\n", "resources.min_nodes", "must be at most nodes (4), got 5"),
    ("nodes = 4\nmin_nodes = 0\n", "resources.min_nodes", "at least 1"),
    ('nodes = "4"\n', "resources.nodes", "whole number"),
    ('nodes = 2\nmixed_markets = "yes"\n', "resources.mixed_markets", "true or false"),
])
def test_bad_gang_settings_name_the_field(line: str, field: str, problem: str) -> None:
    err = refused(edit("gpu_count = 1\n", f"gpu_count = 1\n{line}"))
    assert err.field == field and problem in err.problem, str(err)


def test_an_array_job_or_a_campaign_cannot_be_a_gang(tmp_path: Path) -> None:
    array = edit("gpu_count = 1\n", "gpu_count = 1\nnodes = 2\n") + "[array]\ncount = 10\nshard_size = 5\n"
    err = refused(array)
    assert err.field == "resources.nodes" and "cannot be an array job" in err.problem
    assert "launched, preempted and resumed alone" in err.problem
    items = tmp_path / "items.txt"
    items.write_text("a\nb\n")
    campaign = edit("gpu_count = 1\n", "gpu_count = 1\nnodes = 2\n") + f'[array]\nitems = "{items}"\n'
    err = refused(campaign)
    assert err.field == "resources.nodes" and "cannot be a campaign" in err.problem
    assert parse(edit("gpu_count = 1\n", "gpu_count = 1\nnodes = 1\n") + "[array]\ncount = 10\n").array


def test_every_listed_provider_must_hold_the_gang() -> None:
    spec = parse(edit('providers = ["local"]', 'providers = ["local", "aws"]', GANG))
    check_gang_providers(spec, {"local": 128, "aws": 128}, source="job.toml")
    with pytest.raises(Exception, match=r"job\.toml: resources\.nodes: 4 nodes, but provider 'aws' launches no gangs"):
        check_gang_providers(spec, {"local": 128, "aws": 1}, source="job.toml")
    with pytest.raises(Exception, match="provider 'local' launches gangs of at most 2 nodes all-or-nothing"):
        check_gang_providers(spec, {"local": 2, "aws": 128}, source="job.toml")
    check_gang_providers(parse(GOOD), {}, source="job.toml")  # one node: any provider


def test_submit_checks_a_local_gang_against_the_providers_abilities(tmp_path: Path, orch_home: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text('name = "g"\ncommand = ["true"]\n[resources]\ngpu = "V100"\nnodes = 3\n[schedule]\n'
                    'estimated_hours = 1\n[placement]\nproviders = ["local"]\n')
    spec, offers = prepare(str(path), 1_800_000_000.0)
    assert spec.gang == GangSpec(3, 3, False) and offers
    assert open_store().jobs() == []


def test_the_budget_must_pay_for_every_node(tmp_path: Path, orch_home: Path) -> None:
    path = tmp_path / "job.toml"
    text = ('name = "g"\ncommand = ["true"]\n[resources]\ngpu = "V100"\nnodes = 4\n[schedule]\n'
            'estimated_hours = 10\nbudget_usd = BUDGET\n[placement]\nproviders = ["local"]\n')
    path.write_text(text.replace("BUDGET", "1000"))
    _, offers = prepare(str(path), 1_800_000_000.0)
    low = min(o.price_per_hour for o in offers)
    path.write_text(text.replace("BUDGET", f"{low * 10.1 * 2:.2f}"))  # enough for two nodes, not four
    with pytest.raises(Exception, match=r"schedule\.budget_usd: .* below the cheapest possible run: .*\(4 nodes\)"):
        prepare(str(path), 1_800_000_000.0)


def test_a_gang_is_stored_for_the_controller_to_run_and_a_gpujob_with_nodes_converts(
        tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Now that the loop runs gangs (tests/test_gang_loop.py), `orch submit` stores one as it is, and a
    GpuJob's `nodes` reaches the same spec."""
    from orchestrator.cli.main import main
    from orchestrator.k8s.convert import job_spec_from_gpujob

    path = tmp_path / "job.toml"
    path.write_text('name = "g"\ncommand = ["true"]\n[resources]\ngpu = "V100"\nnodes = 3\n[schedule]\n'
                    'estimated_hours = 1\n[placement]\nproviders = ["local"]\n')
    assert main(["submit", str(path)]) == 0, capsys.readouterr().err
    (job,) = open_store().jobs()
    assert job.spec.gang.nodes == 3
    gpujob = {"metadata": {"name": "g", "namespace": "ml", "uid": "u"},
              "spec": {"command": ["true"], "resources": {"gpu": ["V100"], "nodes": 2},
                       "schedule": {"estimated_hours": 1}}}
    assert job_spec_from_gpujob(gpujob).gang.nodes == 2
