"""The worker side of a campaign: what a job imports to take items, commit results and stop on a notice.

    from orchestrator.job import worker as orch

    for item in orch.items():
        with item:
            item.done(fold(item.payload["sequence"]))

See docs/campaigns.md. Importing this package loads no database driver: the SQL source is imported
when a worker is started with ORCH_ITEMS_URL, the HTTP one (httpx) with ORCH_ITEMS_ENDPOINT.
"""

from orchestrator.job.worker.items import (
    DEFAULT_LEASE_SECONDS,
    Item,
    ItemsConfigError,
    WorkerItems,
    is_out_of_memory,
    items,
    source_from_env,
)
from orchestrator.job.worker.sources import ItemSource, MemoryItemSource

__all__ = ["DEFAULT_LEASE_SECONDS", "Item", "ItemSource", "ItemsConfigError", "MemoryItemSource", "WorkerItems",
           "is_out_of_memory", "items", "source_from_env"]
