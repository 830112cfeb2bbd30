"""The executor of a task's plan: each action of `core.plan` carried out, in order, against the providers
(through the bounded pool: `Reconciler.providers` are timed by `loop.executor`) and the store (through
the step's unit of work, `loop.step_store`).

Nothing here decides. Where an answer needs judging (a launch refused, an instance that started), the
judgement is the core's (`core.plan.launch`) and its actions are carried out here in turn. A plan stops
at the first action that could not be done when the rest depend on it: a stop the provider refused
(`StopInstance.must`), an attempt the store would not end (another controller, a cancel in between).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from orchestrator.core.campaign_plan import CampaignFacts
from orchestrator.core.model import AttemptView, IllegalTransition, TaskState, TaskView, spans_of
from orchestrator.core.plan.actions import (
    Action,
    AvoidOffers,
    EndAttempt,
    EndNodes,
    ForwardNotice,
    Launch,
    LaunchAgain,
    MarkStarted,
    MoveTask,
    Note,
    Plan,
    RecordInstance,
    RecordNodes,
    ReleaseGang,
    ReleaseItems,
    Replan,
    StopInstance,
)
from orchestrator.core.plan.launch import MAX_OFFERS_PER_TICK, gang_sizes, launched, refused, unanswered, where
from orchestrator.job.checkpoint.base import StorageError
from orchestrator.job.checkpoint.rendezvous import forward_gang_notice
from orchestrator.loop.executor import CallTimedOut
from orchestrator.loop.gangs import release_request
from orchestrator.loop.step_context import StepContext
from orchestrator.loop.step_store import StepStore
from orchestrator.store.views import JobView
from providers.base import launch_nodes
from vocab import CapacityError, LaunchRequest, Offer, ProviderError

log = logging.getLogger("orch.reconciler")


class Act:
    """Carries out one task's plans within one tick."""

    def __init__(self, r: StepContext, job: JobView, store: StepStore, campaign: CampaignFacts | None,
                 offers: Sequence[Offer], task: Callable[[], TaskView],
                 request: Callable[[AttemptView, Offer], LaunchRequest]) -> None:
        self.r, self.job, self.store, self.campaign, self.offers = r, job, store, campaign, offers
        self._task, self._request = task, request  # the task as the snapshot now holds it; a launch's request

    @property
    def now(self) -> float:
        return self.r.clock.now()

    def run(self, plan: Plan) -> bool:
        """Carry out `plan`; True when it asks to be planned again and was carried out whole."""
        for action in plan:
            if isinstance(action, Replan):
                return True
            if not self._do(action):
                return False
        return False

    def _do(self, action: Action) -> bool:
        """One action; False when the plan must stop here."""
        match action:
            case StopInstance(instance, must):
                try:
                    self.r.providers[instance.provider].terminate(instance)
                except ProviderError as exc:
                    log.warning("stopping instance %s failed: %s", instance.instance_id, exc)
                    return not must
            case EndAttempt():
                return self._end(action)
            case ReleaseItems(attempt, failure):
                if self.campaign is not None:
                    self.r.items.release_worker(attempt.id, now=self.now, failure=failure,
                                                max_failures=self.job.spec.retry.max_failures)
                    self.campaign.remove_worker(attempt.market, attempt.zone)
            case MoveTask(task_id, transition, message):
                self.store.transition(task_id, transition, self.now, message=message)
            case Note(kind, message, attempt_id):
                self.store.add_event(self.job.id, kind, message, self.now, task_id=self.store.task_id,
                                     attempt_id=attempt_id)
            case AvoidOffers(keys, until):
                self.r.capacity.refuse_all(keys, until)
            case MarkStarted(attempt, instance_id, started_at):
                self.store.attempt_running(attempt, instance_id, self.now, started_at=started_at)
            case RecordInstance(attempt, instance_id):
                self.store.attempt_instance(attempt, instance_id)
            case Launch(offers, reason):
                self._launch(offers, reason)
            case LaunchAgain(attempt, offer):
                self._start(attempt, offer)
            case RecordNodes(attempt, nodes, price):
                self.store.record_attempt_nodes(attempt.id, spans_of(nodes, price, self.now))
            case EndNodes(attempt, ends):
                for instance_id, at in ends:
                    self.store.end_attempt_node(attempt.id, instance_id, at)
            case ForwardNotice(attempt, notice):
                return self._forward(attempt, notice.at, notice.deadline)
            case ReleaseGang(attempt):
                request = release_request(self.job.id, attempt, self._task().checkpoint_uri)
                self.r.gang_releases.release(self.r.providers[attempt.provider], request)
        return True

    def _forward(self, attempt: AttemptView, at: float, deadline: float | None) -> bool:
        """A gang's notice to every rank, through its checkpoint storage; False: not written (next tick)."""
        try:
            forward_gang_notice(self.r.storage(self._task().checkpoint_uri), attempt.id, at=at, deadline=deadline)
        except (StorageError, OSError) as exc:
            log.warning("could not forward the notice of attempt %s to its gang: %s", attempt.id, exc)
            return False
        return True

    def _end(self, a: EndAttempt) -> bool:
        try:
            self.store.end_attempt(a.attempt, a.outcome, self.now, task_transitions=a.transitions, message=a.message,
                                   exit_code=a.exit_code, failures=a.failures, ended_at=a.ended_at,
                                   unbilled=a.unbilled)
        except IllegalTransition:
            # Ended meanwhile (another controller, a race with a cancel): the next tick sees how.
            log.warning("attempt %s changed before it could be ended; left to the next tick", a.attempt.id)
            return False
        if a.guessed:  # the cloud's end is not seen yet: watched, and billed to it once it is (`loop.ledger`)
            self.r.guessed_ends[a.attempt.id] = self.now
        return True

    def _launch(self, offers: tuple[Offer, ...], reason: str) -> None:
        """Begin an attempt on the first offer that starts; after each refusal, go on only while the task
        still waits (a permanent error has failed it). An elastic gang refused for capacity tries its
        smaller sizes on the same offer first (`gang_sizes`), each an attempt of its own."""
        for offer in offers[:MAX_OFFERS_PER_TICK]:
            for nodes in gang_sizes(self.job.spec):
                task = self._task()
                if task.state is not TaskState.PENDING:
                    return
                attempt = self.store.begin_attempt(task, offer, self.now, reason=reason, nodes=nodes)
                answer = self._start(attempt, offer)
                if answer is None:
                    if self.campaign is not None:
                        self.campaign.add_worker(offer.market, offer.zone)
                    return
                if not isinstance(answer, CapacityError):
                    break  # the next offer, if the task still waits

    def _start(self, attempt: AttemptView, offer: Offer) -> Exception | None:
        """Launch `attempt` on `offer`; the refusal, or None once it started (or may have)."""
        provider = self.r.providers[offer.provider]
        try:
            nodes = launch_nodes(provider, self._request(attempt, offer))
        except CallTimedOut as exc:
            log.warning("launch of attempt %s on %s: %s", attempt.id, where(offer), exc)
            self.run(unanswered(attempt, offer, exc))
            return None
        except Exception as exc:
            if not isinstance(exc, ProviderError):
                log.exception("launching attempt %s on %s failed unexpectedly", attempt.id, where(offer))
            self.run(refused(exc, attempt, offer, self.offers, self.now))
            return exc
        try:
            self.run(launched(attempt, nodes, provider.abilities.bills_from_start, offer.price_per_hour))
        except IllegalTransition:
            log.warning("attempt %s changed while launching; the reaper will settle it", attempt.id)
        return None

