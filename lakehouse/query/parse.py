"""The one reader of DuckDB's parse tree: parse a statement, walk its nodes.

DuckDB serializes a parsed statement as JSON (``json_serialize_sql``) without binding it, so no
table, file or setting is touched: the guard (:mod:`lakehouse.query.guard`), the caption pushdown
(:mod:`lakehouse.query.pushdown`), the search ``--where`` filter (:mod:`lakehouse.search.filters`)
and the subset files (:mod:`lakehouse.subsets.files`) all read queries through this module. The
parser is a bare in-memory connection with external access off and its configuration locked,
shared by the process (each call takes its own cursor) and closed at exit.

A tree is plain JSON: dicts and lists. Expression nodes carry ``class`` and ``type``
(``FUNCTION``/``FUNCTION``, ``COLUMN_REF``/``COLUMN_REF``…), table references a ``type``
(``BASE_TABLE``, ``TABLE_FUNCTION``, ``JOIN``, ``SUBQUERY``…) and query nodes a ``type`` in
:data:`QUERY_NODES`.
"""

from __future__ import annotations

import atexit
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

from lakehouse.core.errors import QueryError

QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})

_PARSER: Any = None
_LOCK = threading.Lock()


class ParseError(QueryError):
    """The text is not SQL DuckDB can parse; the message is DuckDB's first line."""


def _cursor() -> Any:
    """A cursor of the process's parser connection (opened on first use)."""
    global _PARSER
    with _LOCK:
        if _PARSER is None:
            import duckdb

            con = duckdb.connect(":memory:")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            _PARSER = con
        return _PARSER.cursor()


def close() -> None:
    """Close the parser connection (run at interpreter exit: a DuckDB connection still open when
    its module is torn down makes the bindings print "leaked instance" warnings)."""
    global _PARSER
    with _LOCK:
        if _PARSER is not None:
            _PARSER.close()
            _PARSER = None


atexit.register(close)


def tree(sql: str) -> dict[str, Any]:
    """The serialized parse of ``sql``: ``{"error": bool, "statements": [...]}``, with DuckDB's
    ``error_message`` when it does not parse (the caller decides how to say so)."""
    import duckdb

    cursor = _cursor()
    try:
        ((text,),) = cursor.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchall()
    except duckdb.Error as exc:
        raise ParseError(first_line(exc)) from None
    finally:
        cursor.close()
    return json.loads(text)


def statements(sql: str) -> list[dict[str, Any]]:
    """The parsed statements of ``sql``; raises :class:`ParseError` when it does not parse."""
    parsed = tree(sql)
    if parsed.get("error"):
        raise ParseError(str(parsed.get("error_message") or "unknown error"))
    return parsed["statements"]


def statement_types(sql: str) -> list[str]:
    """The type of each statement of ``sql`` (``SELECT``, ``EXPLAIN``, ``MULTI``…), as DuckDB's
    statement splitter sees them; raises :class:`ParseError` when it does not parse."""
    import duckdb

    cursor = _cursor()
    try:
        return [s.type.name for s in cursor.extract_statements(sql)]
    except duckdb.Error as exc:
        raise ParseError(first_line(exc)) from None
    finally:
        cursor.close()


def nodes(value: Any, *, into: Callable[[dict[str, Any]], bool] | None = None) -> Iterator[dict]:
    """Every dict under ``value`` (``value`` itself included), depth first. A node for which
    ``into`` returns False is yielded but not descended into."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            yield item
            if into is None or into(item):
                stack.extend(reversed(list(item.values())))


def scoped_nodes(value: Any) -> Iterator[tuple[dict[str, Any], frozenset[str]]]:
    """Every dict under ``value`` with the names of the CTEs visible at it. A CTE's body sees
    the CTEs defined before it (``clips as (select * from clips)`` reads the table, not itself);
    the rest of the query node sees all of them."""
    stack: list[tuple[Any, frozenset[str]]] = [(value, frozenset())]
    while stack:
        item, scope = stack.pop()
        if isinstance(item, list):
            stack.extend((v, scope) for v in reversed(item))
            continue
        if not isinstance(item, dict):
            continue
        yield item, scope
        inner = scope
        later: list[tuple[Any, frozenset[str]]] = []
        cte_map = item.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map", []):
                later.append((entry.get("value"), inner))
                inner = inner | {str(entry["key"]).lower()}
        later += [(v, inner) for k, v in item.items() if k != "cte_map"]
        stack.extend(reversed(later))


def is_expression(node: dict[str, Any]) -> bool:
    """Whether ``node`` is an expression (constants, columns, functions, operators…)."""
    return "class" in node and "type" in node


def function_name(node: dict[str, Any]) -> str:
    """The lower-case name of a function expression or a table function reference."""
    if node.get("type") == "TABLE_FUNCTION":
        node = node.get("function") or {}
    return str(node.get("function_name", "")).lower()


def table_name(node: dict[str, Any]) -> str:
    """The name of a ``BASE_TABLE`` reference, as written."""
    return str(node.get("table_name", ""))


def conjuncts(expr: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The terms of a top-level ``AND`` (the expression itself when it is no ``AND``)."""
    if expr.get("class") == "CONJUNCTION" and expr.get("type") == "CONJUNCTION_AND":
        for child in expr["children"]:
            yield from conjuncts(child)
    else:
        yield expr


def string_constant(expr: dict[str, Any]) -> str | None:
    """The text of a string constant expression, else None."""
    if expr.get("class") != "CONSTANT":
        return None
    literal = expr.get("value") or expr.get("literal") or {}
    if not isinstance(literal, dict):
        return None
    declared = literal.get("type")
    type_id = declared.get("id", "") if isinstance(declared, dict) else ""
    kind = str(literal.get("kind") or type_id).upper()
    text = literal.get("text", literal.get("value"))
    if kind in ("STRING", "VARCHAR") and isinstance(text, str):
        return text
    return None


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (DuckDB's carry a caret diagram below it)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
