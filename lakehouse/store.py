"""The lakehouse handle: one Lance dataset per table under the root, written by merging on keys.

Every write is a ``merge_insert`` on the table's primary key, so re-running a step never adds
duplicate rows; :meth:`Lakehouse.sync` additionally updates rows whose content changed and
deletes rows that a step no longer produces within its scope (one source, one stage…).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakehouse import schemas
from lakehouse.config import Config
from lakehouse.errors import TableNotFoundError

if TYPE_CHECKING:
    import lance
    import pyarrow as pa

# Columns that record when/who wrote a row; a row whose other columns are unchanged is not
# rewritten just because these differ.
VOLATILE_COLUMNS = frozenset(
    {"run_id", "probed_at", "quarantined_at", "updated_at", "registered_at", "created_at"}
)


@dataclass(frozen=True)
class WriteResult:
    """What a merge did to a table."""

    table: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    version: int | None = None

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)


@dataclass(frozen=True)
class TableInfo:
    name: str
    rows: int
    version: int
    uri: str


def sql_literal(value: object) -> str:
    """Quote a value for a Lance filter expression (Lance filters take no bound parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def in_list(column: str, values: Iterable[object]) -> str:
    items = sorted({sql_literal(v) for v in values})
    return f"{column} IN ({', '.join(items)})" if items else "FALSE"


class Lakehouse:
    """A lakehouse root: tables are ``<root>/<name>.lance``."""

    def __init__(self, config: Config):
        self.config = config
        self.root = config.root
        self._lancedb: Any = None
        self._lancedb_tables: dict[str, Any] = {}
        if config.is_local:
            os.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"Lakehouse(root={self.root!r})"

    # -- tables -------------------------------------------------------------------------
    def table_uri(self, name: str) -> str:
        return f"{self.root}/{name}.lance"

    def schema(self, name: str) -> pa.Schema:
        if name in schemas.TABLES:
            return schemas.TABLES[name]
        ds = self.dataset(name)
        if ds is not None:
            return ds.schema
        if name in schemas.DYNAMIC_TABLES:
            return schemas.DYNAMIC_TABLES[name]()
        known = sorted([*schemas.TABLES, *schemas.DYNAMIC_TABLES])
        raise TableNotFoundError(f"There is no table named {name!r}; known tables: {known}.")

    def dataset(self, name: str, version: int | str | None = None) -> lance.LanceDataset | None:
        """The Lance dataset of a table (at a version or tag), or None if it does not exist."""
        import lance

        uri = self.table_uri(name)
        if self.config.is_local and not os.path.isdir(uri):
            return None
        try:
            return lance.dataset(
                uri, version=version, storage_options=self.config.storage_options or None
            )
        except (FileNotFoundError, ValueError) as exc:
            if version is not None and self.dataset(name) is not None:
                raise TableNotFoundError(
                    f"Table {name!r} has no version {version!r}; see `lakehouse tables`."
                ) from exc
            return None
        except OSError as exc:
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                return None
            raise

    def ensure(self, name: str, schema: pa.Schema | None = None) -> lance.LanceDataset:
        """Open a table, creating it empty (with its schema) if it does not exist yet."""
        import lance

        ds = self.dataset(name)
        if ds is not None:
            return self._evolve(name, ds, schema or self.schema(name))
        schema = schema or self.schema(name)
        try:
            return lance.write_dataset(
                schema.empty_table(),
                self.table_uri(name),
                mode="create",
                storage_options=self.config.storage_options or None,
            )
        except OSError as exc:
            if "already exists" not in str(exc):
                raise
            ds = self.dataset(name)
            assert ds is not None
            return ds

    def _evolve(self, name: str, ds: lance.LanceDataset, schema: pa.Schema) -> lance.LanceDataset:
        """Add (as nulls) the columns a newer version of the code expects; never drop any."""
        missing = [f for f in schema if f.name not in ds.schema.names]
        if not missing:
            return ds
        try:
            ds.add_columns(missing)
        except OSError as exc:  # another writer added them first
            if "already exists" not in str(exc) and "duplicate" not in str(exc).lower():
                raise
        return self.dataset(name)

    def lancedb_table(self, name: str) -> Any:
        """A LanceDB handle on a table (for search), or None if it does not exist. Handles are
        cached and re-check the table version on every read, so writes made by other
        processes are seen."""
        if name not in self._lancedb_tables:
            if not self.exists(name):
                return None
            self._lancedb_tables[name] = self._db().open_table(name)
        return self._lancedb_tables[name]

    def _db(self) -> Any:
        if self._lancedb is None:
            import datetime as dt

            import lancedb

            self._lancedb = lancedb.connect(
                self.root,
                read_consistency_interval=dt.timedelta(0),
                storage_options=self.config.storage_options or None,
            )
        return self._lancedb

    def exists(self, name: str) -> bool:
        return self.dataset(name) is not None

    def table_names(self) -> list[str]:
        """Tables that exist under the root, known ones first."""
        names = [n for n in [*schemas.TABLES, *schemas.DYNAMIC_TABLES] if self.exists(n)]
        if self.config.is_local and os.path.isdir(self.root):
            found = [e[: -len(".lance")] for e in os.listdir(self.root) if e.endswith(".lance")]
        elif not self.config.is_local:  # an object store: list the prefix (one request)
            found, token = [], None
            while True:
                page = self._db().list_tables(page_token=token)
                found += list(page.tables)
                token = page.page_token
                if not token:
                    break
        else:
            found = []
        names.extend(sorted(n for n in found if n not in names))
        return names

    def info(self) -> list[TableInfo]:
        out = []
        for name in self.table_names():
            ds = self.dataset(name)
            if ds is not None:
                out.append(TableInfo(name, ds.count_rows(), ds.version, self.table_uri(name)))
        return out

    def versions(self) -> dict[str, int]:
        """The current version of every existing table."""
        return {t.name: t.version for t in self.info()}

    # -- reads --------------------------------------------------------------------------
    def read(
        self,
        name: str,
        *,
        columns: Sequence[str] | None = None,
        filter: str | None = None,
        version: int | str | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """Read a table (or an empty one with its schema if it does not exist)."""
        ds = self.dataset(name, version=version)
        if ds is None:
            empty = self.schema(name).empty_table()
            return empty.select(list(columns)) if columns else empty
        return ds.to_table(columns=list(columns) if columns else None, filter=filter, limit=limit)

    def count(self, name: str, filter: str | None = None) -> int:
        ds = self.dataset(name)
        return 0 if ds is None else ds.count_rows(filter=filter)

    # -- writes -------------------------------------------------------------------------
    def to_arrow(
        self,
        name: str,
        rows: Sequence[Mapping[str, Any]] | pa.Table,
        schema: pa.Schema | None = None,
    ) -> pa.Table:
        import pyarrow as pa

        schema = schema or self.schema(name)
        if isinstance(rows, pa.Table):
            return rows.select(schema.names).cast(schema)
        return pa.Table.from_pylist([_clean_row(r, schema.names) for r in rows], schema=schema)

    def upsert(
        self,
        name: str,
        rows: Sequence[Mapping[str, Any]] | pa.Table,
        *,
        update: bool = True,
        schema: pa.Schema | None = None,
    ) -> WriteResult:
        """Insert rows whose key is new; with ``update``, replace rows whose key exists."""
        data = self.to_arrow(name, rows, schema)
        if data.num_rows == 0:
            return WriteResult(name)
        ds = self.ensure(name, data.schema)
        builder = ds.merge_insert(schemas.primary_key(data.schema))
        if update:
            builder = builder.when_matched_update_all()
        stats = _execute(builder.when_not_matched_insert_all(), data)
        return WriteResult(
            name,
            inserted=stats["num_inserted_rows"],
            updated=stats["num_updated_rows"],
            version=self.dataset(name).version,
        )

    def sync(
        self,
        name: str,
        rows: Sequence[Mapping[str, Any]] | pa.Table,
        *,
        scope: str,
        compare: bool = True,
        delete: bool = True,
        schema: pa.Schema | None = None,
    ) -> WriteResult:
        """Make the rows matching ``scope`` equal to ``rows`` in one commit.

        New keys are inserted, keys whose content changed are updated (``compare``), and keys
        within ``scope`` that ``rows`` no longer holds are deleted (unless ``delete`` is false).
        Unchanged rows are not rewritten, so a re-run that finds nothing new commits nothing.
        """
        data = self.to_arrow(name, rows, schema)
        schema = data.schema
        key = schemas.primary_key(schema)
        ds = self.ensure(name, schema)
        columns = [f.name for f in schema if compare or f.name == key]
        if compare:
            import pyarrow as pa

            columns = [
                c
                for c in columns
                if c not in VOLATILE_COLUMNS and not pa.types.is_binary(schema.field(c).type)
            ]
        existing = ds.to_table(columns=columns, filter=scope)
        old = {row[key]: row for row in existing.to_pylist()}
        new_keys = data.column(key).to_pylist()
        stale = set(old) - set(new_keys) if delete else set()
        wanted = []
        for i, k in enumerate(new_keys):
            if k not in old:
                wanted.append(i)
            elif compare:
                row = {c: data.column(c)[i].as_py() for c in columns}
                if not _rows_equal(row, old[k]):
                    wanted.append(i)
        if not wanted and not stale:
            return WriteResult(name, version=ds.version)
        source = data.take(wanted) if wanted else schema.empty_table()
        builder = ds.merge_insert(key).when_matched_update_all().when_not_matched_insert_all()
        if stale:
            builder = builder.when_not_matched_by_source_delete(
                f"({scope}) AND {in_list(key, stale)}"
            )
        stats = _execute(builder, source)
        return WriteResult(
            name,
            inserted=stats["num_inserted_rows"],
            updated=stats["num_updated_rows"],
            deleted=stats["num_deleted_rows"],
            version=self.dataset(name).version,
        )

    # -- conveniences ----------------------------------------------------------------
    def sql(self, query: str, params: Any = None, **kwargs: Any) -> pa.Table:
        """Run one read-only SQL query over the tables and views (see ``lakehouse.sql``)."""
        from lakehouse.sql import run_sql

        return run_sql(self, query, params, **kwargs)

    def ingest(
        self,
        folder: str | os.PathLike[str],
        *,
        source: str | None = None,
        annotations: Sequence[str] | None = None,
        viewpoint: str | None = None,
        run_id: str | None = None,
    ) -> list[Any]:
        """Register ``folder`` as a source and run every ingest stage on it (no Dagster)."""
        from lakehouse.pipeline import run_stages
        from lakehouse.sources import register_source

        src = register_source(
            self, folder, name=source, annotations=annotations, viewpoint=viewpoint
        )
        return run_stages(self, src, run_id=run_id)

    def search(self, text: str | None = None, **kwargs: Any) -> pa.Table:
        """Semantic search over clips; see :func:`lakehouse.search.search`."""
        from lakehouse.search import search

        return search(self, text, **kwargs)

    # -- subsets --------------------------------------------------------------------------
    def materialize_subset(self, name: str, params: Mapping[str, Any] | None = None) -> Any:
        """Record the next version of subset ``name`` (without Dagster); see
        :func:`lakehouse.subsets.materialize_subset`."""
        from lakehouse.subsets import materialize_subset

        return materialize_subset(self, name, params)

    def reproduce_subset(self, name: str, version: int | None = None) -> Any:
        from lakehouse.subsets import reproduce_subset

        return reproduce_subset(self, name, version)

    def export_subset(self, name: str, *, fmt: str, out: str, **kwargs: Any) -> Any:
        from lakehouse.export import export_subset

        return export_subset(self, name, fmt=fmt, out=out, **kwargs)

    def cleanup(self, older_than_s: float = 7 * 86400) -> dict[str, int]:
        """Delete table versions older than ``older_than_s`` seconds, except tagged ones (the
        versions subsets pin) and each table's latest. Returns bytes removed per table."""
        import datetime as dt

        removed: dict[str, int] = {}
        for name in self.table_names():
            ds = self.dataset(name)
            if ds is None:
                continue
            stats = ds.cleanup_old_versions(
                older_than=dt.timedelta(seconds=older_than_s), error_if_tagged_old_versions=False
            )
            removed[name] = stats.bytes_removed
        return removed

    def delete(self, name: str, predicate: str) -> int:
        ds = self.dataset(name)
        if ds is None:
            return 0
        before = ds.count_rows()
        ds.delete(predicate)
        return before - self.dataset(name).count_rows()


# Past this much new data a merge joins by scanning the table's keys instead of looking them up
# in the key's btree index: Lance's index lookup holds the whole source in a hash table that
# cannot spill, and fails beyond its 300 MB memory pool (100k clip rows on a 10M-row table);
# the scan join is as fast at that size.
INDEXED_MERGE_MAX_BYTES = 32 * 1024 * 1024


def _execute(builder: Any, data: pa.Table) -> dict[str, int]:
    # Lance retries optimistic-concurrency conflicts itself; a transient I/O error gets a few
    # more tries with backoff before the step fails loudly.
    if data.nbytes > INDEXED_MERGE_MAX_BYTES:
        builder = builder.use_index(False)
    delay = 0.2
    for attempt in range(4):
        try:
            return builder.execute(data)
        except OSError as exc:
            if attempt == 3 or "conflict" not in str(exc).lower():
                raise
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _clean_row(row: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {n: row.get(n) for n in names}


def _rows_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    for k, v in a.items():
        w = b.get(k)
        if isinstance(v, float) and isinstance(w, float):
            if math.isnan(v) and math.isnan(w):
                continue
            if v != w:
                return False
        elif v != w:
            return False
    return True
