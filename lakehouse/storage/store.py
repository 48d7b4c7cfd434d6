"""The lakehouse handle: one Lance dataset per table under the root, written by merging on keys.

Every write is a ``merge_insert`` on the table's primary key, so re-running a step never adds
duplicate rows; :meth:`Lakehouse.sync` additionally updates rows whose content changed and
deletes rows that a step no longer produces within its scope (one source, one stage…).

Concurrency: the key field carries Lance's unenforced-primary-key metadata, so two writers
inserting the same new key at once conflict and the loser retries as an update (measured: 4
processes × 15 overlapping merges leave exactly one row per key). Every commit runs through
:func:`commit_with_retry`: retryable conflicts are retried from the latest version with jittered
exponential backoff; an incompatible one (the table overwritten or restored meanwhile) raises
:class:`~lakehouse.errors.WriteConflictError`.

Readers see a table's *published* version (see "the reading path" below), writers its latest.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from lakehouse import schemas
from lakehouse.config import Config
from lakehouse.errors import TableNotFoundError, WriteConflictError

if TYPE_CHECKING:
    import lance
    import pyarrow as pa

# Columns that record when/who wrote a row; a row whose other columns are unchanged is not
# rewritten just because these differ.
VOLATILE_COLUMNS = frozenset(
    {"run_id", "probed_at", "quarantined_at", "updated_at", "registered_at", "created_at"}
)

# The publication record (one row: which version of every table readers see) and the tag that
# also marks each published version, so that Lance's own cleanup keeps it (lakehouse.publish).
PUBLICATION = "_publication"
PUBLISHED_TAG = "published"

log = logging.getLogger(__name__)
T = TypeVar("T")


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


@dataclass(frozen=True)
class TableInfo:
    name: str
    rows: int
    version: int
    uri: str
    published: int | None = None  # the version readers see, when the table has been published


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
        self._lancedb_tables: dict[tuple[str, bool], Any] = {}
        self._lancedb_pins: dict[str, int | None] = {}  # reader handles checked out at a version
        self._publication: tuple[lance.LanceDataset, dict[str, int]] | None = None
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
        from lakehouse.locks import lakehouse_lock

        # Creation serializes (local roots): two writers creating one table at once could both
        # pass Lance's "create" check, and the second commit landed as an Overwrite of the first
        # table — an incompatible change for every merge begun on it (seen in a CI run), and
        # a loss of any rows merged in between.
        with lakehouse_lock(self, f"create-{name}"):
            ds = self.dataset(name)
            if ds is not None:
                return self._evolve(name, ds, schema)
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
        """Add (as nulls) the columns a newer version of the code expects; never drop any.

        Writers racing to add the same columns conflict (measured on lance 14: the losers get a
        retryable conflict, or "already exists"); each re-reads the latest schema and adds only
        what is still missing, under a lock on local roots."""
        if all(f.name in ds.schema.names for f in schema):
            return ds
        from lakehouse.locks import lakehouse_lock

        with lakehouse_lock(self, f"schema-{name}"):

            def add_missing() -> None:
                latest = self.dataset(name)
                missing = [f for f in schema if f.name not in latest.schema.names]
                if missing:
                    try:
                        latest.add_columns(missing)
                    except OSError as exc:
                        if "already exists" not in str(exc):
                            raise

            commit_with_retry(name, add_missing)
        return self.dataset(name)

    def lancedb_table(self, name: str, *, latest: bool = False) -> Any:
        """A LanceDB handle on a table, or None if it does not exist.

        By default the handle readers use (search): at the table's published version, re-checked
        on every call. ``latest=True`` gives the handle writers use (index builds), which follows
        the latest version and re-checks it on every read. Either way writes made by other
        processes are seen."""
        key = (name, latest)
        if key not in self._lancedb_tables:
            if not self.exists(name):
                return None
            self._lancedb_tables[key] = self._db().open_table(name)
        table = self._lancedb_tables[key]
        if not latest:
            published = self.published_version(name)
            newest = self.dataset(name).version
            pinned = published if published is not None and published != newest else None
            if pinned != self._lancedb_pins.get(name):
                if pinned is None:
                    table.checkout_latest()
                else:
                    table.checkout(pinned)
                self._lancedb_pins[name] = pinned
        return table

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
        """Tables that exist under the root, known ones first (internal ``_`` datasets, such as
        the publication record, are not tables)."""
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
        names.extend(sorted(n for n in found if n not in names and not n.startswith("_")))
        return names

    def info(self) -> list[TableInfo]:
        out = []
        publication = self.publication()
        for name in self.table_names():
            ds = self.dataset(name)
            if ds is not None:
                out.append(
                    TableInfo(
                        name,
                        ds.count_rows(),
                        ds.version,
                        self.table_uri(name),
                        publication.get(name),
                    )
                )
        return out

    def versions(self) -> dict[str, int]:
        """The latest version of every existing table (no row counts: cheap enough per query)."""
        return {name: stamp[0] for name, stamp in self.version_stamps().items()}

    def version_stamps(self) -> dict[str, tuple[int, int]]:
        """(latest version, its commit time in ns) of every existing table: unlike the version
        alone, it also tells a table deleted and written anew under the same version numbers."""
        out = {}
        for name in self.table_names():
            ds = self.dataset(name)
            if ds is not None:
                out[name] = (ds.version, _commit_time(ds))
        return out

    # -- the reading path: which version of each table readers see --------------------------
    # Writers (the ingest and embedding stages and their checks) work on a table's latest
    # version. Readers (SQL sessions, search, subsets, exports) see its *published* version,
    # named by the publication record: one row in the internal `_publication` dataset mapping
    # every pipeline table to a version, replaced in a single commit by lakehouse.publish only
    # after the blocking checks passed on exactly those versions — so readers switch from one
    # checked snapshot to the next all at once, never seeing some tables new and others old. A
    # table the record does not name (never published, or written only through upsert/sync,
    # e.g. subsets) reads at its latest version, so the embedded default needs no extra step.
    # Every reader goes through published_dataset / lancedb_table.
    def publication(self) -> dict[str, int]:
        """The published version of every published table (empty before any publication)."""
        import json

        # The record is read once per version of it: a search asks for it on every query, and
        # checking the latest version of an open dataset costs far less than opening it again.
        cached = self._publication
        try:
            if cached is not None:
                latest = cached[0].latest_version
                if latest == cached[0].version:
                    return dict(cached[1])
                ds = cached[0].checkout_version(latest)
            else:
                ds = self.dataset(PUBLICATION)
        except (OSError, ValueError):  # the root was replaced under us: open it afresh
            ds = self.dataset(PUBLICATION)
        if ds is None:
            self._publication = None
            return {}
        rows = ds.to_table(columns=["versions_json"]).column("versions_json").to_pylist()
        versions = {k: int(v) for k, v in json.loads(rows[0]).items()} if rows else {}
        self._publication = (ds, versions)
        return dict(versions)

    def published_version(self, name: str) -> int | None:
        """The version of ``name`` readers see; None if it was never published."""
        return self.publication().get(name)

    def published_dataset(
        self, name: str, publication: Mapping[str, int] | None = None
    ) -> lance.LanceDataset | None:
        """The table as readers see it: at its published version, else at its latest. Pass
        ``publication`` (from :meth:`publication`) to open several tables of one snapshot."""
        ds = self.dataset(name)
        if ds is None:
            return None
        version = (self.publication() if publication is None else publication).get(name)
        if version is None or version == ds.version:
            return ds
        return ds.checkout_version(version)

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

    def read_sorted(
        self,
        name: str,
        *,
        columns: Sequence[str],
        order_by: Sequence[str],
        filter: str | None = None,
        batch_rows: int = 20_000,
        memory_mb: int | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream a table's rows sorted by ``order_by``, in batches of ``batch_rows``
        (:meth:`stream_query`: the sort spills to disk, so a table of any size is sorted in
        bounded memory)."""
        order = ", ".join(f'"{c}"' for c in order_by)
        yield from self.stream_query(
            f"SELECT * FROM rows_to_sort ORDER BY {order}",
            {"rows_to_sort": (name, columns, filter)},
            batch_rows=batch_rows,
            memory_mb=memory_mb,
        )

    def stream_query(
        self,
        query: str,
        scans: Mapping[str, tuple[str, Sequence[str], str | None]],
        *,
        params: Sequence[Any] | None = None,
        batch_rows: int = 20_000,
        memory_mb: int | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream the result of a DuckDB ``query`` over Lance scans, in batches of
        ``batch_rows``, in bounded memory: the query runs under ``memory_mb`` (default
        ``ingest.sort_memory_mb``; a stage that holds several streams open splits it) and
        its sorts, joins and aggregates spill to a temporary folder past it. ``scans`` maps
        each name the query reads to ``(table, columns, filter)``: a streaming scan of the
        table's latest version (an empty one where the table does not exist yet), which the
        query may read once. A stage plans its work with it (what to compute, what is stale)
        without holding a source's rows as Python objects; the plan's inputs are read before
        its first row comes back where the query sorts, so the stage may write the same tables
        while it iterates."""
        import tempfile

        import duckdb
        import pyarrow as pa

        readers = {}
        for alias, (table, columns, flt) in scans.items():
            ds = self.dataset(table)
            if ds is None:
                empty = self.schema(table).empty_table().select(list(columns))
                readers[alias] = pa.RecordBatchReader.from_batches(empty.schema, [])
            else:
                readers[alias] = ds.scanner(
                    columns=list(columns), filter=flt, **BOUNDED_SCAN
                ).to_reader()
        limit = memory_mb or self.config.ingest.sort_memory_mb
        with tempfile.TemporaryDirectory(prefix="lakehouse-sort-") as spill:
            con = duckdb.connect(
                config={
                    "memory_limit": f"{limit}MB",
                    "temp_directory": spill,
                    # each thread of a sort needs its own working memory before it can spill
                    # (wide rows of 3M clips failed at 81 MB a thread, passed at 128)
                    "threads": str(
                        max(1, min(self.config.sql.threads, limit // SORT_MB_PER_THREAD))
                    ),
                }
            )
            try:
                for alias, reader in readers.items():
                    con.register(alias, reader)
                result = con.execute(query, params) if params else con.sql(query)
                yield from result.to_arrow_reader(batch_rows)
            finally:
                con.close()

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
        self.ensure(name, data.schema)
        key = schemas.primary_key(data.schema)

        def merge() -> dict[str, int]:
            builder = self.dataset(name).merge_insert(key)
            if update:
                builder = builder.when_matched_update_all()
            return _merge(builder.when_not_matched_insert_all(), data)

        stats = commit_with_retry(name, merge)
        return WriteResult(
            name,
            inserted=stats["num_inserted_rows"],
            updated=stats["num_updated_rows"],
            version=self.dataset(name).version,
            attempts=stats["attempts"],
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
        """Make the rows matching ``scope`` equal to ``rows`` (one commit when they fit in one
        flush: :data:`SYNC_FLUSH_ROWS`). See :meth:`sync_batches`."""
        return self.sync_batches(
            name, [rows], scope=scope, compare=compare, delete=delete, schema=schema
        )

    def sync_batches(
        self,
        name: str,
        batches: Iterable[Sequence[Mapping[str, Any]] | pa.Table],
        *,
        scope: str,
        compare: bool = True,
        delete: bool = True,
        schema: pa.Schema | None = None,
    ) -> WriteResult:
        """Make the rows matching ``scope`` equal to the rows of ``batches``, streaming.

        New keys are inserted, keys whose content changed are updated (``compare``), and keys
        within ``scope`` that no batch holds are deleted (unless ``delete`` is false). Unchanged
        rows are not rewritten, so a re-run that finds nothing new commits nothing. A key given
        twice keeps its last row.

        Memory holds one batch, the changed rows waiting for their commit (at most
        :data:`SYNC_FLUSH_ROWS`), and the keys of the rows in ``scope`` with a 128-bit hash of
        each one's content, never the rows themselves. Changed rows are merged every
        :data:`SYNC_FLUSH_ROWS`; the last merge also deletes the stale keys, so a sync that fits
        one flush is one commit. A larger one is several commits, each idempotent: a run that
        stopped half way is completed by the next (readers see published versions only).
        """
        import numpy as np
        import polars as pl
        import pyarrow as pa

        schema = schema or self.schema(name)
        key = schemas.primary_key(schema)
        ds = self.ensure(name, schema)
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
                builder = self.dataset(name).merge_insert(key)
                builder = builder.when_matched_update_all().when_not_matched_insert_all()
                if stale:
                    builder = builder.when_not_matched_by_source_delete(
                        f"({scope}) AND {in_list(key, stale)}"
                    )
                return _merge(builder, data)

            stats = commit_with_retry(name, merge)
            for k in totals:
                totals[k] += stats[k]
            attempts += stats["attempts"]

        for rows in batches:
            data = self.to_arrow(name, rows, schema)
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
            commit_with_retry(name, lambda p=predicate: self.dataset(name).delete(p))
            totals["num_deleted_rows"] += len(part)
            attempts += 1
        if pending or stale:
            commit(pa.concat_tables(pending) if pending else schema.empty_table(), stale)
        return WriteResult(
            name,
            inserted=totals["num_inserted_rows"],
            updated=totals["num_updated_rows"],
            deleted=totals["num_deleted_rows"],
            version=self.dataset(name).version,
            attempts=max(attempts, 1),
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

    def signals(self, source: str | None = None, *, run_id: str | None = None) -> list[Any]:
        """Hand, body, face and quality signals of the clips lacking them (MediaPipe), then the
        predicted viewpoints and near-duplicate clusters over every source (no Dagster; the
        ``signals_job`` and ``curation`` jobs run the same functions). Each group of tables is
        published (readers see it) only after its blocking checks passed. Returns each stage's
        result; see docs/signals.md."""
        import uuid

        from lakehouse.duplicates import find_near_duplicates
        from lakehouse.publish import CURATION_TABLES, SIGNAL_TABLES, publish
        from lakehouse.signals import compute_signals
        from lakehouse.sources import get_source, list_sources
        from lakehouse.viewpoint import predict_viewpoints

        run_id = run_id or uuid.uuid4().hex
        sources = [get_source(self, source)] if source else list_sources(self)
        results = [compute_signals(self, src, run_id=run_id) for src in sources]
        publish(self, SIGNAL_TABLES)  # readers see the signals once their checks passed
        results.append(predict_viewpoints(self, run_id=run_id))
        results.append(find_near_duplicates(self, run_id=run_id))
        publish(self, CURATION_TABLES)
        return results

    def search(self, text: str | None = None, **kwargs: Any) -> pa.Table:
        """Semantic search over clips; see :func:`lakehouse.search.search`. The published
        vector tables it reads are leased for the search, so cleanup keeps them."""
        from lakehouse.readers import reading
        from lakehouse.search import search

        versions = {}
        publication = self.publication()
        for name in schemas.DYNAMIC_TABLES:
            ds = self.published_dataset(name, publication)
            if ds is not None:
                versions[name] = ds.version
        with reading(self, versions):
            return search(self, text, **kwargs)

    def contact_sheet(self, clips: Any, **kwargs: Any) -> Any:
        """The keyframes of ``clips`` (search hits, or any table with ``clip_id``) on one
        self-contained HTML page that notebooks show inline; see
        :func:`lakehouse.contact_sheet.contact_sheet`."""
        from lakehouse.contact_sheet import contact_sheet

        return contact_sheet(self, clips, **kwargs)

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
        """Delete table versions older than ``older_than_s`` seconds, except each table's latest
        and published versions, tagged ones (the versions subsets pin) and the versions running
        readers hold (:mod:`lakehouse.readers`). Returns bytes removed per table."""
        import datetime as dt

        from lakehouse import mirror
        from lakehouse.locks import lakehouse_lock
        from lakehouse.readers import CLEANUP_LOCK, held_versions

        removed: dict[str, int] = {}
        with lakehouse_lock(self, CLEANUP_LOCK):
            held = held_versions(self)
            publication = self.publication()
            cutoff = dt.datetime.now() - dt.timedelta(seconds=older_than_s)
            for name in self.table_names():
                ds = self.dataset(name)
                if ds is None:
                    continue
                tagged = {int(t["version"]) for t in ds.tags.list().values()}
                keep = tagged | held.get(name, set()) | {ds.version}
                if name in publication:
                    keep.add(publication[name])
                old = [
                    v["version"]
                    for v in ds.versions()
                    if v["timestamp"] < cutoff and v["version"] not in keep
                ]
                if not old:
                    removed[name] = 0
                    continue
                stats = ds.cleanup_old_versions(versions=old, error_if_tagged_old_versions=False)
                removed[name] = stats.bytes_removed
            mirror.prune(self)
        return removed

    def delete(self, name: str, predicate: str) -> int:
        """Delete the rows matching ``predicate``; returns how many went."""
        ds = self.dataset(name)
        if ds is None:
            return 0
        matching = ds.count_rows(filter=predicate)
        if matching:
            commit_with_retry(name, lambda: self.dataset(name).delete(predicate))
        return matching


# Past this much new data a merge joins by scanning the table's keys instead of looking them up
# in the key's btree index: Lance's index lookup holds the whole source in a hash table that
# cannot spill, and fails beyond its 300 MB memory pool (100k clip rows on a 10M-row table);
# the scan join is as fast at that size.
INDEXED_MERGE_MAX_BYTES = 32 * 1024 * 1024


# -- commits -----------------------------------------------------------------------------------
RETRYABLE_CONFLICTS = (
    "retryable commit conflict",
    "preempted by concurrent transaction",
    "too many concurrent writers",
)
INCOMPATIBLE_CONFLICTS = ("incompatible transaction",)
COMMIT_ATTEMPTS = 8
BACKOFF_S = 0.05
BACKOFF_MAX_S = 3.0


def _commit_time(ds: lance.LanceDataset) -> int:
    """When the dataset's current version was committed (ns), 0 where pylance cannot say."""
    try:
        return int(ds._ds.current_version()["timestamp"])  # one manifest already read
    except (AttributeError, KeyError, TypeError, ValueError):
        return 0


def conflict_kind(exc: BaseException) -> str | None:
    """``"retryable"``, ``"incompatible"`` or None (not a commit conflict) for a Lance error."""
    from lance.commit import CommitConflictError

    text = str(exc).lower()
    if any(m in text for m in INCOMPATIBLE_CONFLICTS):
        return "incompatible"
    if isinstance(exc, CommitConflictError) or any(m in text for m in RETRYABLE_CONFLICTS):
        return "retryable"
    return None


def commit_with_retry(
    table: str, attempt: Callable[[], T], *, attempts: int = COMMIT_ATTEMPTS
) -> T:
    """Run one commit; ``attempt`` must start from the table's latest version every time.

    A retryable conflict (another writer committed first and Lance could not rebase over it) is
    retried after a jittered exponential backoff (0.05 s, 0.1 s, … capped at 3 s). An incompatible
    one — the table was overwritten or restored meanwhile — raises WriteConflictError at once:
    applying the step on top of such a change would silently undo or mix it. Merge statistics
    (a dict result) gain ``attempts``.
    """
    delay = BACKOFF_S
    for n in range(1, attempts + 1):
        try:
            result = attempt()
        except (OSError, RuntimeError) as exc:  # lancedb reports lance errors as RuntimeError
            kind = conflict_kind(exc)
            if kind is None:
                raise
            detail = str(exc).split(", /")[0].strip()
            if kind == "incompatible":
                raise WriteConflictError(
                    f"Table {table} was changed incompatibly by another writer while this step "
                    f"wrote it ({detail}); nothing was committed: check who overwrote or restored "
                    "it, then re-run the step."
                ) from None
            if n == attempts:
                raise WriteConflictError(
                    f"Table {table} still conflicted with concurrent writers after {attempts} "
                    f"attempts ({detail}); nothing was committed: re-run the step."
                ) from None
            pause = delay * (0.5 + random.random())
            log.info(
                "commit conflict on %s (attempt %d/%d); retrying in %.2f s",
                table,
                n,
                attempts,
                pause,
            )
            time.sleep(pause)
            delay = min(delay * 2, BACKOFF_MAX_S)
        else:
            if isinstance(result, dict):
                result["attempts"] = n
            return result
    raise AssertionError("unreachable")


# A sync merges its changed rows every SYNC_FLUSH_ROWS rows, and deletes stale keys in filters of
# at most SYNC_DELETE_KEYS keys; between flushes it holds only the scope's keys and row hashes.
SYNC_FLUSH_ROWS = 100_000
# Scan options of the streaming reads (the sync's hashes, read_sorted): small batches and a short
# read-ahead (Lance's default read-ahead held ~0.9 GB of 1M annotation rows)
BOUNDED_SCAN: dict[str, int] = {"batch_size": 16_384, "batch_readahead": 2, "fragment_readahead": 1}
SYNC_DELETE_KEYS = 10_000
SORT_MB_PER_THREAD = 128


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


def _merge(builder: Any, data: pa.Table) -> dict[str, int]:
    # Lance's own retry loop is switched off so that every conflict comes back here, where it is
    # retried with backoff from the latest version (and counted): the outcome is the same.
    if data.nbytes > INDEXED_MERGE_MAX_BYTES:
        builder = builder.use_index(False)
    return dict(builder.conflict_retries(0).execute(data))


def _clean_row(row: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {n: row.get(n) for n in names}
