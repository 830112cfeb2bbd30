"""Text rendering for the CLI: tables of jobs, attempts, estimates. No logic, no I/O beyond strings.

Imports stay light (no store, no SDK, no numpy: the types below are for the checker only), because
`orch --help` imports this module and must start fast.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.core.campaign import CampaignStatus
    from orchestrator.core.status import JobStatus
    from orchestrator.simulate import SimulationResult

GAP = "  "
# An elastic column (a job's name) is cut to this many characters before any last-resort column goes.
ELASTIC_FLOOR = 12
# Status columns dropped first, in this order, when the table is wider than the terminal.
_STATUS_OPTIONAL = ("TYPE", "PREEMPT", "AGE", "SLACK", "MARKET")
_ATTEMPT_OPTIONAL = ("ZONE", "TASK", "$/H", "LAUNCHED")
# Then, after NAME is shortened, whole columns rather than cut cells: money is never cut off.
_STATUS_LAST_RESORT = ("PROGRESS", "SAVED", "PROJECTED", "NAME", "STATE")
_ATTEMPT_LAST_RESORT = ("TYPE", "MARKET", "OUTCOME", "ENDED")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int | None = None,
          optional: Sequence[str] = (), elastic: Sequence[str] = (), last_resort: Sequence[str] = (),
          paint: Mapping[str, Callable[[str], str]] | None = None) -> str:
    """Columns padded to their widest cell. With `width`, the table is made to fit it: `optional`
    columns are dropped in order, then `elastic` columns are cut (ending in "…") down to
    `ELASTIC_FLOOR`, then the `last_resort` columns are dropped whole (and `elastic` ones cut
    further): a figure, money above all, is never cut in half (a clipped `$1,234.56` reads as
    `$1,23…` or, worse, `$1`). Only a terminal too narrow for the columns that are never dropped
    gets its lines clipped. `paint` colours a column's cells (after padding, so the escape codes do
    not count against the width)."""
    cols = list(range(len(headers)))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def total() -> int:
        return sum(widths[i] for i in cols) + len(GAP) * (len(cols) - 1)

    def drop(names: Sequence[str]) -> None:
        for name in names:
            if total() <= width_:
                return
            if name in headers and list(headers).index(name) in cols:
                cols.remove(list(headers).index(name))

    def shrink(floor: int) -> None:
        for name in elastic:
            if total() > width_ and name in headers:
                i = list(headers).index(name)
                widths[i] = max(len(name), min(floor, widths[i]), widths[i] - (total() - width_))

    width_ = width if width is not None else 0
    if width is not None:
        drop(optional)
        shrink(ELASTIC_FLOOR)  # a name stays readable while there are whole columns left to drop
        drop(last_resort)
        shrink(4)
    painters = paint or {}

    def cell(i: int, text: str, header: bool) -> str:
        padded = clip(text, widths[i]).ljust(widths[i])
        painter = None if header else painters.get(headers[i])
        return painter(padded) if painter else padded

    def line(cells: Sequence[str], header: bool = False) -> str:
        if width is not None and total() > width:  # not even the kept columns fit: clip, uncoloured
            return clip(GAP.join(clip(cells[i], widths[i]).ljust(widths[i]) for i in cols).rstrip(), width)
        return GAP.join(cell(i, cells[i], header) for i in cols).rstrip()

    return "\n".join([line(headers, True), *(line(r) for r in rows)])


def clip(text: str, width: int) -> str:
    """`text` cut to `width` characters, the cut marked with "…"."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def fit(lines: Sequence[str], width: int | None, indent: int = 13) -> str:
    """Lines of prose wrapped to `width` (continuations indented to the value column)."""
    if width is None:
        return "\n".join(lines)
    out: list[str] = []
    for text in lines:
        if len(text) <= width or "\n" in text:
            out.extend(clip(t, width) for t in text.split("\n"))
        else:
            out.extend(textwrap.wrap(text, width, subsequent_indent=" " * min(indent, width // 2),
                                     break_long_words=True, break_on_hyphens=False))
    return "\n".join(out)


def usd(value: float | None, known: bool = True, decimals: int = 2) -> str:
    """Dollars as every view shows them: `orchestrator.core.cost.usd_text`, the one rule (cents,
    never `-$0.00`, `n/a` for an unknown price)."""
    from orchestrator.core.cost import usd_text

    return usd_text(value, known=known, decimals=decimals)


def when(ts: float | None, utc: bool = False) -> str:
    """A moment in local time with its zone (`2026-12-06 09:12:03 CET`), or in UTC (`…Z`) with `--utc`."""
    if ts is None:
        return "-"
    if utc:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def age(ts: float | None, now: float) -> str:
    """How long ago, as kubectl's AGE: `45s`, `12m`, `5h`, `3d` (two units near the bottom: `2m5s`)."""
    if ts is None:
        return "-"
    s = max(0, int(now - ts))
    if s < 120:
        return f"{s}s" if s < 60 else f"{s // 60}m{s % 60}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h{(s % 3600) // 60}m" if s < 10 * 3600 else f"{s // 3600}h"
    return f"{s // 86400}d"


# --- colour: by state, on a terminal that has it --------------------------------------------------

_STATE_COLOURS = {"succeeded": "32", "running": "36", "pending": "33", "preempted": "35", "failed": "31",
                  "cancelled": "2", "budget_exceeded": "31;1"}


def use_colour() -> bool:
    """Colour only for a person at a terminal: stdout a TTY, NO_COLOR (no-color.org) unset, TERM not dumb."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def paint_state(text: str) -> str:
    """`text` (a state name, padded or not) in its state's colour."""
    code = _STATE_COLOURS.get(text.strip())
    return f"\x1b[{code}m{text}\x1b[0m" if code else text


def hours(h: float | None) -> str:
    if h is None:
        return "-"
    return f"{h:+.1f}h" if abs(h) < 100 else f"{h:+.0f}h"


def saved(s: JobStatus) -> str:
    """Savings as earned ("$12.00", succeeded jobs), projected ("~$12.00", unfinished) or none ("-")."""
    c = s.cost
    if c.saved_usd is not None:
        return usd(c.saved_usd, s.price_known)
    if c.projected_saved_usd is not None:
        return "~" + usd(c.projected_saved_usd, s.price_known) if s.price_known else "n/a"
    return "-"


def _saved_phrase(s: JobStatus) -> str:
    if s.cost.saved_usd is not None:
        return f"saved {saved(s)}"
    if s.cost.projected_saved_usd is not None:
        return f"saved {saved(s)} (projected, if it finishes as planned)"
    return f"saved - (the job {s.state.replace('_', ' ')}: nothing was saved)"


def status_rows(statuses: Sequence[JobStatus], width: int | None = None, *, created: Mapping[str, float] | None = None,
                now: float | None = None, wide: bool = False, colour: bool = False, utc: bool = False) -> str:
    """The job list. `created` (job id -> submitted at) adds AGE; `wide` (`-o wide`) keeps every column
    whatever the width and adds the deadline; `colour` paints STATE."""
    headers = ["JOB", "NAME", "STATE", "MARKET", "TYPE", "PROGRESS", "SLACK", "SPENT", "PROJECTED", "SAVED",
               "PREEMPT"]
    rows = [
        [s.job_id[:8], clip(s.name, 24), s.state, s.market or "-", s.instance_type or "-",
         f"{s.progress * 100:5.1f}%", hours(s.slack_hours), usd(s.cost.spent_usd, s.price_known),
         usd(s.cost.projected_usd, s.price_known), saved(s), str(s.cost.preemptions)]
        for s in statuses
    ]
    if created is not None:
        headers.append("AGE")
        for row, s in zip(rows, statuses, strict=True):
            row.append(age(created.get(s.job_id), now if now is not None else dt.datetime.now().timestamp()))
    if wide:
        headers.append("DEADLINE")
        for row, s in zip(rows, statuses, strict=True):
            row.append(when(s.deadline_at, utc))
    return table(headers, rows, width=None if wide else width, optional=_STATUS_OPTIONAL, elastic=("NAME",),
                 last_resort=_STATUS_LAST_RESORT, paint={"STATE": paint_state} if colour else None)


def status_detail(s: JobStatus, width: int | None = None, *, utc: bool = False, controller: str | None = None,
                  colour: bool = False) -> str:
    """One job: state, progress, money, then its attempts; fitted to `width` when given. `controller`:
    a line saying who runs the job (`controller_line`), shown while it is unfinished."""
    c = s.cost
    state = paint_state(s.state) if colour else s.state
    lines = [
        f"job {s.job_id}  {s.name}",
        f"  state      {state}   market {s.market or '-'}   type {s.instance_type or '-'}",
        f"  progress   {s.progress * 100:.1f}% committed, {s.progress_reported * 100:.1f}% reported",
        f"  deadline   {when(s.deadline_at, utc)}   slack {hours(s.slack_hours)}",
        f"  cost       spent {usd(c.spent_usd, s.price_known)} (spot {usd(c.spot_usd, s.price_known)}, "
        f"on-demand {usd(c.on_demand_usd, s.price_known)})",
        f"             projected {usd(c.projected_usd, s.price_known)}"
        + (f" of budget {usd(s.budget_usd)}" if s.budget_usd is not None else ""),
        f"             on-demand only {usd(c.on_demand_only_usd, s.price_known)}, {_saved_phrase(s)}",
        f"             lost to {c.preemptions} preemption(s) {usd(c.lost_usd, s.price_known)}",
    ]
    if controller is not None:
        lines.insert(2, f"  controller {controller}")
    ran = [a for a in s.attempts if not a.unbilled]
    if ran:
        rows = [(str(a.number), a.task_id[:8], str(a.market),
                 a.instance_type if a.nodes == 1 else f"{a.nodes} x {a.instance_type}", a.zone or a.region,
                 f"${a.price_per_hour:.4f}", when(a.launched_at, utc), when(a.ended_at, utc),
                 str(a.outcome or a.state)) for a in ran]
        lines.append("")
        lines.append(table(("#", "TASK", "MARKET", "TYPE", "ZONE", "$/H", "LAUNCHED", "ENDED", "OUTCOME"), rows,
                           width=width, optional=_ATTEMPT_OPTIONAL, elastic=("TYPE", "OUTCOME"),
                           last_resort=_ATTEMPT_LAST_RESORT))
    refused = len(s.attempts) - len(ran)
    if refused:
        lines.append(f"({refused} launch(es) refused by the provider, not billed: `orch events` has them)")
    return fit(lines, width)


def campaign_detail(c: CampaignStatus, width: int | None = None, *, utc: bool = False) -> str:
    """A campaign's items under its job's detail: done of total, rate and ETA, $ per item, quarantined."""
    n = c.counts
    rate = "-" if c.rate_per_hour is None else f"{c.rate_per_hour:,.1f}/h"
    eta = "done" if not n.left else when(c.eta_at, utc)
    if c.on_time is not None:
        eta += " (before the deadline)" if c.on_time else " (AFTER the deadline)"
    per_item = usd(c.spent_usd_per_item, decimals=4)
    projected = usd(c.projected_usd_per_item, decimals=4)
    lines = [
        f"  items      {n.done:,}/{n.total:,} done, {n.leased:,} in progress, {n.queued + n.failed:,} waiting "
        f"({n.failed:,} after a failure), {n.quarantined:,} quarantined",
        f"  rate       {rate}   eta {eta}",
        f"  per item   spent {per_item} ({n.done:,} done so far), projected {projected} (all "
        f"{n.total - n.quarantined:,}, with no more reclamations)",
    ]
    for q in c.quarantined:
        lines.append(f"  quarantined #{q.index}{f' {q.key}' if q.key else ''}: {q.failures} failure(s), "
                     f"{q.reason or 'no reason recorded'}")
    if n.quarantined > len(c.quarantined):
        lines.append(f"  … and {n.quarantined - len(c.quarantined):,} more quarantined (`orch status --json`)")
    return fit(lines, width)


def simulation(r: SimulationResult) -> str:
    finish = "-" if r.finish_hours is None else f"{r.finish_hours:.2f} h"
    deadline = "none" if r.deadline_hours is None else f"{r.deadline_hours:.2f} h"
    rows = [
        ("policy", r.policy), ("state", r.state),
        ("work / deadline / overhead", f"{r.task_hours:g} h / {deadline} / {r.restart_overhead_hours:g} h"),
        ("cost", f"{usd(r.cost_usd)}  ({r.normalized_cost:.3f} of on-demand only, {usd(r.on_demand_only_usd)})"),
        ("on-demand hours", f"{r.on_demand_hours:.2f}"), ("spot hours", f"{r.spot_hours:.2f}"),
        ("idle hours", f"{r.idle_hours:.2f}"), ("preemptions", str(r.preemptions)),
        ("finished after", finish), ("deadline met", "yes" if r.deadline_met else "NO"),
    ]
    return "\n".join(f"{k:<28}{v}" for k, v in rows)
