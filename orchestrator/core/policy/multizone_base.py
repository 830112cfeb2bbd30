"""What a multi-zone market policy sees and what it answers.

The single-zone policies (`orchestrator.core.policy.base`) choose a market; placement then picks an
offer. Across zones and regions that split loses the main lever: spot is often gone in one zone and
plentiful in another at the same moment, and moving there has a price (a restart, a checkpoint copy
between regions, egress). So a multi-zone policy answers market *and* zone, from what the caller has
seen of every allowed zone: `MultiSituation -> Placement`, pure, called once per decision.

How availability elsewhere becomes known (the caller's job; the helpers here keep it O(1) a tick):

- a running spot instance shows its zone available, a reclamation shows it not;
- a failed spot launch shows its zone unavailable *now* (it costs nothing: AWS and GCE bill no failed
  launch), and the caller then asks the policy again in the same tick, so a policy fails over zone
  after zone until a launch succeeds ("capacity errors in one zone move the launch elsewhere");
- what other jobs of the same controller and launch results show (live loop), fed the same way;
- probes: a spot launch terminated at once, billed the provider's minimum (one minute); the policy
  asks for them in `Placement.probes` and their cost is charged to the task.

Costs are in spot-price hours of the job's instance type (spot = 1 per hour, on-demand = k), as in
`Situation`; egress is converted to the same unit by the caller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from orchestrator.core.policy.base import Choice, Situation, SpotHistory


@dataclass(frozen=True, slots=True)
class Zone:
    """One allowed placement: a zone and the region whose object store holds a checkpoint written there."""

    name: str
    region: str


@dataclass(frozen=True, slots=True)
class MoveCosts:
    """What moving the checkpoint costs, per (zone it is in, zone of the launch).

    `transfer_h` is restart time added to the overhead d (copy at the bandwidth between the two
    regions; zero within a region, where the object store is shared); `egress` is the copy's
    price in spot-price hours. The checkpoint follows the job: after a launch in zone z it is in z's
    region. The first launch of a task (no checkpoint yet) pays neither.
    """

    transfer_h: tuple[tuple[float, ...], ...]
    egress: tuple[tuple[float, ...], ...]

    def transfer(self, home: int | None, to: int) -> float:
        return 0.0 if home is None else self.transfer_h[home][to]

    def fee(self, home: int | None, to: int) -> float:
        return 0.0 if home is None else self.egress[home][to]


@dataclass(frozen=True, slots=True)
class Rates:
    """Checkpoint size and the network between regions, for `move_costs`.

    Defaults: SkyNomad's measurements and prices (arXiv 2601.06520; artifact `sky_spot/migration_model.py`):
    a 50 GB checkpoint, 8.2 Gbit/s between regions of one continent and 3.59 Gbit/s between
    continents, egress 0.02 $/GB within a continent and 0.08 $/GB across (GCP and AWS list prices
    for inter-region transfer, 2025). `spot_usd_per_h` converts dollars to the policy's unit.
    """

    checkpoint_gb: float = 50.0
    continent_gbps: float = 8.2
    intercontinental_gbps: float = 3.59
    continent_usd_per_gb: float = 0.02
    intercontinental_usd_per_gb: float = 0.08
    spot_usd_per_h: float = 0.9701
    # Transfers are rounded up to whole multiples of this: the simulator and the exact optimum then
    # work on one integer time grid (one minute), and the rounding only ever adds cost.
    round_s: float = 60.0


def region_of(zone: str) -> str:
    """The region of a zone name: GCP `us-central1-a` -> `us-central1`, AWS `us-east-1f` -> `us-east-1`."""
    gcp = re.match(r"^(.+\d)-[a-z]$", zone)
    if gcp:
        return gcp.group(1)
    aws = re.match(r"^(.+-\d+)[a-z]$", zone)
    return aws.group(1) if aws else zone


# USD per GB to copy a checkpoint from the first zone's region to the second's (the live loop reads the
# provider's list price from the catalog); None: no recorded price, the `Rates` figure applies.
EgressPrice = Callable[[Zone, Zone], float | None]


def move_costs(zones: Sequence[Zone], rates: Rates = Rates(), usd_per_gb: EgressPrice | None = None) -> MoveCosts:
    """Transfer time and egress between every pair of zones, from `rates` (continent = name prefix);
    the egress fee at `usd_per_gb`'s price per GB where it has one."""
    transfer: list[tuple[float, ...]] = []
    egress: list[tuple[float, ...]] = []
    for a in zones:
        t_row, e_row = [], []
        for b in zones:
            if a.region == b.region:
                t_row.append(0.0)
                e_row.append(0.0)
                continue
            same = a.region.split("-")[0] == b.region.split("-")[0]
            gbps = rates.continent_gbps if same else rates.intercontinental_gbps
            seconds = rates.checkpoint_gb * 8.0 / gbps
            seconds = math.ceil(seconds / rates.round_s - 1e-9) * rates.round_s
            t_row.append(seconds / 3600.0)
            listed = usd_per_gb(a, b) if usd_per_gb is not None else None
            if listed is None:
                listed = rates.continent_usd_per_gb if same else rates.intercontinental_usd_per_gb
            usd = rates.checkpoint_gb * listed
            e_row.append(usd / rates.spot_usd_per_h)
        transfer.append(tuple(t_row))
        egress.append(tuple(e_row))
    return MoveCosts(tuple(transfer), tuple(egress))


