"""The policy's context for one task: what the core's `decide.choose` is given, gathered from the tick.

Built on demand by the plan (`core.plan.facts.TaskFacts.context`): it asks the multi-zone view for its
placement (which may ask a provider for its zone signals), so it is built only when a rule needs the
policy.
"""

from __future__ import annotations

from orchestrator.core.campaign_plan import CampaignFacts, offers_for_items, worker_work_hours
from orchestrator.core.decide import Context
from orchestrator.core.model import AttemptView, TaskView
from orchestrator.core.policy import Situation
from orchestrator.core.status import task_work_hours
from orchestrator.core.totals import JobTotals
from orchestrator.loop.snapshot import JobSnapshot
from orchestrator.loop.step_context import StepContext
from orchestrator.loop.zones import ZoneView
from vocab import Market, Offer


def all_offers(offers: list[Offer], campaign: CampaignFacts | None) -> list[Offer]:
    """The job's offers this tick; a campaign's, limited to GPUs that can hold its items."""
    return list(offers_for_items(offers, campaign)) if campaign is not None else offers


def policy_context(r: StepContext, snap: JobSnapshot, task: TaskView, live: AttemptView | None, *,
                   offers: list[Offer], totals: JobTotals, zones: ZoneView,
                   campaign: CampaignFacts | None) -> Context:
    job, spec, now = snap.job, snap.job.spec, r.clock.now()
    work_h = (task_work_hours(spec, task) if campaign is None else
              worker_work_hours(campaign, total_h=spec.schedule.estimated_hours, slots=len(snap.tasks)))
    overhead_h = totals.overhead_h()
    summary = r.offer_summary(offers)  # once per offer list and tick, not per task
    running_spot = live is not None and live.market is Market.SPOT
    overhead_left = 0.0
    if live is not None and live.productive_at is None:
        overhead_left = max(0.0, overhead_h - (now - live.launched_at) / 3600.0)
    situation = Situation(
        elapsed_h=(now - job.created_at) / 3600.0,
        deadline_h=None if job.deadline_at is None else (job.deadline_at - job.created_at) / 3600.0,
        work_h=work_h, done_h=task.progress_committed * work_h, overhead_h=overhead_h,
        price_ratio=summary.price_ratio,
        current=live.market if live is not None else None, spot_available=bool(summary.spot) or running_spot,
        tick_h=r.tick_seconds / 3600.0, overhead_left_h=overhead_left,
        history=r.history.get(job.id),
    )
    # What the job has spent and what its other tasks will still cost, by the same projection
    # `orch status` shows (`status.remaining_usd`), kept per task (`core.totals`): O(1) per step.
    placement, zone, region = zones.placement(situation, live, offers)
    return Context(spec=spec, situation=situation, live=live, offers=offers, avoid=r.capacity, now=now,
                   spent_usd=totals.spent, others_usd=totals.others_usd(task.id),
                   others_hourly_usd=totals.others_hourly(task.id),
                   placement=placement, placement_zone=zone, placement_region=region)
