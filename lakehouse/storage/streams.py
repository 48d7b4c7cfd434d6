"""Streaming reads: a DuckDB query over Lance scans in bounded memory (:func:`stream_query`), and a
table's rows sorted by any columns (:func:`read_sorted`), whatever the size of the table.

A stage plans its work with them (what to compute, what is stale) without holding a source's rows
as Python objects: the query runs under a memory limit and its sorts, joins and aggregates spill
to a temporary folder past it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.storage.store import Store

# Scan options of the streaming reads (the sync's hashes, read_sorted, the vector reader): small
# batches and a short read-ahead (Lance's default read-ahead held ~0.9 GB of 1M annotation rows)
BOUNDED_SCAN: dict[str, int] = {"batch_size": 16_384, "batch_readahead": 2, "fragment_readahead": 1}
# each thread of a sort needs its own working memory before it can spill (wide rows of 3M clips
# failed at 81 MB a thread, passed at 128)
SORT_MB_PER_THREAD = 128

# alias -> (table, columns, Lance filter or None)
Scans = Mapping[str, tuple[str, Sequence[str], str | None]]


def stream_query(
    store: Store,
    query: str,
    scans: Scans,
    *,
    params: Sequence[Any] | None = None,
    batch_rows: int = 20_000,
    memory_mb: int | None = None,
    published: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Stream the result of a DuckDB ``query`` over Lance scans, in batches of ``batch_rows``,
    in bounded memory: the query runs under ``memory_mb`` (default ``ingest.sort_memory_mb``; a
    stage that holds several streams open splits it). ``scans`` maps each name the query reads
    to ``(table, columns, filter)``: a streaming scan of the table's latest version (its
    published one with ``published``; an empty scan where the table does not exist yet), which
    the query may read once. The plan's inputs are read before its first row comes back where
    the query sorts, so a stage may write the same tables while it iterates."""
    import tempfile

    import duckdb
    import pyarrow as pa

    publication = store.publication() if published else None
    readers = {}
    for alias, (table, columns, flt) in scans.items():
        ds = store.published_dataset(table, publication) if published else store.dataset(table)
        if ds is None:
            empty = store.schema(table).empty_table().select(list(columns))
            readers[alias] = pa.RecordBatchReader.from_batches(empty.schema, [])
        else:
            readers[alias] = ds.scanner(
                columns=list(columns), filter=flt, **BOUNDED_SCAN
            ).to_reader()
    limit = memory_mb or store.config.ingest.sort_memory_mb
    threads = max(1, min(store.config.sql.threads, limit // SORT_MB_PER_THREAD))
    with tempfile.TemporaryDirectory(prefix="lakehouse-sort-") as spill:
        con = duckdb.connect(
            config={"memory_limit": f"{limit}MB", "temp_directory": spill, "threads": str(threads)}
        )
        try:
            for alias, reader in readers.items():
                con.register(alias, reader)
            result = con.execute(query, params) if params else con.sql(query)
            yield from result.to_arrow_reader(batch_rows)
        finally:
            con.close()


def read_sorted(
    store: Store,
    name: str,
    *,
    columns: Sequence[str],
    order_by: Sequence[str],
    filter: str | None = None,
    batch_rows: int = 20_000,
    memory_mb: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream a table's rows sorted by ``order_by``, in batches of ``batch_rows`` (the sort
    spills to disk, so a table of any size is sorted in bounded memory)."""
    order = ", ".join(f'"{c}"' for c in order_by)
    yield from stream_query(
        store,
        f"SELECT * FROM rows_to_sort ORDER BY {order}",
        {"rows_to_sort": (name, columns, filter)},
        batch_rows=batch_rows,
        memory_mb=memory_mb,
    )
