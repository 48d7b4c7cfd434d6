"""Version cleanup: delete old table versions that nothing needs any more.

Kept: each table's latest and published versions, tagged ones (the versions subsets pin, the
published tag) and the versions running readers hold (:mod:`lakehouse.storage.leases`). Cleanup
holds the ``cleanup`` lock exclusively, so no reader registers a lease and no publication
writes its Parquet copy meanwhile; the copies of deleted versions go with them
(:func:`lakehouse.storage.mirror.prune`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from lakehouse.core.locks import lakehouse_lock
from lakehouse.storage import mirror
from lakehouse.storage.leases import CLEANUP_LOCK, held_versions

if TYPE_CHECKING:
    from lakehouse.storage.store import Store

WEEK_S = 7 * 86400


def cleanup(store: Store, older_than_s: float = WEEK_S) -> dict[str, int]:
    """Delete table versions older than ``older_than_s`` seconds that nothing keeps (see the
    module docstring). Returns bytes removed per table."""
    removed: dict[str, int] = {}
    with lakehouse_lock(store, CLEANUP_LOCK):
        held = held_versions(store)
        publication = store.publication()
        cutoff = dt.datetime.now() - dt.timedelta(seconds=older_than_s)
        for name in store.table_names():
            ds = store.dataset(name)
            if ds is None:
                continue
            tagged = {int(t["version"]) for t in ds.tags.list().values()}
            keep = tagged | held.get(name, set()) | {ds.version}
            if name in publication:
                keep.add(publication[name])
            old = [
                v["version"]
                for v in ds.versions()
                if v["timestamp"] < cutoff and v["version"] not in keep
            ]
            if not old:
                removed[name] = 0
                continue
            stats = ds.cleanup_old_versions(versions=old, error_if_tagged_old_versions=False)
            removed[name] = stats.bytes_removed
        mirror.prune(store)
    return removed
