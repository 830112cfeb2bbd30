"""Run a module as `python -m` would, with some top-level packages missing (as if never installed).

    python tests/import_blocker.py boto3,google -m orchestrator.cli submit job.toml

Used by tests that prove an install without an extra still works, or fails in one clear line.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import runpy
import sys
from collections.abc import Sequence


class Missing(importlib.abc.MetaPathFinder):
    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if __name__ == "__main__":
    blocked, flag, module, *rest = sys.argv[1:]
    assert flag == "-m", "usage: import_blocker.py NAMES -m MODULE [ARGS...]"
    sys.meta_path.insert(0, Missing(blocked.split(",")))
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
