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


def _named_anywhere() -> set[str]:
    names: set[str] = set()
    for c in _contracts():
        for key in ("layers", "modules", "source_modules"):
            entries = c.get(key) or []
            assert isinstance(entries, list)
            for entry in entries:
                names.update(n.strip() for n in str(entry).split("|"))
    return names


def test_every_loop_and_core_module_is_named_in_a_contract() -> None:
    """A module no contract names is unchecked: the loop's and the core's shapes are the contracts'."""
    named = _named_anywhere()
    missing = []
    for package in ("loop", "core"):
        root = REPO / "orchestrator" / package
        for path in root.glob("*.py"):
            if path.name == "__init__.py":
                continue
            name = f"orchestrator.{package}.{path.stem}"
            if name not in named:
                missing.append(name)
        for sub in (p for p in root.iterdir() if (p / "__init__.py").exists()):
            if f"orchestrator.{package}.{sub.name}" not in named:
                missing.append(f"orchestrator.{package}.{sub.name}")
    plan = REPO / "orchestrator" / "core" / "plan"
    missing += [f"orchestrator.core.plan.{p.stem}" for p in plan.glob("*.py")
                if p.name != "__init__.py" and f"orchestrator.core.plan.{p.stem}" not in named]
    assert missing == [], f"name these in a [[tool.importlinter.contracts]] of pyproject.toml: {sorted(missing)}"


def test_the_core_reads_no_files() -> None:
    """Job files and items files are read by `orchestrator.job_files` (the CLI, the controller); the core
    parses text, so it runs the same in the loop, the simulator and the tests."""
    import ast

    readers = {"open", "read_text", "read_bytes", "read_bounded_text", "load", "loads_file"}
    found = []
    for path in (REPO / "orchestrator" / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
                if name in readers - {"load"} or (name == "load" and isinstance(fn, ast.Attribute)
                                                   and isinstance(fn.value, ast.Name) and fn.value.id == "json"):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert found == [], found
