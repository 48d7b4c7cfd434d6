"""Scenario 9: the SQL attack matrix. Every attempt to reach outside the lakehouse, change the
session or exhaust the machine is refused or stopped with a one-line error, and the same
session keeps answering normal queries afterwards. (tests/test_sql.py holds the first list.)"""

from __future__ import annotations

import dataclasses
import glob
import os
import subprocess
import sys
import time

import pytest

from lakehouse.api import Lakehouse
from lakehouse.core.errors import QueryError, QueryRefusedError, QueryTimeoutError
from lakehouse.query import isolated as sql_isolated
from lakehouse.query.session import Session, run_sql

CANARY = "/tmp/lakehouse_attack_canary"

FILES = [
    "select * from read_csv_auto('/etc/passwd')",
    "select * from read_json('/etc/hostname')",
    "select * from read_text('/etc/hostname')",
    "select * from read_blob('/etc/hostname')",
    "select * from read_parquet(['/tmp/a.parquet', '/tmp/b.parquet'])",
    "select * from parquet_metadata('/tmp/a.parquet')",
    "select * from parquet_schema('/tmp/a.parquet')",
    "select * from sniff_csv('/etc/passwd')",
    "select * from glob('/root/*')",
    "select * from read_duckdb('/tmp/x.duckdb')",
    "select * from '/etc/passwd.csv'",
    "select * from 'https://example.com/data.parquet'",
    "with t as (select * from read_text('/etc/hostname')) select * from t",
    "select (select content from read_text('/etc/hostname')) as c",
    "select * from clips where clip_id in (select content from read_text('/etc/hostname'))",
    f"COPY (select 1) TO '{CANARY}.csv'",
    f"COPY clips TO '{CANARY}.parquet' (FORMAT parquet)",
    f"EXPORT DATABASE '{CANARY}_db'",
    f"EXPLAIN ANALYZE COPY (select 1) TO '{CANARY}.csv'",
    "IMPORT DATABASE '/tmp'",
]
CATALOG = [
    f"ATTACH '{CANARY}.db' AS x",
    "ATTACH ':memory:' AS x",
    "DETACH memory",
    "USE system",
    "INSTALL httpfs",
    "FORCE INSTALL httpfs FROM community",
    "LOAD httpfs",
    "LOAD '/tmp/evil.duckdb_extension'",
    "CREATE MACRO f(x) AS x",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "CREATE VIEW v AS select 1",
    "INSERT INTO clips (clip_id) VALUES ('x')",
    "ALTER VIEW clip_facts RENAME TO y",
    "VACUUM",
    "CHECKPOINT",
]
SETTINGS = [
    "SET enable_external_access = true",
    "SET GLOBAL enable_external_access = true",
    "SET allowed_directories = ['/']",
    "RESET ALL",
    "SET VARIABLE x = 1",
    "PRAGMA threads = 64",
    "CALL enable_logging()",
    "select 1; SET enable_external_access = true",
    "select 1 /* ; */ ; SET enable_external_access = true",
    "select 1 -- comment\n; SET enable_external_access = true",
    "select ';'; SET lock_configuration = false",
    "SET enable_external_access = true; select 1",
    "select * from query('select 1')",
    "select * from query_table('clips')",
    "select * from enable_logging()",
    "select * from checkpoint()",
    "SET search_path = 'system'",  # the one setting DuckDB's lock leaves open (and variables)
    "select 1; COMMIT; ALTER VIEW clip_facts RENAME TO y",
]
SECRETS = [
    "select * from duckdb_settings()",
    "select name, value from duckdb_settings() where value like '%/%'",
    "select current_setting('temp_directory')",
    "select current_setting('secret_directory') as d",
    "select * from pg_catalog.pg_settings",
    "select * from duckdb_logs",
    "select * from duckdb_secrets()",
    "select * from duckdb_extensions()",
    "select * from duckdb_temporary_files()",
    "select * from duckdb_memory()",
    "select * from duckdb_databases()",
    "select * from pragma_database_list",
    "select * from pragma_platform()",
    "select getenv('HOME')",
    "select * from which_secret('s3://bucket/x', 's3')",
    "select * from duckdb_extension_repositories()",
    "with s as (select * from duckdb_settings()) select * from s",
    "select (select value from duckdb_settings() where name = 'temp_directory')",
]


