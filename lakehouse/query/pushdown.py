"""Substring filters of a query pushed into the Lance scan of ``clips``.

DuckDB pushes a query's projection and its string/int comparisons into a registered Lance
dataset, but not ``LIKE`` or ``contains``: Lance returns every row's projected columns and
DuckDB filters them afterwards (``bench/bench_scale.py``, "caption LIKE"). Lance evaluates
``contains(col, 'x')`` itself, from its NGRAM index where the column has one
(:data:`lakehouse.storage.scan.SCALAR_INDEXES`). :func:`pushed` finds, in the parsed query, the
top-level ``AND`` terms of a ``WHERE`` of the form ``<column> LIKE '<pattern>'`` or
``contains(<column>, '<text>')`` whose column is a column of ``clips`` (directly, or passed
through unchanged by views, CTEs and subqueries such as ``clip_facts``), and ANDs
``contains(column, run)`` for every literal run of the pattern to the filter DuckDB passes to
that scan for the one query.

The pushed filter only has to be implied by the query's own predicate: DuckDB still evaluates
the original ``WHERE``, so the result is the same with or without it. It is implied only when
the clips rows it drops cannot reach the result any other way, so the rewrite is conservative
and anything it cannot prove leaves the query alone: ``clips`` must be read exactly once (a
self-join or a CTE read twice is not rewritten), through joins on its preserved side only (not
the null-supplying side of an outer join), with nothing on the way that looks at other rows
(aggregates, windows, ``DISTINCT``, ``LIMIT``, samples, set operations), no CTE named
``clips`` or like a view, no table function or macro that could read ``clips`` unseen, and a
pattern that is a string constant or a bound parameter. ``OR`` and ``NOT`` terms are not
split, and terms inside expression subqueries (``EXISTS``, ``IN``) are not looked at. ``ILIKE``
is not pushed: PyArrow's Substrait conversion drops ``match_substring``'s ``ignore_case``, so
Lance would match case-sensitively and drop rows DuckDB keeps.

Pushing pays unless an index makes it slower: on a column with an NGRAM index a filter is
pushed only when at most :data:`INDEXED_MAX_FRACTION` of a fixed sample of rows pass it (see
:func:`_selective_enough`). A session that reads ``clips`` from its Parquet copy
(:mod:`lakehouse.storage.mirror`) points ``clips`` at the Lance dataset for the one query it pushes,
and pushes only rare phrases. ``sql.pushdown = false`` switches the whole rewrite off.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.query import parse
from lakehouse.query.parse import QUERY_NODES, conjuncts, string_constant

if TYPE_CHECKING:
    import pyarrow.compute as pc

    from lakehouse.query.session import Session

TABLE = "clips"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAYBE_PUSHABLE = re.compile(r"like|contains|~~", re.IGNORECASE)
# An indexed substring filter is pushed only when at most this share of rows passes it, as
# estimated on SAMPLE_ROWS evenly spaced rows (read once per session and column).
INDEXED_MAX_FRACTION = 0.10
# Against the Parquet copy of clips the index pays only for rarer phrases (10M clips: 0.6x the
# copy's time at 0.15% of the rows, 1.6x at 4.3%; bench/README.md, Scale).
MIRRORED_MAX_FRACTION = 0.01
SAMPLE_ROWS = 10_000


class _NotPushable(Exception):
    """Raised inside the analysis: the query is left as it is."""


@dataclass(frozen=True)
class Pushdown:
    """What one query pushes into the scan of ``clips``: ``(column, text)`` pairs, each
    ``contains(column, text)``, ANDed."""

    terms: tuple[tuple[str, str], ...]

    def expression(self) -> pc.Expression:
        import pyarrow.compute as pc

        exprs = [pc.match_substring(pc.field(column), text) for column, text in self.terms]
        result = exprs[0]
        for expr in exprs[1:]:
            result = result & expr
        return result


@contextmanager
def pushed(
    session: Session, sql: str, params: Sequence[Any] | Mapping[str, Any] | None
) -> Iterator[Pushdown | None]:
    """While the block runs, the scan of ``clips`` in ``session`` carries the query's
    pushable substring filters (see the module docstring); yields what was pushed, or None."""
    target = session.datasets.get(TABLE)
    plan = None
    if session.lh.config.sql.pushdown and hasattr(target, "extra_filter"):
        try:
            plan = plan_query(session, sql, params)
        except Exception:  # an optimization: on any surprise the query runs as written
            plan = None
    if plan is None:
        yield None
        return
    target.extra_filter = plan.expression()
    try:
        if TABLE in session.mirrored:
            session.read_from(TABLE, copy=False)  # the index answers this query, not the copy
        yield plan
    finally:
        target.extra_filter = None
        if TABLE in session.mirrored:
            session.read_from(TABLE, copy=True)


def plan_query(
    session: Session, sql: str, params: Sequence[Any] | Mapping[str, Any] | None
) -> Pushdown | None:
    """The substring filters ``sql`` lets the scan of ``clips`` apply, or None."""
    if not MAYBE_PUSHABLE.search(sql):
        return None  # no LIKE or contains: not worth parsing (most queries)
    context = _context(session)
    tree = context.parse(sql)
    if tree is None or len(tree) != 1:
        return None
    try:
        walk = _Walk(context, params)
        walk.query(tree[0]["node"], _Scope(), collect=True, user=True)
    except (_NotPushable, KeyError, TypeError, AttributeError, IndexError):
        return None  # an unexpected tree shape is not pushed, never an error
    if walk.reads != 1 or not walk.terms:
        return None
    plan = Pushdown(tuple(dict.fromkeys(walk.terms)))
    return plan if _selective_enough(context, plan) else None


def _selective_enough(context: _Context, plan: Pushdown) -> bool:
    """Whether pushing pays. Without an NGRAM index Lance filters while it scans, never slower
    than DuckDB filtering afterwards. With one, Lance answers from the index and then fetches
    the matching rows one by one: 10x faster for a rare phrase, but slower than a scan past
    ~10% of the rows (``bench/README.md``, Scale). So for an indexed column the share of
    matching rows is estimated on a fixed sample of the column, and a filter that passes too
    many is not pushed (the query runs as it does without the pushdown).

    Where the session reads ``clips`` from its Parquet copy (:mod:`lakehouse.storage.mirror`),
    DuckDB filters the copy faster than Lance scans, so only an indexed filter passing at most
    :data:`MIRRORED_MAX_FRACTION` of the sample is sent to Lance."""
    columns = sorted({column for column, _ in plan.terms})
    mirrored = TABLE in context.session.mirrored
    if not set(columns) & context.ngram_columns():
        return not mirrored
    sample = context.sample(columns)
    if sample.num_rows == 0:
        return not mirrored
    passing = sample.filter(plan.expression()).num_rows
    limit = MIRRORED_MAX_FRACTION if mirrored else INDEXED_MAX_FRACTION
    return passing <= limit * sample.num_rows


def like_runs(pattern: str) -> list[str]:
    """The literal runs between the wildcards of a ``LIKE`` pattern: every string matching the
    pattern contains each (DuckDB's ``LIKE`` has no escape character unless ``ESCAPE`` is
    given, which parses as another function and is not pushed)."""
    return [run for run in re.split(r"[%_]+", pattern) if run]


# -- the session's catalog, read once per session ------------------------------------------------


@dataclass
class _Context:
    session: Session
    views: dict[str, dict] = field(default_factory=dict)  # name -> parsed query node
    aggregates: frozenset[str] = frozenset()
    macros: frozenset[str] = frozenset()
    clips_columns: dict[str, str] = field(default_factory=dict)  # lower -> name, strings only
    columns: dict[str, list[str] | None] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)  # clips column -> pa.Array
    ngram: frozenset[str] | None = None

    def ngram_columns(self) -> frozenset[str]:
        """The clips columns with an NGRAM index."""
        if self.ngram is None:
            ds = self.session.datasets.get(TABLE)
            self.ngram = frozenset(
                name
                for index in (ds.describe_indices() if ds is not None else [])
                if "ngram" in str(index.index_type).lower()
                for name in index.field_names
            )
        return self.ngram

    def sample(self, columns: list[str]) -> Any:
        """The same SAMPLE_ROWS evenly spaced rows of ``columns`` of clips, as a table."""
        import pyarrow as pa

        ds = self.session.datasets[TABLE]
        missing = [c for c in columns if c not in self.samples]
        if missing:
            rows = ds.count_rows()
            step = max(1, rows // SAMPLE_ROWS)
            taken = ds.take(list(range(0, rows, step)), columns=missing)
            for name in missing:
                self.samples[name] = taken.column(name)
        return pa.table({c: self.samples[c] for c in columns})

    def parse(self, sql: str) -> list[dict] | None:
        tree = parse.tree(sql)
        return None if tree.get("error") else tree["statements"]

    def columns_of(self, name: str) -> list[str] | None:
        """The column names of a table or view, lower-cased (None: cannot tell)."""
        if name not in self.columns:
            self.columns[name] = None
            if IDENTIFIER.match(name):
                try:
                    rows = self.session.con.execute(f'DESCRIBE "{name}"').fetchall()
                    self.columns[name] = [str(row[0]).lower() for row in rows]
                except Exception:  # not describable: not pushable
                    pass
        return self.columns[name]


_CONTEXTS: weakref.WeakKeyDictionary[Any, _Context] = weakref.WeakKeyDictionary()


def _context(session: Session) -> _Context:
    if session not in _CONTEXTS:
        import pyarrow as pa

        context = _Context(session)
        rows = session.con.execute(
            "SELECT DISTINCT lower(function_name), function_type, internal FROM duckdb_functions()"
        ).fetchall()
        context.aggregates = frozenset(n for n, kind, _ in rows if kind == "aggregate")
        context.macros = frozenset(
            n for n, kind, internal in rows if kind in ("macro", "table_macro") and not internal
        )
        for name, body in session.view_sql.items():
            tree = context.parse(body.strip().rstrip(";"))
            if tree is not None and len(tree) == 1:
                context.views[name.lower()] = tree[0]["node"]
        ds = session.datasets.get(TABLE)
        if ds is not None:
            context.clips_columns = {
                f.name.lower(): f.name
                for f in ds.schema
                if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            }
        _CONTEXTS[session] = context
    return _CONTEXTS[session]


# -- the walk over the parsed query ------------------------------------------------------------


@dataclass
class _Scope:
    """The CTEs visible at a point of the query (innermost first)."""

    ctes: dict[str, tuple[dict, _Scope]] = field(default_factory=dict)
    parent: _Scope | None = None

    def lookup(self, name: str) -> tuple[dict, _Scope] | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.ctes:
                return scope.ctes[name]
            scope = scope.parent
        return None


@dataclass
class _Leaf:
    """One relation in a FROM clause: the clips table, another table, or a query node."""

    kind: str  # "clips", "table", "query" (a view or subquery), "cte"
    name: str = ""
    node: dict | None = None
    scope: _Scope | None = None
    sampled: bool = False


class _Walk:
    def __init__(self, context: _Context, params: Sequence[Any] | Mapping[str, Any] | None):
        self.context = context
        self.params = params
        self.reads = 0  # scans of clips, with each CTE and view read as often as referenced
        self.terms: list[tuple[str, str]] = []

    # Every query node is walked as DuckDB would read it: a CTE or view once per reference.
    def query(self, node: dict, outer: _Scope, *, collect: bool, user: bool) -> None:
        kind = node["type"]
        if kind not in ("SELECT_NODE", "SET_OPERATION_NODE"):
            raise _NotPushable(kind)  # recursive CTEs and the like
        scope, unreferenced = self.scope_of(node, outer, user=user)
        for body, body_scope in unreferenced:  # not run by DuckDB, but counted to be safe
            self.query(body, body_scope, collect=False, user=user)
        if kind == "SET_OPERATION_NODE":
            for child in node.get("children") or [node["left"], node["right"]]:
                self.query(child, scope, collect=collect, user=user)
            self.expressions(node.get("modifiers"), scope, user=user)
            return
        leaves = self.from_(node["from_table"], scope, collect=collect, user=user)
        for key in ("select_list", "where_clause", "group_expressions", "having", "qualify"):
            self.expressions(node.get(key), scope, user=user)
        self.expressions(node.get("modifiers"), scope, user=user)
        if collect and node.get("where_clause") and node.get("sample") is None:
            for term in conjuncts(node["where_clause"]):
                pushable = self._pushable(term, leaves, scope)
                if pushable is not None:
                    self.terms.extend(pushable)

    def scope_of(self, node: dict, outer: _Scope, *, user: bool) -> tuple[_Scope, list]:
        entries = (node.get("cte_map") or {}).get("map") or []
        scope = _Scope(parent=outer)
        for entry in entries:
            name = entry["key"].lower()
            value = entry["value"]
            if user and (name == TABLE or name in self.context.views):
                raise _NotPushable(f"CTE {name} shadows a table")
            if value.get("aliases") or value.get("key_targets"):
                raise _NotPushable("CTE column aliases")
            # a CTE sees the ones before it, not itself (non-recursive)
            scope.ctes[name] = (value["query_node"], _Scope(dict(scope.ctes), outer))
        referenced = set()
        _collect_names(node, referenced)
        unreferenced = [cte for name, cte in scope.ctes.items() if name not in referenced]
        return scope, unreferenced

    def from_(self, ref: dict, scope: _Scope, *, collect: bool, user: bool) -> list:
        """The relations of a FROM clause as ``(key, leaf, preserved)``; reads counted."""
        kind = ref["type"]
        if kind == "EMPTY":
            return []
        if kind == "BASE_TABLE":
            leaf = self.table(ref, scope, collect=collect, user=user)
            return [((ref.get("alias") or ref["table_name"]).lower(), leaf, True)]
        if kind == "SUBQUERY":
            if ref.get("column_name_alias"):
                raise _NotPushable("subquery column aliases")
            node = ref["subquery"]["node"]
            self.query(node, scope, collect=collect, user=user)
            sampled = ref.get("sample") is not None
            leaf = _Leaf("query", node=node, scope=scope, sampled=sampled)
            return [((ref.get("alias") or "").lower(), leaf, True)]
        if kind == "JOIN":
            if ref.get("ref_type") not in ("REGULAR", "CROSS"):
                raise _NotPushable("natural, positional, asof or lateral join")
            left = self.from_(ref["left"], scope, collect=collect, user=user)
            right = self.from_(ref["right"], scope, collect=collect, user=user)
            self.expressions(ref.get("condition"), scope, user=user)
            join = ref.get("join_type")
            keep_left, keep_right = {
                "INNER": (True, True),
                "LEFT": (True, False),
                "RIGHT": (False, True),
                "OUTER": (False, False),
                "SEMI": (True, False),
                "ANTI": (True, False),
            }.get(join, (None, None))
            if keep_left is None:
                raise _NotPushable(f"join type {join}")
            # an unqualified USING column is in both sides: _find finds it ambiguous
            return [(key, leaf, ok and keep_left) for key, leaf, ok in left] + [
                (key, leaf, ok and keep_right) for key, leaf, ok in right
            ]
        raise _NotPushable(f"FROM {kind}")  # table functions, pivots…

    def table(self, ref: dict, scope: _Scope, *, collect: bool, user: bool) -> _Leaf:
        if ref.get("schema_name") or ref.get("catalog_name") or ref.get("at_clause"):
            raise _NotPushable("qualified or time-travel table reference")
        if ref.get("column_name_alias"):
            raise _NotPushable("table column aliases")
        name = ref["table_name"].lower()
        sampled = ref.get("sample") is not None
        cte = scope.lookup(name)
        if cte is not None:
            self.query(cte[0], cte[1], collect=collect, user=user)
            return _Leaf("cte", name=name, node=cte[0], scope=cte[1], sampled=sampled)
        if name == TABLE:
            self.reads += 1
            return _Leaf("clips", name=name, sampled=sampled)
        if name in self.context.views:
            view = self.context.views[name]
            self.query(view, _Scope(), collect=collect, user=False)
            return _Leaf("query", name=name, node=view, scope=_Scope(), sampled=sampled)
        return _Leaf("table", name=name, sampled=sampled)

    def expressions(self, value: Any, scope: _Scope, *, user: bool) -> None:
        """Walk expressions for subqueries (their reads count) and refused constructs."""
        for item in parse.nodes(value, into=lambda n: n.get("type") not in QUERY_NODES):
            kind = item.get("type")
            if kind in QUERY_NODES:
                self.query(item, scope, collect=False, user=user)
            elif kind in ("TABLE_FUNCTION", "BASE_TABLE"):
                raise _NotPushable(kind)  # only inside query nodes, handled there
            elif (
                item.get("class") == "FUNCTION" and parse.function_name(item) in self.context.macros
            ):
                raise _NotPushable("macro")  # its body may read clips unseen

    # -- which WHERE terms push, and to which clips column -------------------------------------

    def _pushable(self, term: dict, leaves: list, scope: _Scope) -> list | None:
        if term.get("class") != "FUNCTION" or term.get("filter") or term.get("distinct"):
            return None
        name = str(term.get("function_name", "")).lower()
        if name not in ("~~", "contains") or term.get("schema") or term.get("catalog"):
            return None
        args = [a["expression"] for a in term.get("arguments") or []]
        if len(args) != 2 or args[0].get("class") != "COLUMN_REF":
            return None
        text = self._string(args[1])
        if text is None:
            return None
        runs = like_runs(text) if name == "~~" else ([text] if text else [])
        column = self._resolve(args[0]["column_names"], leaves)
        if column is None or not runs:
            return None
        return [(column, run) for run in runs]

    def _string(self, expr: dict) -> str | None:
        if expr.get("class") == "CONSTANT":
            return string_constant(expr)
        if expr.get("class") == "PARAMETER":
            key = str(expr.get("identifier", ""))
            value: Any = None
            if isinstance(self.params, Mapping):
                value = self.params.get(key, self.params.get("$" + key))
            elif isinstance(self.params, Sequence) and key.isdigit():
                index = int(key) - 1
                if 0 <= index < len(self.params):
                    value = self.params[index]
            return value if isinstance(value, str) else None
        return None

    def _resolve(self, names: list[str], leaves: list) -> str | None:
        """The clips column a column reference in a FROM with ``leaves`` reads, unchanged and
        on a preserved side; None if it is anything else or cannot be told."""
        found = _find(self.context, [n.lower() for n in names], leaves)
        if found is None:
            return None
        leaf, preserved, column = found
        return self._trace(leaf, column) if preserved else None

    def _trace(self, leaf: _Leaf, column: str) -> str | None:
        if leaf.sampled:
            return None
        if leaf.kind == "clips":
            return self.context.clips_columns.get(column)
        if leaf.kind not in ("query", "cte") or leaf.node is None or leaf.scope is None:
            return None
        node = leaf.node
        if node.get("type") != "SELECT_NODE" or not _row_wise(self.context, node):
            return None
        scope, _ = self._scope_quiet(node, leaf.scope)
        leaves = self._leaves(node["from_table"], scope)
        if leaves is None:
            return None
        candidates = []
        for entry in node["select_list"]:
            if entry.get("class") == "STAR":
                if entry.get("columns") or entry.get("expr") is not None:
                    return None
                if entry.get("rename_list") or entry.get("qualified_exclude_list"):
                    return None
                if entry.get("replace_list"):
                    return None
                excluded = {str(c).lower() for c in entry.get("exclude_list") or []}
                relation = str(entry.get("relation_name") or "").lower()
                covered = [x for x in leaves if not relation or x[0] == relation]
                if column in excluded:
                    continue
                for _, sub, preserved in covered:
                    columns = _leaf_columns(self.context, sub)
                    if columns is None and len(covered) > 1:
                        return None
                    if columns is None or column in columns:  # one relation: the trace tells
                        candidates.append((sub, preserved, column))
            else:
                alias = str(entry.get("alias") or "").lower()
                is_ref = entry.get("class") == "COLUMN_REF"
                output = alias or (entry["column_names"][-1].lower() if is_ref else "")
                if output != column:
                    continue
                if not is_ref:
                    return None  # computed: not the clips value
                found = _find(self.context, [n.lower() for n in entry["column_names"]], leaves)
                if found is None:
                    return None
                candidates.append(found)
        if len(candidates) != 1 or not candidates[0][1]:
            return None
        sub, _, name = candidates[0]
        return self._trace(sub, name)

    def _scope_quiet(self, node: dict, outer: _Scope) -> tuple[_Scope, list]:
        walk = _Walk(self.context, self.params)
        return walk.scope_of(node, outer, user=False)

    def _leaves(self, ref: dict, scope: _Scope) -> list | None:
        """The FROM leaves again, without counting reads."""
        walk = _Walk(self.context, self.params)
        try:
            return walk.from_(ref, scope, collect=False, user=False)
        except _NotPushable:
            return None


def _find(context: _Context, names: list[str], leaves: list) -> tuple[_Leaf, bool, str] | None:
    """The leaf a column reference binds to, whether it is preserved, and the column name."""
    if len(names) == 2:
        matches = [(leaf, ok) for key, leaf, ok in leaves if key == names[0]]
        return (*matches[0], names[1]) if len(matches) == 1 else None
    if len(names) != 1:
        return None
    if len(leaves) == 1:
        return leaves[0][1], leaves[0][2], names[0]
    holders = []
    for _, leaf, ok in leaves:
        columns = _leaf_columns(context, leaf)
        if columns is None:
            return None
        if names[0] in columns:
            holders.append((leaf, ok))
    return (*holders[0], names[0]) if len(holders) == 1 else None


def _leaf_columns(context: _Context, leaf: _Leaf) -> list[str] | None:
    if leaf.kind == "clips":
        return context.columns_of(TABLE)
    if leaf.kind == "table" or (leaf.kind == "query" and leaf.name in context.views):
        return context.columns_of(leaf.name)
    return None  # CTEs and subqueries: not needed by the queries this serves


def _row_wise(context: _Context, node: dict) -> bool:
    """Whether a SELECT maps each input row to output rows on its own (so a filter on one of
    its pass-through columns commutes with it)."""
    if node.get("group_expressions") or node.get("group_sets") or node.get("having"):
        return False
    if node.get("qualify") or node.get("sample") is not None:
        return False
    if node.get("aggregate_handling") != "STANDARD_HANDLING":
        return False
    if any(m.get("type") != "ORDER_MODIFIER" for m in node.get("modifiers") or []):
        return False  # LIMIT, DISTINCT
    for item in parse.nodes(node["select_list"], into=lambda n: n.get("type") not in QUERY_NODES):
        if item.get("type") in QUERY_NODES:
            continue  # a scalar subquery's own aggregates are its business
        if item.get("class") == "WINDOW":
            return False
        if item.get("class") == "FUNCTION" and parse.function_name(item) in context.aggregates:
            return False
    return True


def _collect_names(value: Any, out: set[str]) -> None:
    """Every table name referenced anywhere under ``value`` (CTE references included)."""
    for item in parse.nodes(value):
        if item.get("type") == "BASE_TABLE":
            out.add(parse.table_name(item).lower())
