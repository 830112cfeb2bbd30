"""What a test does when the public traces of `../shared/data/` are not where it looks.

On a developer's machine without them it is skipped, saying where it looked. In CI (`CI=true`) the
data is always beside the clone, so its absence is a broken checkout or a moved folder, and a test
that quietly skipped there would let the trace-based checks stop running without anyone noticing:
there it fails instead.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def data_missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI always has ../shared/data: a test that needs it fails there rather than skip)",
                    pytrace=False)
    pytest.skip(reason)
