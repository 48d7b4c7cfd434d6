"""The storage handle: one Lance dataset per table under the root, written by merging on keys.

Every write is a ``merge_insert`` on the table's primary key, so re-running a step never adds
duplicate rows; :meth:`Store.sync` additionally updates rows whose content changed and deletes
rows that a step no longer produces within its scope (one source, one stage…). Every commit runs
through :func:`lakehouse.storage.commits.commit_with_retry`.

Readers see a table's *published* version (see "the reading path" below), writers its latest.
The user's facade, :class:`lakehouse.api.Lakehouse`, is a Store with verbs on top.

Creating a table takes the ``create-<table>`` lock (local roots): Lance checks that a table does
not exist before it writes, and a creator that passed that check while another one committed
lands as an Overwrite of the other's table (``tests/test_locks.py``). Adding the columns a newer
code version expects takes no lock: a writer that adds them from a version another writer has
already evolved gets a retryable conflict from Lance (two schema changes never merge), and its
retry re-reads the latest schema and adds only what is still missing, so racing writers add each
column exactly once (``tests/test_locks.py`` races two of them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakehouse.core import schemas
from lakehouse.core.config import Config
from lakehouse.core.errors import TableNotFoundError
from lakehouse.core.locks import lakehouse_lock
from lakehouse.core.schemas import PUBLICATION
from lakehouse.storage.cleanup import cleanup
from lakehouse.storage.commits import commit_with_retry, run_merge
from lakehouse.storage.streams import read_sorted, stream_query
from lakehouse.storage.sync import sync_batches
from lakehouse.storage.writes import WriteResult, to_arrow

if TYPE_CHECKING:
    import lance
    import pyarrow as pa


@dataclass(frozen=True)
class TableInfo:
    name: str
    rows: int
    version: int
    uri: str
    published: int | None = None  # the version readers see, when the table has been published


class Store:
    """A lakehouse root: tables are ``<root>/<name>.lance``, one Lance dataset each."""

    def __init__(self, config: Config):
        self.config = config
        self.root = config.root
        self._lancedb: Any = None
        self._lancedb_tables: dict[tuple[str, bool], Any] = {}
        self._lancedb_pins: dict[str, int | None] = {}  # reader handles checked out at a version
        self._publication: tuple[lance.LanceDataset, dict[str, int]] | None = None
        # what the layers above keep per handle and drop with it (the SQL session run_sql
        # reuses, the vector tables search queries), by the name of the module that keeps it
        self.caches: dict[str, Any] = {}
        if config.is_local:
            os.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"Store(root={self.root!r})"

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
        what is still missing. No lock: see the module docstring."""
        if all(f.name in ds.schema.names for f in schema):
            return ds

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
    # named by the publication record (lakehouse.storage.published): one row in the internal
    # `_publication` dataset mapping every pipeline table to a version, replaced in a single
    # commit by lakehouse.publication.publish only after the blocking checks passed on exactly
    # those versions — so readers switch from one checked snapshot to the next all at once,
    # never seeing some tables new and others old. A
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

    # the streaming reads, the streaming sync and version cleanup are functions of a store, kept
    # in their own modules; these make them its methods (the store is their first argument)
    read_sorted = read_sorted
    stream_query = stream_query
    sync_batches = sync_batches
    cleanup = cleanup

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
        return to_arrow(schema or self.schema(name), rows)

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
            return run_merge(builder.when_not_matched_insert_all(), data)

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

    def delete(self, name: str, predicate: str) -> int:
        """Delete the rows matching ``predicate``; returns how many went."""
        ds = self.dataset(name)
        if ds is None:
            return 0
        matching = ds.count_rows(filter=predicate)
        if matching:
            commit_with_retry(name, lambda: self.dataset(name).delete(predicate))
        return matching


def _commit_time(ds: lance.LanceDataset) -> int:
    """When the dataset's current version was committed (ns), 0 where pylance cannot say."""
    try:
        return int(ds._ds.current_version()["timestamp"])  # one manifest already read
    except (AttributeError, KeyError, TypeError, ValueError):
        return 0
