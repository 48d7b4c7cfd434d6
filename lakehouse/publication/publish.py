"""Publication: readers see a table version only after the blocking checks passed on it.

Writers commit to a table's latest version; readers (SQL, search, subsets, exports) read the
versions named by the publication record (:meth:`Store.published_dataset`). :func:`publish`
takes one snapshot of the pipeline tables' latest versions, runs the blocking checks on exactly
that snapshot, and only then replaces the record — one commit to the one-row ``_publication``
dataset, so readers move from one checked snapshot to the next for every table at once — and
moves each table's ``published`` tag, which keeps the version from Lance's own cleanup (and
writes the Parquet copy SQL scans of the mirrored tables, :mod:`lakehouse.storage.mirror`). When a
check fails nothing moves — readers keep the last good versions — and :class:`PublicationError`
says which check failed and what readers still see.

Concurrent runs write to one linear history per table, so a snapshot may hold another run's rows
that its own checks have not seen yet: that is why the checks run again here, over the whole
snapshot (keys, spans) and over every vector written since the last publication (the fragments
the published version does not have), rather than trusting each run's partition checks.
Publications serialize on the ``publish`` lock (local roots) and never move a tag backwards; from
the snapshot to the tags they also hold the ``cleanup`` lock shared, so a cleanup never deletes
a version being published or the Parquet copy being written (``tests/test_locks.py`` provokes
each race).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lakehouse.core.errors import PublicationError
from lakehouse.core.locks import lakehouse_lock
from lakehouse.core.schemas import (
    DUPLICATES_TABLE,
    PIPELINE_TABLES,
    SIGNALS_TABLE,
    VECTOR_TABLES,
)
from lakehouse.publication import checks
from lakehouse.query.session import Session
from lakehouse.storage import mirror
from lakehouse.storage.leases import CLEANUP_LOCK
from lakehouse.storage.published import move_tag, snapshot, write_record

if TYPE_CHECKING:
    from lakehouse.publication.checks import CheckOutcome
    from lakehouse.storage.store import Store


def verify(lh: Store, versions: dict[str, int]) -> list[CheckOutcome]:
    """Run the blocking checks on exactly ``versions``; returns every outcome."""
    outcomes = []
    with Session(lh, versions=versions) as session:
        for table in versions:
            outcomes.append(checks.unique_keys(session, table))
        if "clips" in versions and "videos" in versions:
            outcomes.append(checks.clip_spans_within_video(session))
        if SIGNALS_TABLE in versions:
            outcomes.append(checks.signal_values_in_range(session))
        if DUPLICATES_TABLE in versions:
            outcomes.append(checks.one_representative_per_cluster(session))
    for table in VECTOR_TABLES:
        if table in versions:
            since = lh.published_version(table)
            outcomes.append(checks.unit_vectors(lh, table, versions[table], since))
    return outcomes


def publish(lh: Store, tables: Sequence[str] = PIPELINE_TABLES) -> dict[str, int]:
    """Check the latest versions of ``tables`` and publish them; returns the versions readers
    see now. Raises PublicationError (and publishes nothing) when a blocking check fails."""
    # one publication at a time: two that both read the record before either wrote it would
    # leave it at whichever wrote last, the older snapshot too. Cleanup waits from the snapshot
    # to the tags: until the record names them, nothing keeps the snapshot's versions once a
    # writer committed past them (the checks' lease ends with their session), and the Parquet
    # copy being written is listed by no manifest yet.
    with lakehouse_lock(lh, "publish"), lakehouse_lock(lh, CLEANUP_LOCK, shared=True):
        versions = snapshot(lh, tables)
        failed = [o for o in verify(lh, versions) if not o.passed]
        if failed:
            still = lh.publication()
            shown = {t: v for t, v in still.items() if t in versions}
            raise PublicationError(
                f"Blocking check failed on versions {versions}: "
                f"{'; '.join(o.describe() for o in failed)}. Nothing was published; readers "
                f"still see {shown or 'the versions published before'}. Fix the data and re-run."
            )
        current = lh.publication()
        merged = {**current}
        for table, version in versions.items():  # never backwards
            merged[table] = max(version, current.get(table, 0))
        # before the switch: a reader of the new versions finds their SQL copy complete
        mirror.publish(lh, {t: merged[t] for t in versions})
        write_record(lh, merged)
        for table in versions:
            move_tag(lh, table, merged[table])
    return {t: merged[t] for t in versions}
