"""Render query results for people (aligned table) and programs (CSV, JSON, Parquet).

Binary cells (JPEG thumbnails) become base64 in CSV/JSON and ``<N bytes>`` in the table view;
nested values (lists, structs) become JSON text in CSV. Files are written atomically
(:func:`lakehouse.core.files.write_atomic`).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import InputError
from lakehouse.core.files import write_atomic

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("table", "csv", "json", "parquet")
MAX_CELL = 60


def plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "as_tuple") or type(value).__name__ == "Decimal":
        return str(value)
    return value


def to_json(table: pa.Table) -> str:
    """A JSON array of row objects."""
    return json.dumps([plain(r) for r in table.to_pylist()], ensure_ascii=False, indent=1) + "\n"


def to_csv(table: pa.Table) -> str:
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        cells = []
        for value in row.values():
            value = plain(value)
            if isinstance(value, list | dict):
                value = json.dumps(value, ensure_ascii=False)
            cells.append("" if value is None else value)
        writer.writerow(cells)
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(plain(value)) if not isinstance(value, str) else value
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def to_text_table(table: pa.Table, max_rows: int = 200) -> str:
    """An aligned plain-text table (at most ``max_rows`` rows, then a count of the rest)."""
    names = table.column_names
    rows = [[_cell(v) for v in r.values()] for r in table.slice(0, max_rows).to_pylist()]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    line = "  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if table.num_rows > max_rows:
        out.append(f"… {table.num_rows - max_rows} more rows (use --format csv or --out)")
    out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(out) + "\n"


def emit(table: pa.Table, fmt: str, out: str | None, stdout: Any) -> None:
    """Write ``table`` in ``fmt`` to ``out`` (a file) or ``stdout``."""
    if fmt not in FORMATS:
        raise InputError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if fmt == "parquet":
        if not out:
            raise InputError("Parquet output is binary; pass --out FILE.parquet.")
        import pyarrow.parquet as pq

        write_atomic(out, lambda tmp: pq.write_table(table, tmp))
        return
    text = {"table": to_text_table, "csv": to_csv, "json": to_json}[fmt](table)
    if out:

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)

        write_atomic(out, write)
    else:
        stdout.write(text)
