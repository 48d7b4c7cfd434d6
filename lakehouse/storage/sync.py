"""Sync: make the rows of a scope equal to a stream of rows, committing only what changed.

New keys are inserted, keys whose content changed are updated, and keys within the scope that no
batch holds are deleted. Unchanged rows are not rewritten, so a re-run that finds nothing new
commits nothing. Memory holds one batch, the changed rows waiting for their commit (at most
:data:`SYNC_FLUSH_ROWS`), and the keys of the rows in scope with a 128-bit hash of each one's
content, never the rows themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lakehouse.core import schemas
from lakehouse.storage.commits import commit_with_retry, run_merge
from lakehouse.storage.filters import in_list
from lakehouse.storage.streams import BOUNDED_SCAN
from lakehouse.storage.writes import WriteResult

if TYPE_CHECKING:
    import lance
    import pyarrow as pa

    from lakehouse.storage.store import Store

# Columns that record when/who wrote a row; a row whose other columns are unchanged is not
# rewritten just because these differ.
VOLATILE_COLUMNS = frozenset(
    {"run_id", "probed_at", "quarantined_at", "updated_at", "registered_at", "created_at"}
)
# A sync merges its changed rows every SYNC_FLUSH_ROWS rows, and deletes stale keys in filters of
# at most SYNC_DELETE_KEYS keys; between flushes it holds only the scope's keys and row hashes.
SYNC_FLUSH_ROWS = 100_000
SYNC_DELETE_KEYS = 10_000


def sync_batches(
    store: Store,
    name: str,
    batches: Iterable[Sequence[Mapping[str, Any]] | pa.Table],
    *,
    scope: str,
    compare: bool = True,
    delete: bool = True,
    schema: pa.Schema | None = None,
) -> WriteResult:
    """Make the rows of ``name`` matching ``scope`` equal to the rows of ``batches``.

    Keys whose content changed are updated only with ``compare``; stale keys are deleted only
    with ``delete``. A key given twice keeps its last row. Changed rows are merged every
    :data:`SYNC_FLUSH_ROWS`; the last merge also deletes the stale keys, so a sync that fits one
    flush is one commit. A larger one is several commits, each idempotent: a run that stopped
    half way is completed by the next (readers see published versions only)."""
    import numpy as np
    import polars as pl
    import pyarrow as pa

    schema = schema or store.schema(name)
    key = schemas.primary_key(schema)
    ds = store.ensure(name, schema)
    columns = [f.name for f in schema if compare or f.name == key]
    if compare:
        columns = [
            c
            for c in columns
            if c not in VOLATILE_COLUMNS and not pa.types.is_binary(schema.field(c).type)
        ]
    hashed = pa.schema([schema.field(c) for c in columns])
    old = _scope_hashes(ds, scope, key, hashed)  # sorted by key
    old_keys = old[key]
    seen = np.zeros(old.height, dtype=bool)
    totals = {"num_inserted_rows": 0, "num_updated_rows": 0, "num_deleted_rows": 0}
    attempts = 0
    pending: list[pa.Table] = []

    def commit(data: pa.Table, stale: Sequence[str] = ()) -> None:
        nonlocal attempts
        data = _last_per_key(data, key)

        def merge() -> dict[str, int]:
            # a retry merges the same rows into the latest version: keys are matched again
            builder = store.dataset(name).merge_insert(key)
            builder = builder.when_matched_update_all().when_not_matched_insert_all()
            if stale:
                builder = builder.when_not_matched_by_source_delete(
                    f"({scope}) AND {in_list(key, stale)}"
                )
            return run_merge(builder, data)

        stats = commit_with_retry(name, merge)
        for k in totals:
            totals[k] += stats[k]
        attempts += stats["attempts"]

    for rows in batches:
        data = store.to_arrow(name, rows, schema)
        if data.num_rows == 0:
            continue
        new = _row_hashes(data.select(columns).cast(hashed), key)
        found = np.zeros(data.num_rows, dtype=bool)
        if old.height:
            pos = old_keys.search_sorted(new[key], side="left").to_numpy().astype(np.int64)
            inside = pos < old.height
            at = np.minimum(pos, old.height - 1)
            found = inside & (old_keys.gather(at) == new[key]).to_numpy()
            seen[pos[found]] = True
        changed = ~found
        if compare and found.any():
            same = (old["h1"].gather(at).to_numpy() == new["h1"].to_numpy()) & (
                old["h2"].gather(at).to_numpy() == new["h2"].to_numpy()
            )
            changed |= found & ~same
        if changed.any():
            pending.append(data.filter(pa.array(changed)))
        if sum(t.num_rows for t in pending) >= SYNC_FLUSH_ROWS:
            commit(pa.concat_tables(pending))
            pending = []
    stale = old_keys.filter(pl.Series(~seen)).to_list() if delete and old.height else []
    # large deletions go in bounded filters; the last part goes with the last merge
    parts = [stale[i : i + SYNC_DELETE_KEYS] for i in range(0, len(stale), SYNC_DELETE_KEYS)]
    stale = parts.pop() if parts else []
    for part in parts:
        predicate = f"({scope}) AND {in_list(key, part)}"
        commit_with_retry(name, lambda p=predicate: store.dataset(name).delete(p))
        totals["num_deleted_rows"] += len(part)
        attempts += 1
    if pending or stale:
        commit(pa.concat_tables(pending) if pending else schema.empty_table(), stale)
    return WriteResult(
        name,
        inserted=totals["num_inserted_rows"],
        updated=totals["num_updated_rows"],
        deleted=totals["num_deleted_rows"],
        version=store.dataset(name).version,
        attempts=max(attempts, 1),
    )


def _row_hashes(data: pa.Table | pa.RecordBatch, key: str) -> Any:
    """``key`` and a 128-bit content hash (``h1``, ``h2``: two seeds) of each row (a polars
    frame). Exact equality of values, NaN equal to NaN, as a row comparison would give."""
    import numpy as np
    import polars as pl

    frame = pl.from_arrow(data)
    # the keys are copied (a take): polars' view of the batch's key column would keep every
    # column of the batch alive (measured: 2.1 GB instead of 0.65 GB for 1M annotation rows)
    keys = pl.from_arrow(data.column(key).take(np.arange(data.num_rows)))
    return pl.DataFrame({key: keys, "h1": frame.hash_rows(seed=11), "h2": frame.hash_rows(seed=23)})


def _scope_hashes(ds: lance.LanceDataset, scope: str, key: str, columns: pa.Schema) -> Any:
    """The keys of the rows in ``scope`` with their content hashes, sorted by key, read in
    batches (a scope of N rows costs its keys plus 16 bytes a row, not its rows)."""
    import polars as pl
    import pyarrow as pa

    parts = [
        _row_hashes(pa.Table.from_batches([batch]).select(columns.names).cast(columns), key)
        for batch in ds.to_batches(columns=columns.names, filter=scope, **BOUNDED_SCAN)
        if batch.num_rows
    ]
    if not parts:
        return pl.DataFrame(
            {key: [], "h1": [], "h2": []},
            schema={key: pl.String, "h1": pl.UInt64, "h2": pl.UInt64},
        )
    return pl.concat(parts).sort(key)


def _last_per_key(data: pa.Table, key: str) -> pa.Table:
    """``data`` with each key's last row only (a merge must not see a key twice)."""
    import polars as pl
    import pyarrow as pa

    last = pl.from_arrow(data.column(key)).is_last_distinct()
    return data if last.all() else data.filter(pa.array(last.to_numpy()))
