"""Semantic search over clips: visual (CLIP text→image), caption (sentence embeddings), text
(BM25 full-text over caption fields) and hybrid (reciprocal-rank fusion), with an SQL prefilter.

The ``where`` predicate is SQL over ``clip_facts`` columns. It is parsed by DuckDB first (one
expression, nothing else). When it only reads the clip metadata stored next to every vector
(``schemas.SEARCH_METADATA``), it runs inside Lance as a prefilter; otherwise DuckDB evaluates it
in the locked-down session and the search is restricted to the clips it returns. Either way the
filter is applied before ranking, so a selective filter never loses results: when few rows pass
it, the vectors are scanned exactly instead of through the ANN index.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from lakehouse import schemas
from lakehouse.embeddings import CLIP_TABLE, TEXT_TABLE
from lakehouse.errors import InputError, ModelUnavailableError, QueryError
from lakehouse.locks import lakehouse_lock
from lakehouse.models import load_clip, load_text, resolve_clip, resolve_text
from lakehouse.store import commit_with_retry, in_list, sql_literal
from lakehouse.vectors import vector_table

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from lakehouse.config import ModelSettings
    from lakehouse.store import Lakehouse

MODES = ("visual", "caption", "text", "hybrid")
RESULT_COLUMNS = [
    "clip_id",
    "score",
    "uri",
    "start_s",
    "end_s",
    "duration_s",
    "viewpoint",
    "short_caption",
    "source",
    "video_id",
]
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


@cache
def _parser() -> Any:
    """A bare DuckDB connection used only to parse predicates (no data, nothing to reach)."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def compile_where(lh: Lakehouse, where: str | None, params: Sequence[Any] = ()) -> Filter:
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
    from lakehouse.sql import Session

    with Session(lh) as session:
        ids = session.query(_where_query(text)).column("clip_id").to_pylist()
    return Filter(clip_ids=frozenset(ids))


def _where_query(text: str) -> str:
    return f"SELECT clip_id FROM clip_facts WHERE ({text})"


@lru_cache(maxsize=1024)
def _analyse(text: str) -> bool:
    """Parse a bound predicate (DuckDB's parser); True when Lance can evaluate it itself.
    Cached: a predicate's text alone decides both (a refused one raises every time)."""
    import duckdb

    query = _where_query(text)
    con = _parser().cursor()
    try:
        statements = con.extract_statements(query)
        if len(statements) != 1 or statements[0].type.name != "SELECT":
            raise QueryError("The --where predicate must be a single SQL condition, no ';'.")
        node = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
    except duckdb.Error as exc:
        raise QueryError(f"The --where predicate does not parse: {_line(exc)}") from None
    finally:
        con.close()
    if node.get("error"):
        raise QueryError(f"The --where predicate does not parse: {node.get('error_message')}")
    select = node["statements"][0]["node"]
    table = select.get("from_table") or {}
    if (
        select.get("type") != "SELECT_NODE"
        or len(select.get("select_list", [])) != 1
        or table.get("table_name") != "clip_facts"
        or not select.get("where_clause")
    ):
        raise QueryError("The --where predicate must be a condition on clip_facts columns only.")
    return _pushable(select["where_clause"])


def _lance_accepts(lh: Lakehouse, text: str) -> bool:
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


def _pushable(node: Any) -> bool:
    if isinstance(node, list):
        return all(_pushable(n) for n in node)
    if not isinstance(node, dict):
        return True
    if "class" in node and "type" in node:
        if node["type"] not in PUSHDOWN_NODES:
            return False
        if node["type"] == "COLUMN_REF" and node["column_names"][-1] not in PUSHDOWN_COLUMNS:
            return False
    return all(_pushable(v) for k, v in node.items() if k not in ("column_names", "value"))


def _line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


# -- models, cached per process -------------------------------------------------------------


@cache
def _clip_model(settings: ModelSettings) -> Any:
    return load_clip(settings)


@cache
def _text_model(settings: ModelSettings) -> Any:
    return load_text(settings)


def embed_query(lh: Lakehouse, text: str, kind: str) -> tuple[np.ndarray, str]:
    """Embed a query with the configured CLIP (``visual``) or caption (``caption``) model."""
    settings = lh.config.models
    if kind == "visual":
        resolved = resolve_clip(settings)
        if not resolved.available:
            raise ModelUnavailableError(f"Visual search needs CLIP weights: {resolved.message}")
        model = _clip_model(settings)
        return model.encode_texts([text])[0], model.model_id
    resolved = resolve_text(settings)
    if not resolved.available:
        raise ModelUnavailableError(f"Caption search needs a text model: {resolved.message}")
    model = _text_model(settings)
    return model.encode([text])[0], model.model_id


