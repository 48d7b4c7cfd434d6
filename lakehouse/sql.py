"""DuckDB over the lakehouse: every Lance table is a view, plus the views in ``sql/views``.

User SQL runs in a locked-down connection: the Lance datasets are registered first, then
external access is switched off and the configuration locked (in that order — DuckDB refuses
the combination in ``connect(config=…)``). The connection cannot read or write files, install
or load extensions, attach databases or change settings; a statement must be a single query
(``SELECT``/``WITH``/``DESCRIBE``/``EXPLAIN``), and it runs under a memory and a time limit.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse import schemas
from lakehouse.errors import (
    ModelUnavailableError,
    QueryError,
    QueryRefusedError,
    QueryTimeoutError,
)
from lakehouse.scan import for_sql

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from lakehouse.store import Lakehouse

VIEW_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
ALLOWED_STATEMENTS = ("SELECT", "EXPLAIN")


class Session:
    """A DuckDB connection over one lakehouse (optionally pinned to table versions)."""

    def __init__(
        self,
        lh: Lakehouse,
        *,
        versions: Mapping[str, int | str] | None = None,
        locked: bool = True,
        views_dirs: Sequence[Path] | None = None,
        view_sql: Mapping[str, str] | None = None,
    ):
        import duckdb

        self.lh = lh
        settings = lh.config.sql
        self._tmp = tempfile.mkdtemp(prefix="lakehouse-duckdb-")
        self.con = duckdb.connect(
            ":memory:",
            config={
                "threads": settings.threads,
                "memory_limit": settings.memory_limit,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "temp_directory": self._tmp,
            },
        )
        self.versions: dict[str, int] = {}
        self.tables = self._register_tables(versions or {})
        # the view texts this session was built from (a subset records them to reproduce)
        self.view_sql: dict[str, str] = (
            dict(view_sql)
            if view_sql is not None
            else read_views(views_dirs or [lh.config.sql_dirs["views"]])
        )
        self.views = self._create_views(self.view_sql)
        from lakehouse.semantic_sql import SemanticFunctions

        self.semantic = SemanticFunctions(self)
        self.semantic.register()
        self.locked = locked
        self.con.execute("SET enable_progress_bar = false")
        if locked:
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET allow_community_extensions = false")
            self.con.execute("SET lock_configuration = true")

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _register_tables(self, versions: Mapping[str, int | str]) -> list[str]:
        known = [*schemas.TABLES, *schemas.DYNAMIC_TABLES]
        names = list(dict.fromkeys([*known, *self.lh.table_names()]))
        for name in names:
            # version 0 pins "the table did not exist yet": it reads as empty
            ds = (
                None
                if versions.get(name) == 0
                else self.lh.dataset(name, version=versions.get(name))
            )
            if ds is not None:
                self.versions[name] = ds.version
                self.con.register(name, for_sql(ds))
            elif name in known:
                self.con.register(name, self.lh.schema(name).empty_table())
        return names

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

        check_statement(self.con, sql)
        timeout = self.lh.config.sql.timeout_s if timeout_s is None else timeout_s
        timer = threading.Timer(timeout, self.con.interrupt)
        timer.daemon = True
        timer.start()
        try:
            return self.con.sql(sql, params=params).to_arrow_table()
        except duckdb.InterruptException:
            raise QueryTimeoutError(
                f"Query ran past the {timeout:g} s time limit; narrow it or raise sql.timeout_s."
            ) from None
        except duckdb.PermissionException as exc:
            raise QueryRefusedError(f"Query refused: {_first_line(exc)}.") from None
        except duckdb.OutOfMemoryException:
            raise QueryError(
                f"Query ran out of its {self.lh.config.sql.memory_limit} memory limit; "
                "select fewer rows or columns."
            ) from None
        except duckdb.InvalidInputException as exc:
            if "ModelUnavailableError: " in str(exc):
                message = str(exc).split("ModelUnavailableError: ", 1)[1].strip()
                raise ModelUnavailableError(message) from None
            if "configuration has been locked" in str(exc):
                raise QueryRefusedError(
                    "Query refused: settings cannot be changed in the lakehouse SQL session."
                ) from None
            raise QueryError(f"Query failed: {_first_line(exc)}") from None
        except duckdb.Error as exc:
            raise QueryError(f"Query failed: {_first_line(exc)}") from None
        finally:
            timer.cancel()


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


def check_statement(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but exactly one read-only statement."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"Query does not parse: {_first_line(exc)}") from None
    if not statements:
        raise QueryError("Query is empty; pass one SELECT statement.")
    if len(statements) > 1:
        raise QueryRefusedError(
            f"Query refused: pass exactly one statement (found {len(statements)} separated by ';')."
        )
    kind = statements[0].type.name
    if kind not in ALLOWED_STATEMENTS:
        raise QueryRefusedError(
            f"Query refused: {kind} statements are not allowed; only read-only SELECT queries run."
        )


def run_sql(
    lh: Lakehouse,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    versions: Mapping[str, int | str] | None = None,
    timeout_s: float | None = None,
) -> pa.Table:
    """Run one query in a locked session. Without pinned ``versions`` the session is kept and
    reused while no table has a new version and the view files are unchanged: building one
    (a connection, every dataset registered, the views compiled) costs tens of milliseconds,
    as much as a selective query over millions of rows."""
    if versions is not None:
        with Session(lh, versions=versions) as session:
            return session.query(sql, params, timeout_s=timeout_s)
    views = read_views([lh.config.sql_dirs["views"]])
    key = (tuple(sorted(lh.versions().items())), tuple(sorted(views.items())))
    with _SESSIONS_LOCK:
        cached = getattr(lh, "_sql_session", None)
        if cached is None or cached[0] != key:
            if cached is not None:
                with cached[2]:
                    cached[1].close()
            session = Session(lh, view_sql=views)
            weakref.finalize(session, shutil.rmtree, session._tmp, ignore_errors=True)
            cached = (key, session, threading.Lock())
            lh._sql_session = cached
    _, session, lock = cached
    with lock:
        return session.query(sql, params, timeout_s=timeout_s)


_SESSIONS_LOCK = threading.Lock()


def read_query_arg(text: str) -> str:
    """A CLI argument is a query, or the path of a ``.sql`` file holding one."""
    if text.strip().lower().endswith(".sql") and "\n" not in text and os.path.isfile(text):
        return Path(text).read_text()
    return text


def _strip(body: str) -> str:
    return body.strip().rstrip(";")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
