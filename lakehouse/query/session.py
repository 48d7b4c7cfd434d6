"""DuckDB over the lakehouse: every Lance table is a view, plus the views in ``sql/views``.

User SQL runs in a locked-down connection: the Lance datasets are registered first, then
external access is switched off and the configuration locked (in that order — DuckDB refuses
the combination in ``connect(config=…)``). The connection cannot read or write files, install
or load extensions, attach databases or change settings; a statement must be a single query
(``SELECT``/``WITH``/``DESCRIBE``/``EXPLAIN``), and it runs under a memory and a time limit.

Three more walls (the "SQL attack matrix" of docs/guide.md):

- before DuckDB runs anything, the parsed query is walked and refused
  (:mod:`lakehouse.query.guard`) if it calls a table function outside the allowed ones (file
  readers, ``query()``, settings, logs, secrets, ``checkpoint()``…), a scalar function that
  reads settings (``current_setting``…) or names a file as a table; the directories DuckDB
  would reveal are pointed at the session's own empty temporary folder;
- a result is streamed and refused once it passes ``sql.max_result_mb``;
- :func:`run_sql` with ``isolated=True`` (what ``lakehouse sql`` does) runs the query in a
  separate process under an address-space limit (``sql.process_memory_mb``) that is killed at
  the time limit, for the few DuckDB functions that neither the memory limit nor an interrupt
  can stop (``repeat('x', 1e9)`` allocates outside the buffer manager and ignores interrupts).

A table with a Parquet copy of the version opened (:mod:`lakehouse.storage.mirror`) is read from
that copy, the one folder ``allowed_directories`` leaves readable. A session reads each table at its
published version (``Store.published_dataset``) unless ``latest=True`` (the pipeline's
checks) or pinned ``versions`` are given, and holds a reader lease on the versions it opened
until it closes (:mod:`lakehouse.storage.leases`).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.core import schemas
from lakehouse.core.errors import (
    ModelUnavailableError,
    QueryError,
    QueryRefusedError,
    QueryTimeoutError,
)
from lakehouse.query.guard import check_statement
from lakehouse.query.isolated import run_isolated
from lakehouse.query.parse import first_line
from lakehouse.query.pushdown import pushed
from lakehouse.storage import mirror
from lakehouse.storage.scan import for_sql

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from lakehouse.storage.store import Store

VIEW_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class Session:
    """A DuckDB connection over one lakehouse (optionally pinned to table versions)."""

    def __init__(
        self,
        lh: Store,
        *,
        versions: Mapping[str, int | str] | None = None,
        locked: bool = True,
        latest: bool = False,
        views_dirs: Sequence[Path] | None = None,
        view_sql: Mapping[str, str] | None = None,
    ):
        import duckdb

        from lakehouse.storage.leases import ReaderLease

        self.lh = lh
        self.latest = latest
        settings = lh.config.sql
        self.tmp = tempfile.mkdtemp(prefix="lakehouse-duckdb-")
        self.con = duckdb.connect(
            ":memory:",
            config={
                "threads": settings.threads,
                "memory_limit": settings.memory_limit,
                "max_temp_directory_size": settings.temp_limit,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "temp_directory": self.tmp,
                # nothing in the session needs these folders; what a query could learn of them
                # is our own empty one (given at connect: DuckDB derives paths such as its
                # extension repositories from the home folder it starts with)
                "home_directory": self.tmp,
                "secret_directory": self.tmp,
                "extension_directory": self.tmp,
            },
        )
        self.versions: dict[str, int] = {}
        # tables served from their Parquet copy: name -> (copy view, Lance relation, null columns)
        self.mirrored: dict[str, tuple[str, str, str]] = {}
        self.datasets: dict[
            str, Any
        ] = {}  # the registered Lance datasets (lakehouse.query.pushdown)
        self.lease = ReaderLease(lh)
        with self.lease.registering():
            self.tables = self._register_tables(versions or {})
            self.lease.hold(self.versions)
        # the view texts this session was built from (a subset records them to reproduce)
        self.view_sql: dict[str, str] = (
            dict(view_sql)
            if view_sql is not None
            else read_views(views_dirs or [lh.config.sql_dirs["views"]])
        )
        self.views = self._create_views(self.view_sql)
        from lakehouse.query.semantic import SemanticFunctions

        self.semantic = SemanticFunctions(self)
        self.semantic.register()
        self.locked = locked
        _progress_bar_off(self.con)
        if locked:
            if self.mirrored:  # before external access goes: the folders it may still read
                from lakehouse.storage.filters import sql_literal

                allowed = ", ".join(
                    sql_literal(mirror.folder(self.lh, name) + os.sep) for name in self.mirrored
                )
                self.con.execute(f"SET allowed_directories = [{allowed}]")
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET allow_community_extensions = false")
            self.con.execute("SET lock_configuration = true")

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()
        self.lease.release()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _register_tables(self, versions: Mapping[str, int | str]) -> list[str]:
        known = [*schemas.TABLES, *schemas.DYNAMIC_TABLES]
        names = list(dict.fromkeys([*known, *self.lh.table_names()]))
        publication = {} if self.latest else self.lh.publication()  # one snapshot for all
        for name in names:
            # version 0 pins "the table did not exist yet": it reads as empty
            if versions.get(name) == 0:
                ds = None
            elif versions.get(name) is not None or self.latest:
                ds = self.lh.dataset(name, version=versions.get(name))
            else:
                ds = self.lh.published_dataset(name, publication)
            if ds is not None:
                self.versions[name] = ds.version
                self.datasets[name] = for_sql(ds)
                missing = (
                    [f for f in self.lh.schema(name) if f.name not in ds.schema.names]
                    if name in known
                    else []
                )
                files = mirror.parts(self.lh, name, ds.version)
                if files is not None:
                    self._register_mirrored(name, files, missing)
                elif missing:
                    self._register_with_new_columns(name, missing)
                else:
                    self.con.register(name, self.datasets[name])
            elif name in known:
                self.con.register(name, self.lh.schema(name).empty_table())
        return names

    def _register_with_new_columns(self, name: str, missing: list[pa.Field]) -> None:
        """Register a table version written before the code's schema gained ``missing`` (null in
        it, as they are after the table is evolved), so that the views compile on any version."""
        hidden = f"_{name}_v{self.versions[name]}"
        self.con.register(hidden, self.datasets[name])
        self.con.execute(f'CREATE VIEW "{name}" AS SELECT *{self._nulls(missing)} FROM "{hidden}"')

    def _register_mirrored(self, name: str, files: list[str], missing: list[pa.Field]) -> None:
        """Serve ``name`` from its Parquet copy (:mod:`lakehouse.storage.mirror`), keeping the Lance
        dataset registered for the queries :mod:`lakehouse.query.pushdown` sends to its indexes."""
        from lakehouse.storage.filters import sql_literal

        version = self.versions[name]
        lance_name, copy_name = f"_{name}_v{version}", f"_{name}_v{version}_copy"
        self.con.register(lance_name, self.datasets[name])
        listed = ", ".join(sql_literal(path) for path in files)
        self.con.execute(f'CREATE VIEW "{copy_name}" AS SELECT * FROM read_parquet([{listed}])')
        self.mirrored[name] = (copy_name, lance_name, self._nulls(missing))
        self.read_from(name, copy=True)

    def read_from(self, name: str, *, copy: bool) -> None:
        """Point the mirrored table ``name`` at its Parquet copy or at its Lance dataset."""
        copy_name, lance_name, nulls = self.mirrored[name]
        source = copy_name if copy else lance_name
        self.con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT *{nulls} FROM "{source}"')

    def _nulls(self, missing: list[pa.Field]) -> str:
        """``, CAST(NULL AS type) AS "col"`` for each of ``missing`` ("" for none)."""
        import pyarrow as pa

        if not missing:
            return ""
        types = self.con.from_arrow(pa.schema(missing).empty_table()).types
        return "".join(
            f', CAST(NULL AS {t}) AS "{f.name}"' for f, t in zip(missing, types, strict=True)
        )

    def _create_views(self, view_sql: Mapping[str, str]) -> list[str]:
        pending = dict(view_sql)
        created: list[str] = []
        # views may read each other: create in passes until nothing more resolves
        while pending:
            progress = False
            errors: dict[str, str] = {}
            for name, body in list(pending.items()):
                try:
                    self.con.execute(f"CREATE OR REPLACE VIEW {name} AS {_strip(body)}")
                except Exception as exc:  # retried next pass; reported if it never resolves
                    errors[name] = str(exc).splitlines()[0]
                else:
                    created.append(name)
                    del pending[name]
                    progress = True
            if not progress:
                name, message = next(iter(errors.items()))
                raise QueryError(f"View {name} in sql/views does not compile: {message}")
        return created

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> pa.Table:
        """Run one read-only statement with bound parameters; return an Arrow table."""
        import duckdb

        check_statement(sql)
        timeout = self.lh.config.sql.timeout_s if timeout_s is None else timeout_s
        timer = threading.Timer(timeout, self.con.interrupt)
        timer.daemon = True
        timer.start()
        try:
            with pushed(self, sql, params):
                return self._fetch(sql, params)
        except duckdb.InterruptException:
            raise QueryTimeoutError(
                f"Query ran past the {timeout:g} s time limit; narrow it or raise sql.timeout_s."
            ) from None
        except duckdb.PermissionException as exc:
            raise QueryRefusedError(f"Query refused: {first_line(exc)}.") from None
        except duckdb.OutOfMemoryException:
            raise QueryError(
                f"Query ran out of its {self.lh.config.sql.memory_limit} memory limit; "
                "select fewer rows or columns."
            ) from None
        except duckdb.InvalidInputException as exc:
            if "ModelUnavailableError: " in str(exc):
                message = str(exc).split("ModelUnavailableError: ", 1)[1].strip()
                raise ModelUnavailableError(message) from None
            if "QueryError: " in str(exc):  # raised inside a semantic function
                message = str(exc).split("QueryError: ", 1)[1].strip().splitlines()[0]
                raise QueryError(message) from None
            if "configuration has been locked" in str(exc):
                raise QueryRefusedError(
                    "Query refused: settings cannot be changed in the lakehouse SQL session."
                ) from None
            raise QueryError(f"Query failed: {first_line(exc)}") from None
        except duckdb.Error as exc:
            raise QueryError(f"Query failed: {first_line(exc)}") from None
        except (OverflowError, ValueError, TypeError) as exc:  # a value Arrow cannot hold
            if isinstance(exc, QueryError):
                raise
            raise QueryError(f"Query result cannot be converted: {first_line(exc)}") from None
        finally:
            timer.cancel()

    def _fetch(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> pa.Table:
        """The whole result, streamed in batches and refused once it passes sql.max_result_mb
        (DuckDB's memory limit does not cover the Arrow copy handed to Python). In a locked
        session it runs as exactly one statement, in a transaction rolled back afterwards
        (:meth:`_contained`)."""
        import pyarrow as pa

        cap = self.lh.config.sql.max_result_mb * 1024 * 1024
        with self._contained(sql):
            relation = self.con.sql(sql, params=params)
            if relation is None:
                raise QueryError("Query returned no result; pass one SELECT statement.")
            reader = relation.to_arrow_reader(65536)
            batches, size = [], 0
            try:
                for batch in reader:
                    size += batch.nbytes
                    if size > cap:
                        raise QueryError(
                            f"Query result is larger than sql.max_result_mb "
                            f"({self.lh.config.sql.max_result_mb} MB); add a LIMIT, select "
                            "fewer columns, or raise the setting."
                        )
                    batches.append(batch)
            finally:
                reader.close()
        return pa.Table.from_batches(batches, schema=reader.schema)

    @contextmanager
    def _contained(self, sql: str) -> Iterator[None]:
        """The engine's own wall around one query, whatever the guard let through: exactly one
        statement runs, inside a transaction that is rolled back after it (a view, macro, table
        or attached database it made is gone, a view it dropped is back), and the two things
        DuckDB's locked configuration still lets a statement change for the connection (the
        search path, variables) are reset."""
        import duckdb

        if not self.locked:
            yield
            return
        try:
            statements = self.con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(f"Query does not parse: {first_line(exc)}") from None
        if len(statements) != 1:
            raise QueryRefusedError(
                f"Query refused: pass exactly one statement (found {len(statements)} separated "
                "by ';')."
            )
        self.con.begin()
        try:
            yield
        finally:
            try:
                self.con.rollback()
            except duckdb.TransactionException:
                pass  # the statement ended the transaction itself (COMMIT, ROLLBACK)
            if statements[0].type.name not in ("SELECT", "EXPLAIN"):  # only these cannot SET
                self._restore()

    def _restore(self) -> None:
        """Reset the search path and drop any variable a statement set."""
        ((path, variables),) = self.con.execute(
            "SELECT current_setting('search_path'), (SELECT list(name) FROM duckdb_variables())"
        ).fetchall()
        if path:
            self.con.execute("RESET search_path")
        for name in variables or []:
            self.con.execute(f'RESET VARIABLE "{name}"')


def read_views(dirs: Sequence[Path]) -> dict[str, str]:
    """The view files of ``dirs`` as ``{name: sql}`` (file name = view name)."""
    views: dict[str, str] = {}
    for folder in dirs:
        for path in sorted(Path(folder).glob("*.sql")):
            name = path.stem
            if not VIEW_NAME.match(name):
                raise QueryError(f"View file {path} must be named like clip_facts.sql.")
            views[name] = path.read_text()
    return views


def run_sql(
    lh: Store,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    versions: Mapping[str, int | str] | None = None,
    timeout_s: float | None = None,
    isolated: bool = False,
) -> pa.Table:
    """Run one query in a locked session. With ``isolated`` the session lives in a separate
    process under hard memory and time limits (see the module docstring). Otherwise, without
    pinned ``versions``, the session is kept and reused while no table has a new version (nor a
    new published one, nor was written anew under the same version numbers) and the view files
    are unchanged: building one (a connection, every dataset registered, the views compiled)
    costs tens of milliseconds, as much as a selective query over millions of rows. A kept
    session holds its reader lease until it is replaced."""
    if isolated:
        return run_isolated(lh, sql, params, versions=versions, timeout_s=timeout_s)
    if versions is not None:
        with Session(lh, versions=versions) as session:
            return session.query(sql, params, timeout_s=timeout_s)
    views = read_views([lh.config.sql_dirs["views"]])
    key = (
        tuple(sorted(lh.publication().items())),
        tuple(sorted(lh.version_stamps().items())),
        tuple(sorted(views.items())),
    )
    with _SESSIONS_LOCK:
        cached = lh.caches.get(__name__)
        if cached is None or cached[0] != key:
            if cached is not None:
                with cached[2]:
                    cached[1].close()
            session = Session(lh, view_sql=views)
            weakref.finalize(session, shutil.rmtree, session.tmp, ignore_errors=True)
            cached = (key, session, threading.Lock())
            lh.caches[__name__] = cached
            _KEPT.add(lh)
    _, session, lock = cached
    with lock:
        return session.query(sql, params, timeout_s=timeout_s)


_SESSIONS_LOCK = threading.Lock()
_KEPT: weakref.WeakSet[Store] = weakref.WeakSet()  # handles holding a kept session


def close_kept_sessions() -> None:
    """Close the sessions ``run_sql`` keeps: run at interpreter exit, so no DuckDB connection is
    still alive when its module is torn down (DuckDB's bindings then print a screen of "leaked
    instance" warnings; the parser connection closes itself the same way)."""
    with _SESSIONS_LOCK:
        for lh in list(_KEPT):
            cached = lh.caches.pop(__name__, None)
            if cached is not None:
                with cached[2]:
                    cached[1].close()
        _KEPT.clear()


atexit.register(close_kept_sessions)


def read_query_arg(text: str) -> str:
    """A CLI argument is a query, or the path of a ``.sql`` file holding one."""
    if text.strip().lower().endswith(".sql") and "\n" not in text and os.path.isfile(text):
        return Path(text).read_text()
    return text


def _progress_bar_off(con: duckdb.DuckDBPyConnection) -> None:
    """Switch DuckDB's progress bar off where it is on. In a Jupyter kernel without ipywidgets
    DuckDB starts with it off and refuses any ``SET`` of it, so a notebook must not try."""
    import duckdb

    # fetchall, not fetchone: DuckDB 2.0 keeps a result fetched in part open, and the next
    # statement on the connection fails ("connection has an unfinished result")
    ((enabled,),) = con.execute("SELECT current_setting('enable_progress_bar')").fetchall()
    if not enabled:
        return
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass  # this environment does not let the setting change; leave it as it is


def _strip(body: str) -> str:
    return body.strip().rstrip(";")


def query_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker side of :func:`lakehouse.query.isolated.run_isolated`: open the lakehouse, run the
    query, return Arrow IPC bytes or the error."""
    import io

    import pyarrow as pa

    from lakehouse.core.config import Config
    from lakehouse.core.errors import LakehouseError
    from lakehouse.storage.store import Store

    lh = Store(Config.from_dict(payload["config"]))
    try:
        table = run_sql(
            lh,
            payload["sql"],
            payload["params"] or None,
            versions=payload["versions"] or None,
            timeout_s=payload["timeout_s"],
        )
    except LakehouseError as exc:
        return {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    except MemoryError:
        return {
            "ok": False,
            "error": "QueryError",
            "message": "Query ran out of the memory its process may use (sql.process_memory_mb); "
            "select less or narrow it.",
        }
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return {"ok": True, "arrow": sink.getvalue()}
