"""Text rendering for the CLI: tables of jobs, attempts, estimates. No logic, no I/O beyond strings.

Imports stay light (no store, no SDK, no numpy: the types below are for the checker only), because
`orch --help` imports this module and must start fast.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.core.campaign import CampaignStatus
    from orchestrator.core.status import JobStatus
    from orchestrator.simulate import SimulationResult

GAP = "  "
# Status columns dropped first, in this order, when the table is wider than the terminal.
_STATUS_OPTIONAL = ("TYPE", "PREEMPT", "SLACK", "MARKET")
_ATTEMPT_OPTIONAL = ("ZONE", "TASK", "$/H", "LAUNCHED")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int | None = None,
          optional: Sequence[str] = (), elastic: Sequence[str] = ()) -> str:
    """Columns padded to their widest cell. With `width`, the table is made to fit it: `optional`
    columns are dropped in order, then `elastic` columns are cut (ending in "…"), and as a last
    resort every line is clipped, so no line is ever longer than `width`."""
    cols = list(range(len(headers)))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def total() -> int:
        return sum(widths[i] for i in cols) + len(GAP) * (len(cols) - 1)

    if width is not None:
        for name in optional:
            if total() <= width:
                break
            if name in headers:
                cols.remove(list(headers).index(name))
        for name in elastic:
            if total() > width and name in headers:
                i = list(headers).index(name)
                widths[i] = max(len(name), 4, widths[i] - (total() - width))

    def line(cells: Sequence[str]) -> str:
        text = GAP.join(clip(cells[i], widths[i]).ljust(widths[i]) for i in cols).rstrip()
        return text if width is None else clip(text, width)

    return "\n".join([line(headers), *(line(r) for r in rows)])


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


def usd(value: float | None, known: bool = True) -> str:
    if value is None or not known:
        return "n/a"
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


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


def status_rows(statuses: Sequence[JobStatus], width: int | None = None) -> str:
    headers = ("JOB", "NAME", "STATE", "MARKET", "TYPE", "PROGRESS", "SLACK", "SPENT", "PROJECTED", "SAVED",
               "PREEMPT")
    rows = [
        (s.job_id[:8], clip(s.name, 24), s.state, s.market or "-", s.instance_type or "-",
         f"{s.progress * 100:5.1f}%", hours(s.slack_hours), usd(s.cost.spent_usd, s.price_known),
         usd(s.cost.projected_usd, s.price_known), saved(s), str(s.cost.preemptions))
        for s in statuses
    ]
    return table(headers, rows, width=width, optional=_STATUS_OPTIONAL, elastic=("NAME",))


def status_detail(s: JobStatus, width: int | None = None) -> str:
    """One job: state, progress, money, then its attempts; fitted to `width` when given."""
    c = s.cost
    lines = [
        f"job {s.job_id}  {s.name}",
        f"  state      {s.state}   market {s.market or '-'}   type {s.instance_type or '-'}",
        f"  progress   {s.progress * 100:.1f}% committed, {s.progress_reported * 100:.1f}% reported",
        f"  deadline   {when(s.deadline_at)}   slack {hours(s.slack_hours)}",
        f"  cost       spent {usd(c.spent_usd, s.price_known)} (spot {usd(c.spot_usd, s.price_known)}, "
        f"on-demand {usd(c.on_demand_usd, s.price_known)})",
        f"             projected {usd(c.projected_usd, s.price_known)}"
        + (f" of budget {usd(s.budget_usd)}" if s.budget_usd is not None else ""),
        f"             on-demand only {usd(c.on_demand_only_usd, s.price_known)}, {_saved_phrase(s)}",
        f"             lost to {c.preemptions} preemption(s) {usd(c.lost_usd, s.price_known)}",
    ]
    ran = [a for a in s.attempts if not a.unbilled]
    if ran:
        rows = [(str(a.number), a.task_id[:8], str(a.market), a.instance_type, a.zone or a.region,
                 f"${a.price_per_hour:.4f}", when(a.launched_at), when(a.ended_at),
                 str(a.outcome or a.state)) for a in ran]
        lines.append("")
        lines.append(table(("#", "TASK", "MARKET", "TYPE", "ZONE", "$/H", "LAUNCHED", "ENDED", "OUTCOME"), rows,
                           width=width, optional=_ATTEMPT_OPTIONAL, elastic=("TYPE", "OUTCOME")))
    refused = len(s.attempts) - len(ran)
    if refused:
        lines.append(f"({refused} launch(es) refused by the provider, not billed: `orch events` has them)")
    return fit(lines, width)


def campaign_detail(c: CampaignStatus, width: int | None = None) -> str:
    """A campaign's items under its job's detail: done of total, rate and ETA, $ per item, quarantined."""
    n = c.counts
    rate = "-" if c.rate_per_hour is None else f"{c.rate_per_hour:,.1f}/h"
    eta = "done" if not n.left else when(c.eta_at)
    if c.on_time is not None:
        eta += " (before the deadline)" if c.on_time else " (AFTER the deadline)"
    per_item = "-" if c.spent_usd_per_item is None else f"${c.spent_usd_per_item:.4f}"
    projected = "-" if c.projected_usd_per_item is None else f"${c.projected_usd_per_item:.4f}"
    lines = [
        f"  items      {n.done:,}/{n.total:,} done, {n.leased:,} in progress, {n.queued + n.failed:,} waiting "
        f"({n.failed:,} after a failure), {n.quarantined:,} quarantined",
        f"  rate       {rate}   eta {eta}",
        f"  per item   spent {per_item}, projected {projected}",
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
