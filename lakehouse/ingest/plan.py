"""Streaming plans for the per-clip stages: what to compute, what to refresh and what is stale,
worked out from sorted streams of the tables (:meth:`Store.read_sorted` and
:meth:`Store.stream_query`, whose sorts spill to disk) instead of whole-source reads.

A stage reads each input sorted by clip, joins them clip by clip (:func:`merge`), and writes the
clips to compute into a :class:`Spool` on disk while it learns how many there are; it then works
through the spool chunk by chunk. Memory holds one batch per stream and one chunk, whatever the
size of the source.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from lakehouse.storage.filters import in_list
from lakehouse.storage.streams import SORT_MB_PER_THREAD
from lakehouse.storage.sync import SYNC_DELETE_KEYS

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.storage.store import Store

# rows per batch of a plan stream (a batch becomes Python dicts at once)
PLAN_ROWS = 2_000


def groups(batches: Iterable[pa.RecordBatch], key: str = "clip_id") -> Iterator[tuple[Any, list]]:
    """``(key, rows)`` for each run of consecutive rows with the same ``key`` (batches sorted by
    it, so each key comes once)."""
    current: Any = None
    rows: list[dict[str, Any]] = []
    for batch in batches:
        for row in batch.to_pylist():
            if rows and row[key] != current:
                yield current, rows
                rows = []
            current = row[key]
            rows.append(row)
    if rows:
        yield current, rows


def stream_memory_mb(lh: Store, streams: int) -> int:
    """Each of a stage's ``streams`` open sorted streams gets its share of
    ``ingest.sort_memory_mb`` (their sorts hold their results until read)."""
    return max(SORT_MB_PER_THREAD, lh.config.ingest.sort_memory_mb // streams)


def sorted_groups(
    lh: Store,
    table: str,
    *,
    columns: list[str],
    order_by: list[str],
    filter: str,
    memory_mb: int,
) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """The rows of ``table`` matching ``filter`` sorted by ``order_by`` and grouped by its first
    column (:func:`groups`); nothing for a table not written yet."""
    if not lh.exists(table):
        return iter(())
    rows = lh.read_sorted(
        table,
        columns=columns,
        order_by=order_by,
        filter=filter,
        batch_rows=PLAN_ROWS,
        memory_mb=memory_mb,
    )
    return groups(rows, order_by[0])


def merge(*streams: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Any, list[Any]]]:
    """Join streams of ``(key, value)``, each sorted by a unique key: every key of any stream,
    with the value of each stream (None where a stream lacks the key)."""
    iterators = [iter(s) for s in streams]
    heads = [next(it, None) for it in iterators]
    while any(h is not None for h in heads):
        key = min(h[0] for h in heads if h is not None)
        values = []
        for i, head in enumerate(heads):
            if head is not None and head[0] == key:
                values.append(head[1])
                heads[i] = next(iterators[i], None)
            else:
                values.append(None)
        yield key, values


class Spool:
    """Items appended to a temporary file (pickled in chunks), read back in chunks: the work
    list of a stage, which can be longer than memory allows."""

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk
        self.count = 0
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="lakehouse-plan-")  # noqa: SIM115 (closed by close())
        self._pending: list[Any] = []

    def add(self, item: Any) -> None:
        self._pending.append(item)
        self.count += 1
        if len(self._pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            pickle.dump(self._pending, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._pending = []

    def chunks(self) -> Iterator[list[Any]]:
        """The items in order, in lists of ``chunk`` (the last may be shorter)."""
        self._flush()
        self._file.seek(0)
        while True:
            try:
                yield pickle.load(self._file)
            except EOFError:
                return

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StaleKeys:
    """Keys a plan finds stale, deleted from ``tables`` (within ``scope``) in filters of at most
    ``SYNC_DELETE_KEYS`` keys as they come, so a large deletion never builds one huge predicate
    or list. ``deleted`` counts the rows deleted from the first table."""

    def __init__(
        self, lh: Store, tables: Iterable[str], key: str, scope: str | None = None
    ) -> None:
        self.lh, self.tables, self.key, self.scope = lh, list(tables), key, scope
        self.deleted = 0
        self._keys: list[Any] = []

    def add(self, keys: Iterable[Any]) -> None:
        self._keys.extend(keys)
        if len(self._keys) >= SYNC_DELETE_KEYS:
            self.flush()

    def flush(self) -> None:
        if not self._keys:
            return
        predicate = in_list(self.key, self._keys)
        if self.scope:
            predicate = f"({self.scope}) AND {predicate}"
        counts = [self.lh.delete(table, predicate) for table in self.tables]
        self.deleted += counts[0]
        self._keys = []
