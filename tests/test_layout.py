"""The package layout is the architecture: every module sits in a layer the import contracts name.

import-linter checks only the modules a contract names, so a new top-level module (or package) that
no contract mentions would be unchecked. This test closes that gap, and keeps each provider in its
own package rather than as flat `aws_*.py` files beside the others.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _package_layers() -> set[str]:
    """The names in the package-level layers contract (the first one)."""
    layers = _contracts()[0]["layers"]
    assert isinstance(layers, list)
    return {name.strip() for layer in layers for name in str(layer).split("|")}


def test_every_orchestrator_module_is_in_a_named_layer() -> None:
    named = _package_layers()
    root = REPO / "orchestrator"
    top = {p.stem if p.is_file() else p.name for p in root.iterdir()
           if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())}
    unnamed = sorted(f"orchestrator.{t}" for t in top if f"orchestrator.{t}" not in named)
    assert unnamed == [], f"add these to the first [[tool.importlinter.contracts]] in pyproject.toml: {unnamed}"


def test_each_cloud_provider_is_one_package() -> None:
    root = REPO / "providers"
    for name in ("aws", "gcp", "kubernetes", "local"):
        assert (root / name / "provider.py").is_file(), name
        assert not list(root.glob(f"{name}_*.py")), f"flat {name}_*.py modules belong in providers/{name}/"
    independent = next(c for c in _contracts() if c["type"] == "independence")
    assert set(independent["modules"]) >= {f"providers.{n}" for n in ("aws", "gcp", "kubernetes", "local", "sim")}


def test_research_code_is_apart_from_the_live_loop() -> None:
    assert not (REPO / "orchestrator" / "fastsim.py").exists()
    assert (REPO / "orchestrator" / "research" / "fastsim.py").is_file()
    layers = _contracts()[0]["layers"]
    assert "orchestrator.loop | orchestrator.research" in layers, "loop and research must be independent siblings"