# -- one ranked list per mode -------------------------------------------------------------


def _table(lh: Lakehouse, name: str) -> Any:
    table = lh.lancedb_table(name)
    if table is None:
        raise InputError(
            f"There is no {name} table yet; ingest a source (or run `lakehouse embed`) first."
        )
    return table


def vector_hits(
    lh: Lakehouse,
    table_name: str,
    vector: np.ndarray,
    model_id: str,
    flt: Filter,
    limit: int,
) -> list[dict[str, Any]]:
    """Rows nearest ``vector`` (score = cosine similarity), filtered before ranking; how the
    query runs (exact or through the ANN index) is decided in :mod:`lakehouse.vectors`."""
    columns = ["clip_id", *schemas.SEARCH_METADATA_NAMES]
    if table_name == TEXT_TABLE:
        columns.insert(1, "field")
    if flt.clip_ids is not None and len(flt.clip_ids) > IN_LIST_MAX:
        return _scan_hits(lh, table_name, vector, model_id, flt, limit, columns)
    rows, _ = vector_table(lh, table_name).nearest(
        vector, model_id=model_id, condition=flt.condition(), columns=columns, limit=limit
    )
    return rows


def _scan_hits(
    lh: Lakehouse,
    table_name: str,
    vector: np.ndarray,
    model_id: str,
    flt: Filter,
    limit: int,
    columns: list[str],
) -> list[dict[str, Any]]:
    """Exact scan for a filter DuckDB evaluated into a very large set of clip ids."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ds = lh.published_dataset(table_name)
    keep = pa.array(sorted(flt.clip_ids or ()))
    best: list[dict[str, Any]] = []
    for batch in ds.to_batches(
        columns=[*columns, "vector"], filter=f"model_id = {sql_literal(model_id)}"
    ):
        batch = batch.filter(pc.is_in(batch.column("clip_id"), value_set=keep))
        if batch.num_rows == 0:
            continue
        matrix = np.stack(batch.column("vector").to_numpy(zero_copy_only=False))
        scores = matrix @ vector
        top = np.argsort(-scores)[:limit]
        rows = batch.take(pa.array(top)).drop_columns(["vector"]).to_pylist()
        for row, i in zip(rows, top, strict=True):
            row["score"] = float(scores[i])
        best = sorted(best + rows, key=lambda r: -r["score"])[:limit]
    return best


def text_hits(lh: Lakehouse, query: str, model_id: str, flt: Filter, limit: int) -> list[dict]:
    """BM25 full-text hits over the caption fields (score = BM25)."""
    table = _table(lh, TEXT_TABLE)
    ensure_fts_index(table)
    columns = ["clip_id", "field", *schemas.SEARCH_METADATA_NAMES, "_score"]
    over = flt.clip_ids is not None and len(flt.clip_ids) > IN_LIST_MAX
    expression = f"model_id = {sql_literal(model_id)}" if over else flt.lance(model_id)
    builder = table.search(query, query_type="fts").where(expression, prefilter=True)
    rows = builder.select(columns).limit(limit * (20 if over else 1)).to_arrow().to_pylist()
    if over:
        rows = [r for r in rows if r["clip_id"] in flt.clip_ids][:limit]
    for row in rows:
        row["score"] = row.pop("_score")
    return rows


def ensure_fts_index(table: Any) -> None:
    """Build the full-text index on first use (new rows are searched unindexed until the
    search_index asset refreshes it)."""
    from lancedb.index import FTS

    if not any(i.index_type == "FTS" for i in table.list_indices()):
        table.create_index("text", config=FTS(), replace=False)


def _best_per_clip(rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["clip_id"] not in best or row["score"] > best[row["clip_id"]]["score"]:
            best[row["clip_id"]] = row
    return sorted(best.values(), key=lambda r: -r["score"])[:k]


def fuse(ranked_lists: list[list[dict[str, Any]]], k: int, rrf_k: int = 60) -> list[dict]:
    """Reciprocal-rank fusion: score = sum over lists of 1 / (rrf_k + rank)."""
    fused: dict[str, dict[str, Any]] = {}
    for hits in ranked_lists:
        for rank, row in enumerate(hits, start=1):
            entry = fused.setdefault(row["clip_id"], {**row, "score": 0.0})
            entry["score"] += 1.0 / (rrf_k + rank)
    return sorted(fused.values(), key=lambda r: -r["score"])[:k]


# -- the public entry point -----------------------------------------------------------------


def search(
    lh: Lakehouse,
    text: str | None = None,
    *,
    like: str | None = None,
    vector: Sequence[float] | None = None,
    where: str | None = None,
    params: Sequence[Any] = (),
    k: int = 10,
    mode: str = "hybrid",
) -> pa.Table:
    """Rank clips by ``text`` (or like the clip ``like``, or near ``vector``) within ``where``.

    Returns an Arrow table with columns ``RESULT_COLUMNS`` (plus ``mode``), best first.
    """
    import pyarrow as pa

    if mode not in MODES:
        raise InputError(f"Unknown search mode {mode!r}; choose one of {', '.join(MODES)}.")
    if sum(x is not None for x in (text, like, vector)) != 1:
        raise InputError("Search needs exactly one of a query text, --like CLIP_ID or a vector.")
    if not 1 <= k <= 10_000:
        raise InputError("k must be between 1 and 10000.")
    flt = compile_where(lh, where, params)
    fields = len(lh.config.models.text_fields)
    if vector is not None:
        hits = _by_vector(lh, vector, mode, flt, k)
    elif like is not None:
        hits = _like(lh, like, mode, flt, k)
    elif mode == "text":
        hits = _best_per_clip(text_hits(lh, text, _text_model_id(lh), flt, k * fields), k)
    elif mode in ("visual", "caption"):
        hits = _semantic(lh, text, mode, flt, k)
    else:
        hits = _hybrid(lh, text, flt, k)
    rows = [{c: h.get(c) for c in RESULT_COLUMNS} | {"mode": mode} for h in hits]
    schema = pa.schema(
        [
            pa.field("clip_id", pa.string()),
            pa.field("score", pa.float64()),
            *[
                schemas.SEARCH_METADATA[schemas.SEARCH_METADATA_NAMES.index(c)]
                for c in RESULT_COLUMNS[2:]
            ],
            pa.field("mode", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _text_model_id(lh: Lakehouse) -> str:
    resolved = resolve_text(lh.config.models, check_online=False)
    if resolved.model_id:
        return resolved.model_id
    # no model here: search the newest text vectors by whichever model made them
    table = _table(lh, TEXT_TABLE)
    ids = table.search().select(["model_id"]).limit(1).to_arrow().column("model_id").to_pylist()
    if not ids:
        raise InputError("There are no caption embeddings yet; ingest annotated clips first.")
    return ids[0]


def _semantic(lh: Lakehouse, text: str, mode: str, flt: Filter, k: int) -> list[dict]:
    vector, model_id = embed_query(lh, text, mode)
    if mode == "visual":
        return vector_hits(lh, CLIP_TABLE, vector, model_id, flt, k)
    fields = len(lh.config.models.text_fields)
    rows = vector_hits(lh, TEXT_TABLE, vector, model_id, flt, k * fields)
    return _best_per_clip(rows, k)


def _hybrid(lh: Lakehouse, text: str, flt: Filter, k: int) -> list[dict]:
    depth = max(k * 3, 30)
    lists = [_semantic(lh, text, "caption", flt, depth)]
    fields = len(lh.config.models.text_fields)
    bm25 = text_hits(lh, text, _text_model_id(lh), flt, depth * fields)
    lists.append(_best_per_clip(bm25, depth))
    if resolve_clip(lh.config.models, check_online=False).model_id and lh.exists(CLIP_TABLE):
        lists.append(_semantic(lh, text, "visual", flt, depth))
    return fuse(lists, k, lh.config.search.rrf_k)


def _by_vector(lh: Lakehouse, vector: Sequence[float], mode: str, flt: Filter, k: int) -> list:
    import numpy as np

    if mode not in ("visual", "caption"):
        raise InputError("A vector query needs --mode visual or caption.")
    table = CLIP_TABLE if mode == "visual" else TEXT_TABLE
    resolved = resolve_clip(lh.config.models, check_online=False) if mode == "visual" else None
    model_id = resolved.model_id if resolved else _text_model_id(lh)
    if model_id is None:
        raise ModelUnavailableError(resolved.message if resolved else "no text model")
    q = np.asarray(vector, dtype=np.float32)
    rows = vector_hits(lh, table, q, model_id, flt, k if mode == "visual" else k * 4)
    return rows if mode == "visual" else _best_per_clip(rows, k)


def _like(lh: Lakehouse, clip_id: str, mode: str, flt: Filter, k: int) -> list[dict]:
    import numpy as np

    visual = resolve_clip(lh.config.models, check_online=False).model_id
    if mode in ("visual", "hybrid") and visual and lh.exists(CLIP_TABLE):
        rows = lh.read(
            CLIP_TABLE,
            columns=["vector"],
            filter=f"clip_id = {sql_literal(clip_id)} AND model_id = {sql_literal(visual)}",
        )
        if rows.num_rows:
            q = np.asarray(rows.column("vector")[0].as_py(), dtype=np.float32)
            hits = vector_hits(lh, CLIP_TABLE, q, visual, flt, k + 1)
            return [h for h in hits if h["clip_id"] != clip_id][:k]
    if mode == "visual":
        raise InputError(f"Clip {clip_id!r} has no visual embedding for the configured CLIP model.")
    model_id = _text_model_id(lh)
    rows = lh.read(
        TEXT_TABLE,
        columns=["vector"],
        filter=f"clip_id = {sql_literal(clip_id)} AND model_id = {sql_literal(model_id)}",
    )
    if not rows.num_rows:
        raise InputError(f"Clip {clip_id!r} has no embeddings to compare with; check the id.")
    q = np.mean(np.stack(rows.column("vector").to_numpy(zero_copy_only=False)), axis=0)
    q = (q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32)
    fields = len(lh.config.models.text_fields)
    hits = _best_per_clip(vector_hits(lh, TEXT_TABLE, q, model_id, flt, (k + 1) * fields), k + 1)
    return [h for h in hits if h["clip_id"] != clip_id][:k]


# -- indexes ---------------------------------------------------------------------------------


# LanceDB's names of the scalar index types (list_indices().index_type)
SCALAR_INDEX_TYPES = frozenset({"BTree", "Bitmap", "LabelList", "NGram"})


def refresh_indexes(lh: Lakehouse) -> dict[str, Any]:
    """Build or refresh the search indexes: ANN on vectors past ``search.ann_min_rows``,
    full-text on caption text, scalar indexes on the filter columns of the vector tables and of
    the SQL tables (``lakehouse.scan``). Incremental once built."""
    from lakehouse.scan import refresh_scalar_indexes

    report: dict[str, Any] = {}
    for name in (CLIP_TABLE, TEXT_TABLE):
        table = lh.lancedb_table(name, latest=True)
        if table is None:
            continue
        # two runs refreshing one table conflict on the index commit: one at a time (a lock on
        # local roots), and a conflict is retried after re-reading which indexes exist
        with lakehouse_lock(lh, f"index-{name}"):
            report[name] = commit_with_retry(
                name, lambda table=table, name=name: _refresh(lh, table, name)
            )
    report.update(refresh_scalar_indexes(lh))
    return report


def _refresh(lh: Lakehouse, table: Any, name: str) -> dict[str, Any]:
    from lancedb.index import Bitmap, BTree, IvfRq

    from lakehouse.scan import fold_new_rows

    settings = lh.config.search
    rows = table.count_rows()
    existing = {tuple(i.columns): i for i in table.list_indices()}
    actions = []
    for column, config in (
        ("clip_id", BTree()),
        ("model_id", Bitmap()),
        ("viewpoint", Bitmap()),
        ("source", Bitmap()),
        ("duration_s", BTree()),
        ("taxonomy_l1", Bitmap()),
        ("taxonomy_l2", Bitmap()),
        ("taxonomy_l3", Bitmap()),
    ):
        if (column,) not in existing and rows:
            table.create_index(column, config=config)
            actions.append(f"scalar index on {column}")
    if name == TEXT_TABLE and ("text",) not in existing and rows:
        ensure_fts_index(table)
        actions.append("full-text index on text")
    if ("vector",) not in existing and rows >= settings.ann_min_rows:
        table.create_index(
            "vector",
            config=IvfRq(distance_type="dot", num_bits=1),
        )
        actions.append("ANN index (IVF_RQ) on vector")
    elif existing:
        # the vector and full-text indexes take in new rows on every refresh (an unindexed
        # vector costs every search a full comparison); the scalar ones once the new rows pass
        # sql.index_lag_fraction of the table (until then prefilters scan those rows)
        lag = lh.config.sql.index_lag_fraction * rows
        due = {
            i.name: i.num_unindexed_rows
            for i in table.list_indices()
            if (i.num_unindexed_rows or 0)
            and (i.index_type not in SCALAR_INDEX_TYPES or i.num_unindexed_rows > lag)
        }
        if due:
            # fold the new rows into the indexes only: LanceDB's table.optimize() also
            # compacts, which rewrites every fragment under 1M rows (the whole table, when
            # it was written in batches) for each increment
            fold_new_rows(lh.dataset(name), index_names=list(due))
            actions.append(f"indexes refreshed ({max(due.values())} new rows)")
    return {"rows": rows, "actions": actions or ["up to date"]}
