"""Regenerate what docs/ derives from the job file's models: the field tables of docs/job-spec.md
(`orchestrator.core.spec_docs`) and docs/job.schema.json (`orch schema job`).

    python tools/spec_docs.py            # rewrite both
    python tools/spec_docs.py --check    # exit 1, naming the file, when either differs

tests/test_spec_docs.py runs the same comparison.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.cli.schema import render  # noqa: E402
from orchestrator.core.spec_docs import rewrite  # noqa: E402

PAGE = REPO / "docs" / "job-spec.md"
SCHEMA = REPO / "docs" / "job.schema.json"


def expected() -> dict[Path, str]:
    return {PAGE: rewrite(PAGE.read_text()), SCHEMA: render("job")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when a file is stale")
    args = parser.parse_args()
    stale = [path for path, text in expected().items() if not path.exists() or path.read_text() != text]
    for path in stale:
        if args.check:
            print(f"{path.relative_to(REPO)} is stale: run python tools/spec_docs.py", file=sys.stderr)
        else:
            path.write_text(expected()[path])
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
