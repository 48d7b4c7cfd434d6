"""Publication: readers see a table version only after the blocking checks passed on it.

Writers commit to a table's latest version; readers (SQL, search, subsets, exports) read the
versions named by the publication record (:meth:`Lakehouse.published_dataset`). :func:`publish`
takes one snapshot of the pipeline tables' latest versions, runs the blocking checks on exactly
that snapshot, and only then replaces the record — one commit to the one-row ``_publication``
dataset, so readers move from one checked snapshot to the next for every table at once — and
moves each table's ``published`` tag, which keeps the version from Lance's own cleanup (and
writes the Parquet copy SQL scans of the mirrored tables, :mod:`lakehouse.mirror`). When a
check fails nothing moves — readers keep the last good versions — and :class:`PublicationError`
says which check failed and what readers still see.

Concurrent runs write to one linear history per table, so a snapshot may hold another run's rows
that its own checks have not seen yet: that is why the checks run again here, over the whole
snapshot (keys, spans) and over every vector written since the last publication (the fragments
the published version does not have), rather than trusting each run's partition checks.
Publications serialize on a lock (local roots) and never move a tag backwards.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from lakehouse import checks, mirror
from lakehouse.errors import PublicationError
from lakehouse.locks import lakehouse_lock
from lakehouse.readers import CLEANUP_LOCK
from lakehouse.schemas import PK_METADATA
from lakehouse.store import PUBLICATION, PUBLISHED_TAG

if TYPE_CHECKING:
    from lakehouse.checks import CheckOutcome
    from lakehouse.store import Lakehouse

# The tables the ingest and embedding stages write; subsets and subset_clips are written whole
# by one step (their commit marker is the subsets row) and are read at their latest version.
PIPELINE_TABLES = (
    "sources",
    "videos",
    "annotations",
    "clips",
    "keyframes",
    "quarantine",
    "clip_embeddings",
    "text_embeddings",
)
# The derived curation tables are published the same way, by the steps that write them: the
# signals of a source once their range check passed (privacy_status decides what an export lets
# through, so a bad row must not reach readers), the viewpoint predictions and near-duplicate
# clusters once the cluster check passed.
SIGNAL_TABLES = ("signals", "signal_frames")
CURATION_TABLES = ("viewpoint_predictions", "near_duplicates")
VECTOR_TABLES = ("clip_embeddings", "text_embeddings")
RECORD = pa.schema(
    [
        pa.field("record", pa.string(), nullable=False, metadata=PK_METADATA),  # always "current"
        pa.field("versions_json", pa.string()),
        pa.field("published_at", pa.timestamp("us", tz="UTC")),
    ]
)


def snapshot(lh: Lakehouse, tables: Sequence[str] = PIPELINE_TABLES) -> dict[str, int]:
    """The latest version of every existing table in ``tables``."""
    out = {}
    for name in tables:
        ds = lh.dataset(name)
        if ds is not None:
            out[name] = ds.version
    return out


def verify(lh: Lakehouse, versions: dict[str, int]) -> list[CheckOutcome]:
    """Run the blocking checks on exactly ``versions``; returns every outcome."""
    from lakehouse.sql import Session

    outcomes = []
    with Session(lh, versions=versions) as session:
        for table in versions:
            outcomes.append(checks.unique_keys(session, table))
        if "clips" in versions and "videos" in versions:
            outcomes.append(checks.clip_spans_within_video(session))
        if "signals" in versions:
            outcomes.append(checks.signal_values_in_range(session))
        if "near_duplicates" in versions:
            outcomes.append(checks.one_representative_per_cluster(session))
    for table in VECTOR_TABLES:
        if table in versions:
            since = lh.published_version(table)
            outcomes.append(checks.unit_vectors(lh, table, versions[table], since))
    return outcomes


def publish(lh: Lakehouse, tables: Sequence[str] = PIPELINE_TABLES) -> dict[str, int]:
    """Check the latest versions of ``tables`` and publish them; returns the versions readers
    see now. Raises PublicationError (and publishes nothing) when a blocking check fails."""
    with lakehouse_lock(lh, "publish"):
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
        # cleanup must not run between the switch and the tags (it keeps what the record names)
        with lakehouse_lock(lh, CLEANUP_LOCK, shared=True):
            current = lh.publication()
            merged = {**current}
            for table, version in versions.items():  # never backwards
                merged[table] = max(version, current.get(table, 0))
            # before the switch: a reader of the new versions finds their SQL copy complete
            mirror.publish(lh, {t: merged[t] for t in versions})
            _write_record(lh, merged)
            for table in versions:
                _move_tag(lh, table, merged[table])
    return {t: merged[t] for t in versions}


def _write_record(lh: Lakehouse, versions: dict[str, int]) -> None:
    row = {
        "record": "current",
        "versions_json": json.dumps(dict(sorted(versions.items()))),
        "published_at": dt.datetime.now(dt.UTC),
    }
    lh.upsert(PUBLICATION, [row], schema=RECORD)


def _move_tag(lh: Lakehouse, table: str, version: int) -> None:
    ds = lh.dataset(table)
    current = ds.tags.list().get(PUBLISHED_TAG)
    if current is None:
        try:
            ds.tags.create(PUBLISHED_TAG, version)
        except (OSError, ValueError) as exc:  # created by a racing publisher (object store)
            if "exist" not in str(exc).lower():
                raise
            _move_tag(lh, table, version)
    elif int(current["version"]) < version:
        ds.tags.update(PUBLISHED_TAG, version)
