"""A Parquet copy of a published SQL table, which DuckDB scans at its own speed.

DuckDB reads a Lance dataset through Arrow: at 10M clips, decoding ``video_id`` alone takes
longer than DuckDB's whole group-by over the same column in Parquet, and a caption ``LIKE``
that no index answers reads every caption through Lance (``bench/README.md``, Scale). So for
the tables in :data:`MIRRORED_TABLES`, :func:`publish` (at each publication, the pipeline's
last step) writes the published version as Parquet files that DuckDB's own reader scans, and a
SQL session reads those files instead of the Lance dataset when they exist for the version it
opens (:func:`parts`). Lance stays the table: every write, merge, index, search and pinned
version goes through it, and a version without a copy (the latest one a run is writing, an old
pin) is read from Lance as before, with the same rows.

The copy is one Parquet file per Lance fragment, named by a hash of the fragment's metadata
(its data files and deletion file) and the table's schema. A fragment that did not change
between two versions keeps its file, so a publication after an increment writes only the new
fragments and those with new deletions: its cost follows the increment, not the table. A
version's manifest (``v<version>.json``) lists its files; it is written last, so a reader
finds either a complete copy or none. Copies are kept for the versions Lance keeps
(:func:`prune`, called by :meth:`Store.cleanup`).

Only a local root gets a copy (an object-store root would need DuckDB's ``httpfs``
extension, which the locked session does not load), and ``sql.mirror = false`` turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.core.files import TMP_PREFIX, write_atomic

if TYPE_CHECKING:
    import lance
    import pyarrow as pa
    from lance.fragment import LanceFragment

    from lakehouse.storage.store import Store

FOLDER = ".sql_mirror"
# The narrow tables whole-column scans read: not the JPEGs or the vectors (searched in Lance).
MIRRORED_TABLES = ("clips",)
ROW_GROUP = 65_536


def enabled(lh: Store) -> bool:
    return lh.config.is_local and lh.config.sql.mirror


def folder(lh: Store, table: str) -> str:
    return os.path.join(lh.root, FOLDER, table)


def parts(lh: Store, table: str, version: int) -> list[str] | None:
    """The Parquet files holding ``table`` at ``version``, or None when it has no complete copy
    (nothing was published at that version, or a file is gone)."""
    if not enabled(lh) or table not in MIRRORED_TABLES:
        return None
    base = folder(lh, table)
    try:
        with open(os.path.join(base, f"v{version}.json")) as f:
            names = json.load(f)["parts"]
    except (OSError, ValueError, KeyError):
        return None
    paths = [os.path.join(base, name) for name in names]
    if not paths or not all(os.path.isfile(p) for p in paths):
        return None
    return paths


def publish(lh: Store, versions: dict[str, int]) -> dict[str, int]:
    """Write the copy of each mirrored table in ``versions``; returns the files written per
    table (0 when every fragment already had one)."""
    written: dict[str, int] = {}
    if not enabled(lh):
        return written
    for table in MIRRORED_TABLES:
        if table in versions:
            ds = lh.dataset(table, version=versions[table])
            if ds is not None:
                written[table] = write(lh, table, ds)
    return written


def write(lh: Store, table: str, ds: lance.LanceDataset) -> int:
    """Write the copy of ``table`` at the version ``ds`` is at; returns the new files."""
    base = folder(lh, table)
    if parts(lh, table, ds.version) is not None:
        return 0
    manifest = os.path.join(base, f"v{ds.version}.json")
    os.makedirs(base, exist_ok=True)
    schema_key = ds.schema.to_string(show_field_metadata=False, show_schema_metadata=False)
    names, written = [], 0
    for fragment in ds.get_fragments():
        if fragment.count_rows() == 0:
            continue
        key = json.dumps([schema_key, fragment.metadata.to_json()], sort_keys=True, default=str)
        name = f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.parquet"
        names.append(name)
        path = os.path.join(base, name)
        if os.path.isfile(path):
            continue
        write_atomic(path, functools.partial(_write_fragment, fragment=fragment, schema=ds.schema))
        written += 1
    if names:  # an empty table is read from Lance (DuckDB cannot read an empty file list)
        listing = json.dumps({"table": table, "version": ds.version, "parts": names})
        write_atomic(manifest, lambda tmp: Path(tmp).write_text(listing))
    return written


def prune(lh: Store) -> int:
    """Delete the copies of versions Lance no longer has, and files no copy lists; returns the
    files deleted. Runs under the cleanup lock, which a publication holds while it writes."""
    if not lh.config.is_local:
        return 0
    deleted = 0
    for table in MIRRORED_TABLES:
        base = folder(lh, table)
        if not os.path.isdir(base):
            continue
        ds = lh.dataset(table)
        kept = {v["version"] for v in ds.versions()} if ds is not None else set()
        listed: set[str] = set()
        for entry in os.listdir(base):
            if not (entry.startswith("v") and entry.endswith(".json")):
                continue
            path = os.path.join(base, entry)
            if entry[1:-5].isdigit() and int(entry[1:-5]) in kept:
                try:
                    with open(path) as f:
                        listed.update(json.load(f)["parts"])
                    continue
                except (OSError, ValueError, KeyError):
                    pass  # unreadable: deleted below like a stale one
            os.unlink(path)
            deleted += 1
        for entry in os.listdir(base):
            if (entry.endswith(".parquet") or entry.startswith(TMP_PREFIX)) and entry not in listed:
                os.unlink(os.path.join(base, entry))
                deleted += 1
    return deleted


def _write_fragment(tmp: str, *, fragment: LanceFragment, schema: pa.Schema) -> None:
    import pyarrow.parquet as pq

    with pq.ParquetWriter(tmp, schema) as writer:
        for batch in fragment.to_batches(batch_size=ROW_GROUP):
            writer.write_batch(batch)