@pytest.fixture(scope="module")
def lh(tmp_path_factory):
    from lakehouse.core.config import Config

    lh = Lakehouse(Config.load(root=tmp_path_factory.mktemp("attacks") / "lakehouse", env={}))
    lh.upsert("sources", [{"source": "a", "uri": "/a", "annotation_files": []}])
    return lh


@pytest.fixture(scope="module")
def session(lh):
    with Session(lh) as s:
        yield s


def _refused(session: Session, sql: str) -> str:
    with pytest.raises((QueryRefusedError, QueryError)) as info:
        session.query(sql, timeout_s=20)
    message = str(info.value)
    assert message and "\n" not in message and "Traceback" not in message
    # the session is unharmed: views, tables and settings are as they were
    assert session.query("select count(*) as n from sources").to_pylist() == [{"n": 1}]
    assert session.query("select count(*) as n from clip_facts").to_pylist() == [{"n": 0}]
    return message


@pytest.mark.parametrize("sql", FILES)
def test_file_reads_and_writes_are_refused(session, sql):
    _refused(session, sql)


@pytest.mark.parametrize("sql", CATALOG)
def test_attach_install_load_and_ddl_are_refused(session, sql):
    _refused(session, sql)


@pytest.mark.parametrize("sql", SETTINGS)
def test_settings_cannot_be_changed_even_when_smuggled(session, sql):
    _refused(session, sql)
    locked = session.query(
        "select count(*) as n from duckdb_tables() where database_name = 'memory'"
    )
    assert locked.num_rows == 1


@pytest.mark.parametrize("sql", SECRETS)
def test_settings_paths_logs_and_environment_are_not_revealed(session, sql):
    message = _refused(session, sql)
    assert session.tmp not in message and os.path.expanduser("~") not in message


def test_nothing_was_written_anywhere():
    assert not glob.glob(f"{CANARY}*")


# -- each wall alone -------------------------------------------------------------------------
# The session has two independent walls: the guard (lakehouse.query.guard: the parsed query is
# refused unless it is one read-only statement calling allowed functions only) and the engine
# (DuckDB with external access off and its configuration locked, directories pointed at the
# session's own empty folder, and each query run as one statement in a transaction rolled back
# after it). Each must hold every attack without the other.

ATTACKS = [*FILES, *CATALOG, *SETTINGS, *SECRETS]


def _catalog(session: Session) -> list[tuple]:
    return session.con.execute(
        "SELECT database_name, schema_name, view_name, sql FROM duckdb_views() "
        "WHERE NOT internal ORDER BY ALL"
    ).fetchall()


@pytest.fixture
def engine_only(lh, monkeypatch):
    """A locked session whose guard lets everything through."""
    from lakehouse.query import session as session_module

    monkeypatch.setattr(session_module, "check_statement", lambda sql: None)
    with Session(lh) as session:
        yield session


@pytest.fixture(scope="module")
def guard_only(lh):
    """A session with DuckDB's settings and the transaction wall off: the guard alone."""
    with Session(lh, locked=False) as session:
        yield session


