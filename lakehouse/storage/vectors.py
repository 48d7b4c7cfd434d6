"""The one reader of vector columns: Arrow fixed-size lists to numpy matrices, batch by batch.

Search (the exact path's cached block, the scan of a large id filter, "more like this"), the
semantic SQL functions, near-duplicate clustering and the embedding checks all read vectors
through these functions, so a vector column becomes a matrix in one way: from the list's flat
values, without a Python object per row, one batch in memory at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.storage.streams import BOUNDED_SCAN

if TYPE_CHECKING:
    import lance
    import numpy as np
    import pyarrow as pa

VECTOR = "vector"


def to_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-size-list column as a float32 matrix of one row per slot (a null vector's row
    holds whatever its slot holds: check ``column.is_valid()`` where nulls matter)."""
    import numpy as np
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return to_matrix(column.chunk(0))
        parts = [to_matrix(chunk) for chunk in column.chunks]
        width = column.type.list_size
        return np.concatenate(parts) if parts else np.empty((0, width), np.float32)
    width = column.type.list_size
    n = len(column)
    # .values ignores the array's offset (a slice of a batch): take the slots this array covers
    values = column.values.slice(column.offset * width, n * width)
    matrix = values.to_numpy(zero_copy_only=False).reshape(n, width)
    return matrix if matrix.dtype == np.float32 else matrix.astype(np.float32)


def vector_batches(
    ds: lance.LanceDataset,
    *,
    columns: Sequence[str] = (),
    filter: str | None = None,
    row_ids: bool = False,
    fragments: Sequence[Any] | None = None,
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """``(other columns, vectors)`` per batch of the rows matching ``filter`` (a bounded scan);
    ``row_ids`` adds Lance's ``_rowid`` to the other columns."""
    options: dict[str, Any] = dict(BOUNDED_SCAN)
    if fragments is not None:
        options["fragments"] = list(fragments)
    for batch in ds.to_batches(
        columns=[*columns, VECTOR], filter=filter, with_row_id=row_ids, **options
    ):
        if batch.num_rows:
            others = batch.drop_columns([VECTOR])
            yield others, to_matrix(batch.column(VECTOR))


@dataclass
class Vectors:
    """Vectors read into one matrix, with the other columns asked for (as numpy or lists)."""

    matrix: np.ndarray
    columns: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.matrix)


def read_vectors(
    ds: lance.LanceDataset | None,
    *,
    columns: Sequence[str] = (),
    filter: str | None = None,
    row_ids: bool = False,
    rows: int | None = None,
) -> Vectors:
    """Every vector matching ``filter`` in one float32 matrix, with ``columns`` (lists; ``_rowid``
    a uint64 array). With ``rows`` (the count, when the caller knows it) the matrix is filled in
    place, so reading peaks at the matrix plus one batch. A missing table reads as empty."""
    import numpy as np

    names = [*columns, *(["_rowid"] if row_ids else [])]
    if ds is None:
        return Vectors(np.zeros((0, 1), np.float32), {n: [] for n in names})
    width = ds.schema.field(VECTOR).type.list_size
    parts: list[np.ndarray] = []
    matrix = np.empty((rows, width), np.float32) if rows is not None else None
    found: dict[str, list[Any]] = {n: [] for n in names}
    filled = 0
    for others, vectors in vector_batches(ds, columns=columns, filter=filter, row_ids=row_ids):
        n = len(vectors)
        if matrix is not None and filled + n <= len(matrix):
            matrix[filled : filled + n] = vectors
        else:
            if matrix is not None:  # more rows than counted: keep what was filled, grow
                parts.append(matrix[:filled].copy())
                matrix = None
            parts.append(vectors)
        filled += n
        for name in names:
            found[name].append(others.column(name))
    if matrix is not None:
        out = matrix[:filled]  # the leading rows: still contiguous
    else:
        out = np.concatenate(parts) if parts else np.zeros((0, width), np.float32)
    values: dict[str, Any] = {}
    for name, arrays in found.items():
        if name == "_rowid":
            values[name] = (
                np.concatenate([a.to_numpy() for a in arrays]).astype(np.uint64)
                if arrays
                else np.zeros(0, np.uint64)
            )
        else:
            values[name] = [v for a in arrays for v in a.to_pylist()]
    return Vectors(out, values)


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` with every row scaled to unit length (a zero row stays zero)."""
    import numpy as np

    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
