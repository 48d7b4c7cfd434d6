"""The guard: what a user's query may be, checked on its parse tree before DuckDB runs it.

One statement, read-only (``SELECT``/``WITH``/``DESCRIBE``/``EXPLAIN`` of a ``SELECT``); table
functions only from :data:`ALLOWED_TABLE_FUNCTIONS` (generators, the semantic hits, the catalog
of the lakehouse's own tables); no scalar function that reads settings or the environment
(:data:`REFUSED_FUNCTIONS`); no relation that shows settings or logs (:data:`REFUSED_RELATIONS`);
no table named like a file (DuckDB would read the file through a replacement scan). The
session's engine settings (:mod:`lakehouse.query.session`) are a second, independent wall.
"""

from __future__ import annotations

import re

from lakehouse.core.errors import QueryError, QueryRefusedError
from lakehouse.query import parse

ALLOWED_STATEMENTS = ("SELECT", "EXPLAIN")
# Relations a query may produce with a table function: generators, the lakehouse's semantic
# hits, and the catalog of its own tables and views. Anything else is refused by name.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "repeat",
        "caption_hits",
        "visual_hits",
        "exclude_near_duplicates",
        "duckdb_tables",
        "duckdb_views",
        "duckdb_columns",
        "duckdb_constraints",
        "duckdb_types",
        "duckdb_schemas",
        "duckdb_functions",
        "duckdb_keywords",
    }
)
# Scalar functions that read the process's settings or environment.
REFUSED_FUNCTIONS = frozenset({"current_setting", "getenv", "getvariable", "current_schemas"})
# Built-in views that show settings or the log of other statements.
REFUSED_RELATIONS = frozenset(
    {
        "duckdb_settings",
        "duckdb_logs",
        "duckdb_log_contexts",
        "duckdb_databases",
        "pragma_database_list",
        "pg_settings",
        "duckdb_secrets",
    }
)
FILE_LIKE = re.compile(r"[/\\.*?:]")  # a path, a file name, a glob or a URL
EXPLAIN_PREFIX = re.compile(
    r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*explain(?:\s+analyze)?\b", re.IGNORECASE | re.DOTALL
)


def check_statement(sql: str) -> None:
    """Refuse anything but exactly one read-only statement that only calls allowed functions."""
    try:
        kinds = parse.statement_types(sql)
    except parse.ParseError as exc:
        raise QueryError(f"Query does not parse: {exc}") from None
    if not kinds:
        raise QueryError("Query is empty; pass one SELECT statement.")
    if len(kinds) > 1:
        raise QueryRefusedError(
            f"Query refused: pass exactly one statement (found {len(kinds)} separated by ';')."
        )
    kind = kinds[0]
    if kind == "MULTI" and re.match(r"\s*pivot\b", sql, re.IGNORECASE):
        # DuckDB runs a PIVOT without an IN list as two statements (one finds the values)
        raise QueryRefusedError(
            "Query refused: PIVOT needs the values to pivot on spelled out, "
            "e.g. PIVOT t ON col IN ('a', 'b') USING count(*)."
        )
    if kind not in ALLOWED_STATEMENTS:
        raise QueryRefusedError(
            f"Query refused: {kind} statements are not allowed; only read-only SELECT queries run."
        )
    if kind == "EXPLAIN":
        prefix = EXPLAIN_PREFIX.match(sql)
        if prefix is None or parse.statement_types(sql[prefix.end() :]) != ["SELECT"]:
            raise QueryRefusedError("Query refused: EXPLAIN is allowed for SELECT queries only.")
        sql = sql[prefix.end() :]
    check_functions(sql)


def check_functions(sql: str) -> None:
    """Walk the parsed query and refuse table functions outside ALLOWED_TABLE_FUNCTIONS, scalar
    functions in REFUSED_FUNCTIONS, relations in REFUSED_RELATIONS and tables named like files,
    before anything runs."""
    tree = parse.tree(sql)  # a text DuckDB cannot parse comes back as an error tree
    if tree.get("error"):
        raise QueryRefusedError(f"Query refused: it cannot be checked ({tree['error_message']}).")
    for node in parse.nodes(tree["statements"]):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            name = parse.function_name(node)
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise QueryRefusedError(
                    f"Query refused: the table function {name}() is not available in the "
                    "lakehouse SQL session; read the lakehouse tables and views instead."
                )
        elif kind == "FUNCTION" and parse.function_name(node) in REFUSED_FUNCTIONS:
            raise QueryRefusedError(
                f"Query refused: {node['function_name']}() reads the server's settings or "
                "environment, which the lakehouse SQL session does not expose."
            )
        elif kind == "BASE_TABLE" and parse.table_name(node).lower() in REFUSED_RELATIONS:
            raise QueryRefusedError(
                f"Query refused: {node['table_name']} shows the server's settings or log, which "
                "the lakehouse SQL session does not expose."
            )
        elif kind == "BASE_TABLE" and FILE_LIKE.search(parse.table_name(node)):
            # DuckDB reads a table named like a file as that file (a replacement scan)
            raise QueryRefusedError(
                f"Query refused: {node['table_name']!r} names a file; the lakehouse SQL session "
                "reads its tables and views only."
            )