@pytest.mark.parametrize("sql", ATTACKS)
def test_the_engine_alone_holds_every_attack(engine_only, sql):
    """Without the guard, an attack is refused by DuckDB or runs harmlessly: it reads or writes
    no file, shows no folder but the session's own empty one, and leaves the session as it was
    (catalog, search path, variables), so the next query of a kept session is unaffected."""
    session = engine_only
    before = _catalog(session)
    try:
        shown = str(session.query(sql, timeout_s=20).to_pylist())
    except (QueryRefusedError, QueryError) as exc:
        assert "\n" not in str(exc)  # refused by DuckDB, in one line
        shown = ""
    assert not glob.glob(f"{CANARY}*")
    # what ran shows no folder but the session's own (nothing of the home folder, the
    # machine's files or the lakehouse root's parent)
    outside = shown.replace(session.tmp, "")
    assert os.path.expanduser("~") not in outside and "/etc/" not in outside
    assert os.path.dirname(session.lh.root) not in outside
    assert _catalog(session) == before
    assert session.con.execute("SELECT current_setting('search_path')").fetchone() == ("",)
    assert session.con.execute("SELECT count(*) FROM duckdb_variables()").fetchone() == (0,)
    locked = session.con.execute("SELECT current_setting('enable_external_access')").fetchone()
    assert locked == (False,)
    assert session.query("select count(*) as n from sources").to_pylist() == [{"n": 1}]
    assert session.query("select count(*) as n from clip_facts").to_pylist() == [{"n": 0}]


@pytest.mark.parametrize("sql", ATTACKS)
def test_the_guard_alone_refuses_every_attack(guard_only, sql):
    """Without DuckDB's lock-down (external access on, configuration open, no transaction
    wall), the guard refuses every attack before DuckDB sees it."""
    with pytest.raises((QueryRefusedError, QueryError)):
        guard_only.query(sql, timeout_s=20)
    assert not glob.glob(f"{CANARY}*")
    assert guard_only.query("select count(*) as n from sources").to_pylist() == [{"n": 1}]


def test_the_walls_are_really_off_in_the_single_wall_sessions(engine_only, guard_only):
    """The two tests above prove something only if each session lacks the other wall."""
    ran = engine_only.query("select 1 as one where current_setting('temp_directory') <> ''")
    assert ran.num_rows == 1  # a function the guard refuses ran: no guard
    (access,) = guard_only.con.execute(
        "SELECT current_setting('enable_external_access')"
    ).fetchone()
    assert access is True  # DuckDB would read files here: no engine wall


def test_what_a_query_may_read_is_the_lakehouse(session):
    # the catalog of its own tables and views stays available, and generators work
    names = {
        r["view_name"] for r in session.query("select view_name from duckdb_views()").to_pylist()
    }
    assert "clip_facts" in names
    assert session.query("select sum(range) as s from range(10)").to_pylist() == [{"s": 45}]
    assert session.query("select unnest([1, 2]) as u").num_rows == 2
    assert session.query("DESCRIBE clips").num_rows > 10
    assert session.query("SUMMARIZE sources").num_rows > 1
    assert session.query("EXPLAIN select * from clips").num_rows >= 1
    assert session.query("from sources select source").to_pylist() == [{"source": "a"}]


# -- resource bombs ------------------------------------------------------------------------


def _small(lh: Lakehouse, **sql) -> Lakehouse:
    config = lh.config
    return Lakehouse(dataclasses.replace(config, sql=dataclasses.replace(config.sql, **sql)))


@pytest.mark.parametrize(
    "sql",
    [
        "select count(*) from range(1000000000000)",
        "with recursive t(n) as (select 1 union all select n + 1 from t) select count(*) from t",
        "select count(*) from range(10000000) a, range(1000000) b where a.range + b.range = -1",
        "select max(a.range * b.range) from range(1000000) a, range(1000000) b",
    ],
)
def test_runaway_queries_stop_at_the_time_limit(session, sql):
    began = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="time limit"):
        session.query(sql, timeout_s=1.5)
    assert time.monotonic() - began < 30
    assert session.query("select 1 as x").to_pylist() == [{"x": 1}]


