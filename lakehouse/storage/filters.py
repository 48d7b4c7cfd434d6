"""Lance filter expressions built from values: Lance filters take no bound parameters, so every
value reaches one through :func:`sql_literal` (quoted, escaped), never an f-string of raw text."""

from __future__ import annotations

from collections.abc import Iterable


def sql_literal(value: object) -> str:
    """Quote a value for a Lance filter expression."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def in_list(column: str, values: Iterable[object]) -> str:
    """``column IN (…)`` over the distinct values (``FALSE`` for none)."""
    items = sorted({sql_literal(v) for v in values})
    return f"{column} IN ({', '.join(items)})" if items else "FALSE"