@dataclass(frozen=True, slots=True)
class ZoneSeen:
    """What the caller has seen of one zone, bounded and O(1) to update.

    `now` is this tick's observation (None: not looked at this tick). The rest summarises the ticks
    it was looked at: how many, how many available, and how long the zone has been seen available
    without a break (0 once seen unavailable, or once a tick goes by unobserved).
    """

    now: bool | None = None
    seen_h: float = 0.0
    up_h: float = 0.0
    up_run_h: float = 0.0
    last_seen_h: float | None = None
    last_up_h: float | None = None  # when last seen available
    lost_at_h: float | None = None  # when a spot instance of this task was last reclaimed here
    losses: int = 0  # how many spot instances of this task were reclaimed here

    def look(self, available: bool) -> ZoneSeen:
        """Record an observation made in the current tick (the first one of the tick counts)."""
        return self if self.now is not None else replace(self, now=available)

    def lost(self, at_h: float) -> ZoneSeen:
        """This task's spot instance was reclaimed here at `at_h` (which also shows the zone unavailable)."""
        return replace(self.look(False), lost_at_h=at_h, losses=self.losses + 1)

    def close_tick(self, elapsed_h: float, tick_h: float) -> ZoneSeen:
        """Fold this tick's observation into the summary and start the next tick unobserved."""
        if self.now is None:  # the run may have broken unseen
            return self if self.up_run_h == 0.0 else replace(self, up_run_h=0.0)
        return ZoneSeen(
            now=None, seen_h=self.seen_h + tick_h, up_h=self.up_h + (tick_h if self.now else 0.0),
            up_run_h=self.up_run_h + tick_h if self.now else 0.0, last_seen_h=elapsed_h,
            last_up_h=elapsed_h if self.now else self.last_up_h, lost_at_h=self.lost_at_h,
            losses=self.losses,
        )

    def fraction(self, prior: float, weight_h: float) -> float:
        """Share of observed time available, pulled toward `prior` by `weight_h` hours of pseudo-observation."""
        return (self.up_h + prior * weight_h) / (self.seen_h + weight_h)


@dataclass(frozen=True, slots=True)
class MultiSituation:
    """One task at one moment across its allowed zones.

    `task` is the single-zone view (its `spot_available` = some zone is not known to be unavailable
    this tick; its `history` = spot available *somewhere*, as seen). `zone` is the live attempt's zone
    (None when idle), `home` the zone whose region holds the checkpoint (None before the first
    launch). `probe_cost` is what one probe costs, in spot-price hours.
    """

    task: Situation
    zones: tuple[Zone, ...]
    seen: tuple[ZoneSeen, ...]
    zone: int | None
    home: int | None
    moves: MoveCosts
    probe_cost: float = 1.0 / 60.0

    def candidates(self) -> list[int]:
        """Zones where a spot launch may still succeed this tick (not seen unavailable)."""
        return [z for z, s in enumerate(self.seen) if s.now is not False]


@dataclass(frozen=True, slots=True)
class Placement:
    """A multi-zone decision: the market, the zone (for spot: where to launch or stay; on-demand
    runs where the checkpoint is), and zones to probe before deciding again (empty: none)."""

    choice: Choice
    zone: int | None = None
    probes: tuple[int, ...] = ()


MultiPolicy = Callable[[MultiSituation], Placement]


def any_history(previous: SpotHistory | None, seen: Sequence[ZoneSeen], hours: float) -> SpotHistory | None:
    """The "spot somewhere" history after a tick: available if any zone was seen available, not if all
    were seen unavailable; a tick on which neither is known repeats the last known state."""
    if previous is None:
        return None
    if any(s.now for s in seen):
        up = True
    elif all(s.now is False for s in seen):
        up = False
    else:
        up = previous.in_available_run if previous.observed_h > 0 else True
    return previous.observe(up, hours)