@pytest.mark.parametrize(
    "sql",
    [
        "select length(string_agg(repeat('x', 1000000), '')) from range(3000)",
        "select length(list(range)) from range(1000000000)",
        "with recursive t(n, s) as (select 1, 'x' union all select n + 1, s || s from t "
        "where n < 40) select max(length(s)) from t",
    ],
)
def test_memory_bombs_stop_at_the_memory_limit(lh, sql):
    with Session(_small(lh, memory_limit="300MB")) as session:
        with pytest.raises(QueryError, match="memory"):
            session.query(sql, timeout_s=60)
        assert session.query("select 1 as x").to_pylist() == [{"x": 1}]


def test_huge_results_are_refused_not_materialized(lh):
    with Session(_small(lh, max_result_mb=50)) as session:
        with pytest.raises(QueryError, match="max_result_mb"):
            session.query("select * from range(100000000)")
        assert session.query("select count(*) as n from range(100000000)").to_pylist() == [
            {"n": 100000000}
        ]


@pytest.mark.slow
def test_a_query_that_ignores_interrupts_is_killed_in_its_own_process(lh, monkeypatch):
    # repeat() of 1e9 characters neither honours the interrupt nor the buffer manager (about
    # 4 s here); a machine fast enough finishes it inside any short limit, so the query here is
    # one that never returns for sure: its process is killed at 1 s + a grace of 0.5 s
    small = _small(lh, timeout_s=1, process_memory_mb=6000)
    began = time.monotonic()
    with monkeypatch.context() as patched:
        patched.setattr(sql_isolated, "GRACE_S", 0.5)
        patched.setattr(sql_isolated, "QUERY_TASK", "worker_tasks:stalled_query")
        with pytest.raises(QueryTimeoutError, match="stopped"):
            run_sql(small, "select length(repeat('x', 1000000000)) as n", isolated=True)
    assert time.monotonic() - began < 25
    small = _small(lh, timeout_s=2, process_memory_mb=6000)
    assert run_sql(small, "select 42 as x", isolated=True).to_pylist() == [{"x": 42}]
    with pytest.raises(QueryRefusedError, match="read_text"):
        run_sql(small, "select * from read_text('/etc/hostname')", isolated=True)


def test_semantic_functions_cannot_be_turned_into_a_model_loop(session):
    with pytest.raises(QueryError, match="at most 2000"):
        session.query("select caption_similarity('c', repeat('a', 5000)) as s")
    with pytest.raises(QueryError, match="distinct texts"):
        session.query("select caption_similarity('c', 'text ' || range) as s from range(100)")
    assert session.query("select 1 as x").to_pylist() == [{"x": 1}]


def test_the_cli_reports_refusals_in_one_line(lh):
    for sql in ("select * from read_text('/etc/hostname')", "select 1; ATTACH 'x.db'"):
        done = subprocess.run(
            [sys.executable, "-m", "lakehouse.cli", "sql", sql, "--root", lh.root],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2
        assert done.stderr.startswith("error: Query refused") and done.stderr.count("\n") == 1
        assert not done.stdout


def test_search_where_cannot_smuggle_a_query(lh):
    from lakehouse.search.filters import compile_where

    for where in (
        "1=1) union select content from read_text('/etc/hostname') --",
        "clip_id in (select content from read_text('/etc/hostname'))",
        "viewpoint = 'ego'; SET enable_external_access = true",
        "current_setting('temp_directory') is not null",
        "clip_id in (select * from query('select 1'))",
    ):
        with pytest.raises((QueryError, QueryRefusedError)):
            compile_where(lh, where)


def test_predicates_lance_would_read_differently_are_evaluated_by_duckdb(lh):
    from lakehouse.search.filters import compile_where

    for where in ("viewpoint = $$ego$$", "viewpoint = E'eg\\x6f'", "short_caption = 'a\\b'"):
        flt = compile_where(lh, where)
        assert flt.expression is None and flt.clip_ids is not None, where
    assert compile_where(lh, "viewpoint = 'ego' and duration_s > 3").expression
