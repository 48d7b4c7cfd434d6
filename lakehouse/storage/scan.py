"""How SQL reads the tables: scalar indexes on their filter columns, and the scan options DuckDB
gets when it reads a Lance dataset.

DuckDB reads a registered Lance dataset through ``scanner(columns=…, filter=…)``: it pushes the
projection and its string/int comparisons (not float comparisons, not ``LIKE``). With a bitmap
index on a low-cardinality column (viewpoint, taxonomy…) or a btree on an id, Lance answers a
pushed comparison from the index and reads only the matching rows. Lance's late
materialization (read the filter columns first, the rest for matching rows only) costs more
than it saves on the narrow columns a clip query reads; it stays on for the wide ones (JPEG
bytes, vectors), where reading a non-matching row is what costs (``bench/bench_scale.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lance
import pyarrow.compute as pc

if TYPE_CHECKING:
    from lakehouse.storage.store import Store

# (column, index type) per table: bitmaps for columns of few distinct values, btrees for ids
# and numbers. Only columns a table has are indexed.
SCALAR_INDEXES: dict[str, tuple[tuple[str, str], ...]] = {
    "clips": (
        ("clip_id", "BTREE"),
        ("video_id", "BTREE"),
        ("source", "BITMAP"),
        ("viewpoint", "BITMAP"),
        ("probe_status", "BITMAP"),
        ("segmentation", "BITMAP"),
        ("taxonomy_l1", "BITMAP"),
        ("taxonomy_l2", "BITMAP"),
        ("taxonomy_l3", "BITMAP"),
        ("duration_s", "BTREE"),
        # trigrams: Lance answers the contains() that lakehouse.query.pushdown makes of a LIKE
        ("short_caption", "NGRAM"),
        ("long_caption", "NGRAM"),
    ),
    "videos": (("video_id", "BTREE"), ("source", "BITMAP"), ("codec", "BITMAP")),
    "annotations": (
        ("annotation_id", "BTREE"),
        ("clip_id", "BTREE"),
        ("source", "BITMAP"),
        ("viewpoint", "BITMAP"),
    ),
    "keyframes": (("keyframe_id", "BTREE"), ("clip_id", "BTREE"), ("source", "BITMAP")),
}
# below this many rows a scan is as fast as an index: do not build one yet
MIN_INDEXED_ROWS = 50_000


def refresh_scalar_indexes(
    lh: Store, *, min_rows: int = MIN_INDEXED_ROWS, lag_fraction: float | None = None
) -> dict[str, Any]:
    """Create the missing scalar indexes of the SQL tables (past ``min_rows`` rows) and fold
    rows written since into the existing ones, once they are more than ``lag_fraction``
    (``sql.index_lag_fraction``) of a table: until then a query reads the few unindexed rows
    by scanning them (the answer is the same), and a small increment does not pay for index
    work. Returns what was done per table."""
    lag_fraction = lh.config.sql.index_lag_fraction if lag_fraction is None else lag_fraction
    report: dict[str, Any] = {}
    for name, wanted in SCALAR_INDEXES.items():
        ds = lh.dataset(name)
        if ds is None:
            continue
        rows = ds.count_rows()
        if rows < min_rows:
            report[name] = {"rows": rows, "actions": ["too small to index"]}
            continue
        have = {tuple(i.field_names) for i in ds.describe_indices()}
        actions = []
        for column, kind in wanted:
            if column in ds.schema.names and (column,) not in have:
                ds.create_scalar_index(column, kind)
                actions.append(f"{kind.lower()} index on {column}")
        ds = lh.dataset(name)
        unindexed = max((_unindexed(ds, i.name) for i in ds.describe_indices()), default=0)
        if have and unindexed > lag_fraction * rows:
            fold_new_rows(ds)
            actions.append("indexes refreshed")
        elif have and unindexed:
            actions.append(f"{unindexed} new rows scanned until past {lag_fraction:.0%}")
        report[name] = {"rows": rows, "actions": actions or ["up to date"]}
    return report


# An index refresh indexes only the new rows, as a new segment (a delta): merging them into the
# existing segment rewrites the whole index (minutes at 10M rows). Once an index has this many
# segments, the refresh merges them (one full rewrite per so many increments).
MAX_INDEX_SEGMENTS = 8


def fold_new_rows(ds: lance.LanceDataset, index_names: list[str] | None = None) -> None:
    """Add rows written since the last refresh to the indexes of ``ds`` named (default: every
    one), cheaply: as deltas."""
    names = set(index_names) if index_names is not None else None
    chosen = [i.name for i in ds.describe_indices() if names is None or i.name in names]
    segments = max((_segments(ds, name) for name in chosen), default=0)
    ds.optimize.optimize_indices(
        num_indices_to_merge=segments if segments >= MAX_INDEX_SEGMENTS else 0,
        **({"index_names": chosen} if index_names is not None else {}),
    )


def _segments(ds: lance.LanceDataset, index: str) -> int:
    try:
        return int(ds.stats.index_stats(index).get("num_segments", 1))
    except (ValueError, KeyError, OSError):
        return 1


def _unindexed(ds: lance.LanceDataset, index: str) -> int:
    try:
        return int(ds.stats.index_stats(index).get("num_unindexed_rows", 0))
    except (ValueError, KeyError, OSError):
        return 0


class ScanDataset(lance.LanceDataset):
    """A Lance dataset whose scans, as DuckDB starts them, carry the lakehouse's options, and
    for the query being run, the filter :mod:`lakehouse.query.pushdown` adds to DuckDB's."""

    scan_options: dict[str, Any]
    extra_filter: Any = None  # a pyarrow compute expression, set around one query

    def scanner(self, *args: Any, **kwargs: Any) -> Any:
        options = {**self.scan_options, **kwargs}
        extra = self.extra_filter
        if extra is not None and len(args) < 2:  # DuckDB passes the filter by keyword
            pushed = options.get("filter")
            if pushed is None:
                options["filter"] = extra
            elif isinstance(pushed, pc.Expression):
                options["filter"] = pushed & extra
            # any other filter form is left alone: the extra filter is only an optimization
        return super().scanner(*args, **options)


def for_sql(ds: lance.LanceDataset) -> lance.LanceDataset:
    """``ds`` as DuckDB should read it: late materialization only for the wide columns."""
    import pyarrow as pa

    wide = [
        f.name
        for f in ds.schema
        if pa.types.is_binary(f.type)
        or pa.types.is_large_binary(f.type)
        or pa.types.is_fixed_size_list(f.type)
        or (pa.types.is_list(f.type) and pa.types.is_fixed_size_list(f.type.value_type))
    ]
    view = ScanDataset.__new__(ScanDataset)
    view.__dict__.update(ds.__dict__)  # the same open dataset, not a second open
    view.scan_options = {"late_materialization": wide or False}
    return view
