"""What a write did to a table (:class:`WriteResult`), and rows made into a table's Arrow form."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class WriteResult:
    """What a merge did to a table."""

    table: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    version: int | None = None
    attempts: int = 1  # commits tried; more than 1 means concurrent writers were retried over

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)


def to_arrow(schema: pa.Schema, rows: Sequence[Mapping[str, Any]] | pa.Table) -> pa.Table:
    """``rows`` (dicts, or a table) as an Arrow table of exactly ``schema``'s columns: missing
    keys are null, extra ones dropped."""
    import pyarrow as pa

    if isinstance(rows, pa.Table):
        return rows.select(schema.names).cast(schema)
    names = schema.names
    return pa.Table.from_pylist([{n: r.get(n) for n in names} for r in rows], schema=schema)
