"""The guard's every refusal, word for word (lakehouse.query.guard): a user reads these messages to
learn what went wrong and what to do, so each branch is pinned to its exact text, and each
query the guard must let through is shown passing. The attack matrix (tests/test_sql_attacks.py)
shows the guard holding against attacks; this file shows which branch holds each one."""

from __future__ import annotations

import pytest

from lakehouse.core.errors import QueryError, QueryRefusedError
from lakehouse.query import guard

REFUSED = [
    (
        "selec 1",
        QueryError,
        'Query does not parse: Parser Error: syntax error at or near "selec"',
    ),
    ("   ", QueryError, "Query is empty; pass one SELECT statement."),
    ("-- a comment alone\n", QueryError, "Query is empty; pass one SELECT statement."),
    (
        "select 1; select 2",
        QueryRefusedError,
        "Query refused: pass exactly one statement (found 2 separated by ';').",
    ),
    (
        "select 1; select 2; select 3",
        QueryRefusedError,
        "Query refused: pass exactly one statement (found 3 separated by ';').",
    ),
    (
        "  PIVOT clips ON viewpoint USING count(*)",
        QueryRefusedError,
        "Query refused: PIVOT needs the values to pivot on spelled out, "
        "e.g. PIVOT t ON col IN ('a', 'b') USING count(*).",
    ),
    (
        "CREATE VIEW v AS select 1",
        QueryRefusedError,
        "Query refused: CREATE statements are not allowed; only read-only SELECT queries run.",
    ),
    (
        "ATTACH 'x.db'",
        QueryRefusedError,
        "Query refused: ATTACH statements are not allowed; only read-only SELECT queries run.",
    ),
    (
        "EXPLAIN CREATE VIEW v AS select 1",
        QueryRefusedError,
        "Query refused: EXPLAIN is allowed for SELECT queries only.",
    ),
    (
        "EXPLAIN select 1; select 2",
        QueryRefusedError,
        "Query refused: pass exactly one statement (found 2 separated by ';').",
    ),
    (
        "select * from read_text('/etc/hostname')",
        QueryRefusedError,
        "Query refused: the table function read_text() is not available in the lakehouse SQL "
        "session; read the lakehouse tables and views instead.",
    ),
    (
        "EXPLAIN ANALYZE select * from READ_TEXT('/etc/hostname')",
        QueryRefusedError,
        "Query refused: the table function read_text() is not available in the lakehouse SQL "
        "session; read the lakehouse tables and views instead.",
    ),
    (
        "select current_setting('home_directory')",
        QueryRefusedError,
        "Query refused: current_setting() reads the server's settings or environment, which "
        "the lakehouse SQL session does not expose.",
    ),
    (
        "select * from duckdb_settings",
        QueryRefusedError,
        "Query refused: duckdb_settings shows the server's settings or log, which the lakehouse "
        "SQL session does not expose.",
    ),
    (
        "select * from 'a.csv'",
        QueryRefusedError,
        "Query refused: 'a.csv' names a file; the lakehouse SQL session reads its tables and "
        "views only.",
    ),
]


@pytest.mark.parametrize(("sql", "error", "message"), REFUSED)
def test_each_refusal_says_exactly_what_to_do(sql, error, message):
    with pytest.raises(error) as info:
        guard.check_statement(sql)
    assert type(info.value) is error
    assert str(info.value) == message


def test_a_query_that_cannot_be_checked_is_refused():
    """The parse tree of anything but a SELECT cannot be serialized: such a query is refused
    rather than waved through unchecked."""
    with pytest.raises(QueryRefusedError) as info:
        guard.check_functions("EXPLAIN select 1")
    assert str(info.value) == (
        "Query refused: it cannot be checked (Only SELECT statements can be serialized to json!)."
    )
    with pytest.raises(QueryRefusedError) as info:
        guard.check_functions("selec 1")
    assert (
        str(info.value) == 'Query refused: it cannot be checked (syntax error at or near "selec").'
    )


@pytest.mark.parametrize(
    "sql",
    [
        "select 1",
        "select 1;",
        "EXPLAIN select 1",
        "explain analyze select count(*) from clips",
        "/* a comment */ EXPLAIN select 1",
        "PIVOT clips ON viewpoint IN ('ego', 'exo') USING count(*)",
        "select * from range(3)",
        "select * from duckdb_views()",
        "select current_date",
        "DESCRIBE clips",
    ],
)
def test_read_only_queries_pass(sql):
    guard.check_statement(sql)
