"""The search indexes: ANN on vectors, full-text on caption text, scalar indexes on the filter
columns, built once a table is large enough and refreshed incrementally after each ingest (the
``search_index`` stage)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lakehouse.core.locks import lakehouse_lock
from lakehouse.core.schemas import CLIP_TABLE, TEXT_TABLE
from lakehouse.storage.commits import commit_with_retry
from lakehouse.storage.scan import fold_new_rows, refresh_scalar_indexes

if TYPE_CHECKING:
    from lakehouse.storage.store import Store


def ensure_fts_index(table: Any) -> None:
    """Build the full-text index on first use (new rows are searched unindexed until the
    search_index asset refreshes it)."""
    from lancedb.index import FTS

    if not any(i.index_type == "FTS" for i in table.list_indices()):
        table.create_index("text", config=FTS(), replace=False)


# LanceDB's names of the scalar index types (list_indices().index_type)
SCALAR_INDEX_TYPES = frozenset({"BTree", "Bitmap", "LabelList", "NGram"})


def refresh_indexes(lh: Store) -> dict[str, Any]:
    """Build or refresh the search indexes: ANN on vectors past ``search.ann_min_rows``,
    full-text on caption text, scalar indexes on the filter columns of the vector tables and of
    the SQL tables (``lakehouse.storage.scan``). Incremental once built."""
    report: dict[str, Any] = {}
    for name in (CLIP_TABLE, TEXT_TABLE):
        table = lh.lancedb_table(name, latest=True)
        if table is None:
            continue
        # one refresh of a table at a time (a lock on local roots): a second refresh that read
        # the indexes before the first built them builds every one again (create_index
        # replaces), the ANN index's training included; waiting, it finds them up to date.
        # Racing commits (two folds of new rows) conflict and are retried after re-reading
        # which indexes exist, so without the lock (an object store) only the work is doubled
        with lakehouse_lock(lh, f"index-{name}"):
            report[name] = commit_with_retry(
                name, lambda table=table, name=name: _refresh(lh, table, name)
            )
    report.update(refresh_scalar_indexes(lh))
    return report


def _refresh(lh: Store, table: Any, name: str) -> dict[str, Any]:
    from lancedb.index import Bitmap, BTree, IvfRq

    settings = lh.config.search
    rows = table.count_rows()
    existing = {tuple(i.columns): i for i in table.list_indices()}
    actions = []
    for column, config in (
        ("clip_id", BTree()),
        ("model_id", Bitmap()),
        ("viewpoint", Bitmap()),
        ("source", Bitmap()),
        ("duration_s", BTree()),
        ("taxonomy_l1", Bitmap()),
        ("taxonomy_l2", Bitmap()),
        ("taxonomy_l3", Bitmap()),
    ):
        if (column,) not in existing and rows:
            table.create_index(column, config=config)
            actions.append(f"scalar index on {column}")
    if name == TEXT_TABLE and ("text",) not in existing and rows:
        ensure_fts_index(table)
        actions.append("full-text index on text")
    if ("vector",) not in existing and rows >= settings.ann_min_rows:
        table.create_index(
            "vector",
            config=IvfRq(distance_type="dot", num_bits=1),
        )
        actions.append("ANN index (IVF_RQ) on vector")
    elif existing:
        # the vector and full-text indexes take in new rows on every refresh (an unindexed
        # vector costs every search a full comparison); the scalar ones once the new rows pass
        # sql.index_lag_fraction of the table (until then prefilters scan those rows)
        lag = lh.config.sql.index_lag_fraction * rows
        due = {
            i.name: i.num_unindexed_rows
            for i in table.list_indices()
            if (i.num_unindexed_rows or 0)
            and (i.index_type not in SCALAR_INDEX_TYPES or i.num_unindexed_rows > lag)
        }
        if due:
            # fold the new rows into the indexes only: LanceDB's table.optimize() also
            # compacts, which rewrites every fragment under 1M rows (the whole table, when
            # it was written in batches) for each increment
            fold_new_rows(lh.dataset(name), index_names=list(due))
            actions.append(f"indexes refreshed ({max(due.values())} new rows)")
    return {"rows": rows, "actions": actions or ["up to date"]}
