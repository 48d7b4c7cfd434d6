"""The publication record: which version of every table readers see.

One row in the internal ``_publication`` dataset maps every published table to a version; it is
replaced in a single commit, so readers switch from one checked snapshot to the next for every
table at once. Each published version also carries the ``published`` tag, which keeps it from
Lance's own cleanup. :meth:`Store.publication <lakehouse.storage.store.Store.publication>` reads
the record; :mod:`lakehouse.publication.publish` decides when to write it (after the blocking
checks passed on exactly those versions).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lakehouse.core.schemas import PIPELINE_TABLES, PK_METADATA, PUBLICATION

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.storage.store import Store

PUBLISHED_TAG = "published"


def record_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("record", pa.string(), nullable=False, metadata=PK_METADATA),  # "current"
            pa.field("versions_json", pa.string()),
            pa.field("published_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def snapshot(store: Store, tables: Sequence[str] = PIPELINE_TABLES) -> dict[str, int]:
    """The latest version of every existing table in ``tables``."""
    out = {}
    for name in tables:
        ds = store.dataset(name)
        if ds is not None:
            out[name] = ds.version
    return out


def write_record(store: Store, versions: dict[str, int]) -> None:
    """Replace the publication record with ``versions`` (one commit)."""
    row = {
        "record": "current",
        "versions_json": json.dumps(dict(sorted(versions.items()))),
        "published_at": dt.datetime.now(dt.UTC),
    }
    store.upsert(PUBLICATION, [row], schema=record_schema())


def move_tag(store: Store, table: str, version: int) -> None:
    """Point ``table``'s ``published`` tag at ``version`` (never backwards)."""
    ds = store.dataset(table)
    current = ds.tags.list().get(PUBLISHED_TAG)
    if current is None:
        try:
            ds.tags.create(PUBLISHED_TAG, version)
            return
        except (OSError, ValueError):
            # created meanwhile by a racing publisher (object store): move it below; any other
            # failure (the version is gone) is raised as it is
            current = store.dataset(table).tags.list().get(PUBLISHED_TAG)
            if current is None:
                raise
    if int(current["version"]) < version:
        store.dataset(table).tags.update(PUBLISHED_TAG, version)
