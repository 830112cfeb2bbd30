"""What one tick saw of the providers: the instances (matched to their attempts), notices and orphans.

Made by `Reconciler` at the start of a tick and read by every step of it (`reconcile_task`, `zones`);
in a module of its own so that those read it without importing the reconciler that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vocab import Instance, Notice


@dataclass
class Observation:
    """What one tick saw. `listed` holds the providers whose list call succeeded this tick."""

    instances: dict[str, Instance] = field(default_factory=dict)  # by attempt id (a gang's: its head, rank 0)
    members: dict[str, list[Instance]] = field(default_factory=dict)  # a gang's other nodes, by attempt id
    listed: set[str] = field(default_factory=set)
    notices: dict[str, Notice] = field(default_factory=dict)  # by attempt id
    orphans: list[tuple[str, Instance]] = field(default_factory=list)
    seen: list[tuple[str, Instance]] = field(default_factory=list)  # every instance listed, by provider
