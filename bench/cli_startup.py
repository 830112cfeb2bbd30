"""How long `orch` takes to start: `orch --help`, a bare `import orchestrator.cli.main`, and `python -c pass`.

Each command runs N times as its own process; the table gives the median, min and max wall time,
the median CPU time (steadier than wall time on a shared machine), and which heavy modules (store,
numpy, SDKs, simulator) the same work loads (checked in sys.modules). The bare interpreter is the
floor no import work can go below. A second table lists the slowest imports of `orch --help` by
cumulative time, from `python -X importtime`.

    python bench/cli_startup.py [--runs 20]

Target (issue 9): `orch --help` under 0.3 s on the development machine, with no heavy module loaded;
(issue 24): `orch --help` under 0.15 s CPU, `orch status` (an empty store) under 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ["sqlalchemy", "numpy", "boto3", "botocore", "kubernetes", "google.cloud", "alembic", "tenacity",
         "orchestrator.store", "orchestrator.simulate", "orchestrator.loop.reconciler", "orchestrator.core.policy",
         "pydantic", "prometheus_client"]

# Each probe prints the heavy modules it loaded, as JSON, on stderr (help text goes to /dev/null).
REPORT = "import json, sys; print(json.dumps(sorted(h for h in HEAVY if h in sys.modules)), file=sys.stderr)"
IMPORT_PROBE = f"HEAVY = {HEAVY!r}\nimport orchestrator.cli.main\n{REPORT}"
HELP_PROBE = (f"HEAVY = {HEAVY!r}\nimport sys\nfrom orchestrator.cli.main import main\n"
              "try:\n    main(['--help'])\n"
              f"except SystemExit:\n    pass\n{REPORT}")


def commands() -> dict[str, tuple[list[str], str | None]]:
    """name -> (argv timed, probe that reports the heavy modules the same work loads)."""
    orch = shutil.which("orch")
    help_argv = [orch, "--help"] if orch else [sys.executable, "-m", "orchestrator.cli", "--help"]
    return {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "python -c 'import orchestrator.cli.main'": (
            [sys.executable, "-c", "import orchestrator.cli.main"], IMPORT_PROBE),
        "orch --help": (help_argv, HELP_PROBE),
        # An empty store in a throw-away ORCH_HOME (set by main): the command's own start-up and first read.
        "orch status": ([*help_argv[:-1], "status"], None),
    }


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run. CPU time hardly moves when other work
    shares the machine; wall time is what a user waits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_loaded(probe: str | None) -> str:
    if probe is None:
        return "-"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, check=True)
    return ", ".join(json.loads(out.stderr.strip().splitlines()[-1])) or "none"


def timing_table(runs: int) -> list[str]:
    lines = ["| command | median s | min s | max s | median CPU s | heavy modules loaded |",
             "|---|---|---|---|---|---|"]
    for name, (argv, probe) in commands().items():
        timed(argv)  # warm the file cache and the bytecode
        samples = [timed(argv) for _ in range(runs)]
        wall = [w for w, _ in samples]
        cpu = statistics.median(c for _, c in samples)
        lines.append(f"| `{name}` | {statistics.median(wall):.3f} | {min(wall):.3f} | {max(wall):.3f} | {cpu:.3f} | "
                     f"{heavy_loaded(probe)} |")
    return lines


def slowest_imports(top: int = 10) -> list[str]:
    """The imports with the largest cumulative time under `orch --help` (one run of `-X importtime`)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", HELP_PROBE], cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    rows: list[tuple[int, str]] = []
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
            rows.append((int(cumulative), name))
    rows.sort(reverse=True)
    lines = ["| module | cumulative ms |", "|---|---|"]
    lines += [f"| `{name}` | {us / 1000:.1f} |" for us, name in rows[:top]]
    return lines


def machine() -> str:
    """The machine in one line: platform, CPU model and count, Python, and how busy it was."""
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.platform()}, {model or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, load average {load:.1f} at the start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each command (default 20)")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="orch-startup-")
    os.environ["ORCH_HOME"] = home
    os.environ.pop("ORCH_DATABASE_URL", None)
    print(f"machine: {machine()}\n")
    print("\n".join(timing_table(args.runs)))
    print()
    print("\n".join(slowest_imports()))


if __name__ == "__main__":
    main()
