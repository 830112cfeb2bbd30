"""`orch logs JOB [-f]`: the output of a job's attempts, oldest first; `-f` follows it like `tail -f`.

Following polls the store and the providers' logs (the control plane has no stream from instances):
each poll prints the whole new lines of every attempt, with a `==> attempt … <==` header whenever
the output switches to another attempt (as `tail -f` does for several files), and stops once the job
has ended and every attempt's last output has been printed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.cli.args import bounded_int
from orchestrator.cli.errors import CliError

if TYPE_CHECKING:
    from orchestrator.core.model import AttemptView
    from orchestrator.store import Store
    from orchestrator.store.views import JobView
    from providers.base import Provider

POLL_S = 0.5


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lg = sub.add_parser("logs", help="output of a job's attempts",
                        description="The output of every attempt of a job, oldest first (providers that keep "
                                    "logs: local).")
    lg.add_argument("job", metavar="JOB", help="a job id, or any unique prefix of one")
    lg.add_argument("-f", "--follow", action="store_true",
                    help="keep printing new output until the job ends (exit 0 if it succeeded, else 1) or Ctrl-C")
    lg.add_argument("--tail", type=bounded_int(0, 10**9), metavar="N",
                    help="start with the last N lines of each attempt shown (default: all of them)")
    lg.add_argument("--since", type=duration, metavar="DURATION",
                    help="only attempts running or ended in the last DURATION (`90s`, `10m`, `2h`, `1d`): lines "
                         "carry no time of their own, so whole attempts are chosen")
    lg.add_argument("--attempt", type=bounded_int(0, 10**9), metavar="K",
                    help="only attempt K (the `#` of `orch status JOB`; of every task, for an array job)")
    lg.set_defaults(func=cmd_logs)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(text: str) -> float:
    """An argparse type: `90s`, `10m`, `2h`, `1d` (or plain seconds) as seconds, finite and above 0."""
    t = text.strip().lower()
    unit = _UNITS.get(t[-1:])
    number = t[:-1] if unit is not None else t
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration such as 90s, 10m, 2h or 1d, got {text!r}")
    return seconds


def header(a: AttemptView) -> str:
    return f"==> attempt {a.number} ({a.market} {a.instance_type}, {a.outcome or a.state}) <=="


def read_log(providers: dict[str, Provider], a: AttemptView, job_id: str) -> str | None:
    """The attempt's output so far; None when its provider keeps no log (or it never got an instance)."""
    from providers.base import LogSource
    from vocab import Instance, InstanceState, Market

    provider = providers.get(a.provider)
    if a.instance_id is None or not isinstance(provider, LogSource):
        return None
    inst = Instance(a.provider, a.region, a.zone, a.instance_id, a.instance_type, Market(a.market),
                    InstanceState.TERMINATED, a.id, job_id, a.task_id)
    return provider.read_log(inst)


@dataclass
class Follower:
    """What has been printed of each attempt, so each poll prints only what is new."""

    job_id: str
    providers: dict[str, Provider]
    shown: dict[str, int] = field(default_factory=dict)  # characters printed, by attempt id
    closed: set[str] = field(default_factory=set)  # attempts printed to their end
    last: str | None = None  # the attempt whose output was printed last
    tail: int | None = None  # each attempt starts with its last `tail` lines (None: all)

    def poll(self, attempts: list[AttemptView], *, final: bool) -> None:
        """Print new output. Whole lines only while an attempt runs (a half-written line, or a
        half-written UTF-8 character, waits for the next poll); everything once it has ended."""
        for a in attempts:
            if a.id in self.closed:
                continue
            ended = final or not a.live
            if a.instance_id is None and not ended:
                continue  # not started yet: nothing to show
            text = read_log(self.providers, a, self.job_id)
            if text is None:
                self._print(a, "(no log kept by this provider)\n", first=True)
                self.closed.add(a.id)
                continue
            new = text[self.shown.get(a.id, 0):]
            if not ended:
                new = new[: new.rfind("\n") + 1]
            advanced = len(new)
            if a.id not in self.shown and self.tail is not None:
                new = last_lines(new, self.tail)
            self._print(a, new, first=a.id not in self.shown)
            self.shown[a.id] = self.shown.get(a.id, 0) + advanced
            if ended:
                self.closed.add(a.id)

    def _print(self, a: AttemptView, text: str, *, first: bool) -> None:
        if first or (text and self.last != a.id):
            print(header(a))
            self.last = a.id
        if text:
            sys.stdout.write(text)
        sys.stdout.flush()


def last_lines(text: str, n: int) -> str:
    """The last `n` lines of `text` (a last line without its newline counts as one)."""
    if n == 0:
        return ""
    lines = text.splitlines(keepends=True)
    return "".join(lines[-n:])


def chosen(attempts: list[AttemptView], *, number: int | None, since_s: float | None,
           now: float) -> list[AttemptView]:
    """The attempts `--attempt` and `--since` choose (both: those that pass both)."""
    return [a for a in attempts if (number is None or a.number == number)
            and (since_s is None or a.ended_at is None or a.ended_at >= now - since_s)]


def cmd_logs(args: argparse.Namespace) -> int:
    """Print the chosen attempts' output; with -f, keep printing until the job ends."""
    from orchestrator.cli.jobs import resolve
    from orchestrator.cli.wiring import build_providers, open_store

    store = open_store()
    job = resolve(store, args.job)
    follower = Follower(job.id, build_providers(job.spec.placement.providers), tail=args.tail)

    def attempts() -> list[AttemptView]:
        return chosen(store.attempts(job.id), number=args.attempt, since_s=args.since, now=time.time())

    numbers = sorted({a.number for a in store.attempts(job.id)})
    if args.attempt is not None and not args.follow and args.attempt not in numbers:
        raise CliError(f"job {job.id[:8]} has no attempt {args.attempt} "
                       f"(attempts: {', '.join(map(str, numbers)) or 'none yet'})")
    if not args.follow:
        follower.poll(attempts(), final=True)
        return 0
    return follow(store, job, follower, attempts)


def follow(store: Store, job: JobView, follower: Follower, attempts: Callable[[], list[AttemptView]]) -> int:
    """Poll until the job has ended; the ended state is read before the logs, so the last poll has
    everything the attempts wrote."""
    from orchestrator.core.model import job_state

    while True:
        tasks = store.tasks(job.id)
        ended = all(t.state.terminal for t in tasks) and not any(a.live for a in store.attempts(job.id))
        follower.poll(attempts(), final=ended)
        if ended:
            return 0 if job_state([t.state for t in tasks]) == "succeeded" else 1
        time.sleep(POLL_S)
