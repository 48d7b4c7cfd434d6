"""The ``--where`` filter of a search: one SQL condition over ``clip_facts`` columns.

It is parsed by DuckDB first (:mod:`lakehouse.query.parse`: one expression, nothing else). When
it only reads the clip metadata stored next to every vector (``schemas.SEARCH_METADATA``), it
runs inside Lance as a prefilter; otherwise DuckDB evaluates it in the locked-down session and
the search is restricted to the clips it returns. Either way the filter is applied before
ranking, so a selective filter never loses results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from lakehouse.core import schemas
from lakehouse.core.errors import InputError, QueryError
from lakehouse.core.schemas import CLIP_TABLE, TEXT_TABLE
from lakehouse.query import parse
from lakehouse.query.session import Session
from lakehouse.search.vectors import vector_table
from lakehouse.storage.filters import in_list, sql_literal

if TYPE_CHECKING:
    from lakehouse.storage.store import Store

PUSHDOWN_COLUMNS = {"clip_id", *schemas.SEARCH_METADATA_NAMES}
PUSHDOWN_NODES = {
    "COLUMN_REF",
    "CONSTANT",
    "COMPARE_EQUAL",
    "COMPARE_NOTEQUAL",
    "COMPARE_LESSTHAN",
    "COMPARE_GREATERTHAN",
    "COMPARE_LESSTHANOREQUALTO",
    "COMPARE_GREATERTHANOREQUALTO",
    "CONJUNCTION_AND",
    "CONJUNCTION_OR",
    "OPERATOR_NOT",
    "OPERATOR_IS_NULL",
    "OPERATOR_IS_NOT_NULL",
    "COMPARE_IN",
    "COMPARE_NOT_IN",
    "COMPARE_BETWEEN",
    "VALUE_CONSTANT",
    "OPERATOR_CAST",
}
IN_LIST_MAX = 50_000


@dataclass(frozen=True)
class Filter:
    """A compiled ``where``: a Lance expression, or the clip ids DuckDB selected."""

    expression: str | None = None
    clip_ids: frozenset[str] | None = None

    def condition(self) -> str | None:
        """The Lance expression of the filter alone (None: every row)."""
        parts = []
        if self.expression:
            parts.append(f"({self.expression})")
        if self.clip_ids is not None and len(self.clip_ids) <= IN_LIST_MAX:
            parts.append(in_list("clip_id", self.clip_ids))
        return " AND ".join(parts) or None

    def lance(self, model_id: str) -> str:
        """The filter and the model, as one Lance expression."""
        condition = self.condition()
        model = f"model_id = {sql_literal(model_id)}"
        return f"{model} AND {condition}" if condition else model


# -- the where predicate ------------------------------------------------------------------


def bind_parameters(predicate: str, params: Sequence[Any]) -> str:
    """Replace each ``?`` outside quotes by the next parameter as a quoted literal."""
    out, values, quote = [], list(params), None
    for char in predicate:
        if quote:
            out.append(char)
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?":
            if not values:
                raise InputError("The --where predicate has more ? than --param values.")
            out.append(sql_literal(values.pop(0)))
        else:
            out.append(char)
    if values:
        raise InputError("More --param values were given than ? in the --where predicate.")
    return "".join(out)


def compile_where(lh: Store, where: str | None, params: Sequence[Any] = ()) -> Filter:
    """Validate ``where`` as one SQL predicate over clip_facts and decide where it runs."""
    if not where or not where.strip():
        if params:
            raise InputError("--param values were given without a --where predicate.")
        return Filter()
    if ";" in where:
        raise QueryError("The --where predicate must be a single SQL condition, no ';'.")
    text = bind_parameters(where, params)
    if _analyse(text) and _lance_accepts(lh, text):
        return Filter(expression=text)
    with Session(lh) as session:
        ids = session.query(_where_query(text)).column("clip_id").to_pylist()
    return Filter(clip_ids=frozenset(ids))


def _where_query(text: str) -> str:
    return f"SELECT clip_id FROM clip_facts WHERE ({text})"


@lru_cache(maxsize=1024)
def _analyse(text: str) -> bool:
    """Parse a bound predicate (DuckDB's parser); True when Lance can evaluate it itself.
    Cached: a predicate's text alone decides both (a refused one raises every time)."""
    query = _where_query(text)
    try:
        if parse.statement_types(query) != ["SELECT"]:
            raise QueryError("The --where predicate must be a single SQL condition, no ';'.")
        tree = parse.tree(query)
    except parse.ParseError as exc:
        raise QueryError(f"The --where predicate does not parse: {exc}") from None
    if tree.get("error"):
        raise QueryError(f"The --where predicate does not parse: {tree.get('error_message')}")
    select = tree["statements"][0]["node"]
    table = select.get("from_table") or {}
    if (
        select.get("type") != "SELECT_NODE"
        or len(select.get("select_list", [])) != 1
        or table.get("table_name") != "clip_facts"
        or not select.get("where_clause")
    ):
        raise QueryError("The --where predicate must be a condition on clip_facts columns only.")
    return _pushable(select["where_clause"])


def _lance_accepts(lh: Store, text: str) -> bool:
    """Whether Lance's SQL dialect reads the predicate as DuckDB does; when it cannot (dollar-
    quoted or E'' strings, a type it will not coerce) DuckDB evaluates it instead."""
    if "$" in text or "\\" in text:
        return False
    for name in (TEXT_TABLE, CLIP_TABLE):
        try:
            return vector_table(lh, name).accepts(text)
        except InputError:  # no such table yet
            continue
    return True


def _pushable(where: dict[str, Any]) -> bool:
    """Whether every expression of ``where`` is one Lance evaluates the same way (comparisons,
    AND/OR/NOT, IN, BETWEEN, IS NULL, casts of constants) over the clip metadata stored next to
    every vector. A comparison of a text column with a number (or a number column with text)
    is not: DuckDB casts the column and fails on the first value that is not a number, Lance
    plans ``NOT (viewpoint = 0)`` and fails while scanning; DuckDB reports it."""
    for node in parse.nodes(where):
        if not parse.is_expression(node):
            continue
        if node["type"] not in PUSHDOWN_NODES:
            return False
        if node["type"] == "COLUMN_REF" and node["column_names"][-1] not in PUSHDOWN_COLUMNS:
            return False
        operands = [node.get(k) for k in ("left", "right", "input", "lower", "upper")]
        kinds = {_kind(o) for o in [*operands, *node.get("children", [])] if isinstance(o, dict)}
        if len(kinds - {None}) > 1:
            return False
    return True


TEXT_COLUMNS = {"clip_id", *(f.name for f in schemas.SEARCH_METADATA if str(f.type) == "string")}
LITERAL_KINDS = {"STRING": "text", "INTEGER": "number", "NUMERIC": "number", "NULL_LITERAL": None}


def _kind(operand: dict[str, Any]) -> str | None:
    """What a comparison's operand holds: ``text``, ``number`` or another constant's kind; None
    for NULL and for what is no column or constant."""
    if operand.get("type") == "COLUMN_REF":
        return "text" if operand["column_names"][-1] in TEXT_COLUMNS else "number"
    if operand.get("class") == "CONSTANT":
        kind = str((operand.get("literal") or {}).get("kind", "")).upper()
        return LITERAL_KINDS.get(kind, kind)
    return None
