"""Text rendering for the CLI: tables of jobs, attempts, estimates. No logic, no I/O beyond strings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from orchestrator.simulate import SimulationResult
from orchestrator.status import JobStatus
from providers.base import Offer


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip()]
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
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


def status_rows(statuses: Sequence[JobStatus]) -> str:
    headers = ("JOB", "NAME", "STATE", "MARKET", "TYPE", "PROGRESS", "SLACK", "SPENT", "PROJECTED", "SAVED",
               "PREEMPT")
    rows = [
        (s.job_id[:8], s.name[:24], s.state, s.market or "-", s.instance_type or "-", f"{s.progress * 100:5.1f}%",
         hours(s.slack_hours), usd(s.cost.spent_usd, s.price_known), usd(s.cost.projected_usd, s.price_known),
         usd(s.cost.saved_usd, s.price_known), str(s.cost.preemptions))
        for s in statuses
    ]
    return table(headers, rows)


def status_detail(s: JobStatus) -> str:
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
        f"             on-demand only {usd(c.on_demand_only_usd, s.price_known)}, "
        f"saved {usd(c.saved_usd, s.price_known)}, lost to {c.preemptions} preemption(s) "
        f"{usd(c.lost_usd, s.price_known)}",
    ]
    ran = [a for a in s.attempts if not a.unbilled]
    if ran:
        rows = [(str(a.number), a.task_id[:8], str(a.market), a.instance_type, a.zone or a.region,
                 f"${a.price_per_hour:.4f}", when(a.launched_at), when(a.ended_at),
                 str(a.outcome or a.state)) for a in ran]
        lines.append("")
        lines.append(table(("#", "TASK", "MARKET", "TYPE", "ZONE", "$/H", "LAUNCHED", "ENDED", "OUTCOME"), rows))
    refused = len(s.attempts) - len(ran)
    if refused:
        lines.append(f"({refused} launch(es) refused by the provider, not billed: `orch events` has them)")
    return "\n".join(lines)


def estimate(offers: Sequence[Offer], work_hours: float, overhead_hours: float) -> str:
    """The same work on on-demand and on spot, at the cheapest matching offer of each."""
    rows = []
    total = work_hours + overhead_hours
    for market in ("on-demand", "spot"):
        best = min((o for o in offers if str(o.market) == market), key=lambda o: o.price_per_hour, default=None)
        if best is None:
            continue
        rows.append((market, best.instance_type, best.zone or best.region, f"${best.price_per_hour:.4f}",
                     f"{total:.2f}", usd(best.price_per_hour * total)))
    return table(("MARKET", "TYPE", "WHERE", "$/H", "HOURS", "COST"), rows)


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
