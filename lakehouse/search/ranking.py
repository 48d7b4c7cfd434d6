"""Semantic search over clips: visual (CLIP text→image), caption (sentence embeddings), text
(BM25 full-text over caption fields) and hybrid (reciprocal-rank fusion), with an SQL prefilter
(:mod:`lakehouse.search.filters`) applied before ranking. How each vector query runs (exact or
through the ANN index) is decided in :mod:`lakehouse.search.vectors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lakehouse.core import schemas
from lakehouse.core.errors import InputError, ModelUnavailableError
from lakehouse.core.schemas import CLIP_TABLE, TEXT_TABLE
from lakehouse.models.queries import embed_query
from lakehouse.models.resolve import resolve_clip, resolve_text
from lakehouse.search.filters import IN_LIST_MAX, Filter, compile_where
from lakehouse.search.indexes import ensure_fts_index
from lakehouse.search.vectors import vector_table
from lakehouse.storage.filters import in_list, sql_literal
from lakehouse.storage.vectors import read_vectors, vector_batches

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from lakehouse.storage.store import Store

MODES = ("visual", "caption", "text", "hybrid")
RESULT_COLUMNS = [
    "clip_id",
    "external_id",  # the user's own id of the clip (annotation clip_id), from the clip row
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
# -- one ranked list per mode -------------------------------------------------------------


def _table(lh: Store, name: str) -> Any:
    table = lh.lancedb_table(name)
    if table is None:
        raise InputError(
            f"There is no {name} table yet; ingest a source (or run `lakehouse embed`) first."
        )
    return table


def vector_hits(
    lh: Store,
    table_name: str,
    vector: np.ndarray,
    model_id: str,
    flt: Filter,
    limit: int,
) -> list[dict[str, Any]]:
    """Rows nearest ``vector`` (score = cosine similarity), filtered before ranking; how the
    query runs (exact or through the ANN index) is decided in :mod:`lakehouse.search.vectors`."""
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
    lh: Store,
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

    keep = pa.array(sorted(flt.clip_ids or ()))
    best: list[dict[str, Any]] = []
    for others, matrix in vector_batches(
        lh.published_dataset(table_name),
        columns=columns,
        filter=f"model_id = {sql_literal(model_id)}",
    ):
        mask = pc.is_in(others.column("clip_id"), value_set=keep)
        inside = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        if not len(inside):
            continue
        scores = matrix[inside] @ vector
        top = np.argsort(-scores)[:limit]
        rows = others.take(pa.array(inside[top])).to_pylist()
        for row, i in zip(rows, top, strict=True):
            row["score"] = float(scores[i])
        best = sorted(best + rows, key=lambda r: -r["score"])[:limit]
    return best


def text_hits(lh: Store, query: str, model_id: str, flt: Filter, limit: int) -> list[dict]:
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
    lh: Store,
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
    external = external_ids(lh, [h["clip_id"] for h in hits])
    rows = [
        {c: h.get(c) for c in RESULT_COLUMNS}
        | {"external_id": external.get(h["clip_id"]), "mode": mode}
        for h in hits
    ]
    schema = pa.schema(
        [
            pa.field("clip_id", pa.string()),
            pa.field("external_id", pa.string()),
            pa.field("score", pa.float64()),
            *[
                schemas.SEARCH_METADATA[schemas.SEARCH_METADATA_NAMES.index(c)]
                for c in RESULT_COLUMNS[3:]
            ],
            pa.field("mode", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def external_ids(lh: Store, clip_ids: list[str]) -> dict[str, str | None]:
    """The user's own id (``external_id``) of each clip, from the clips readers see."""
    ds = lh.published_dataset("clips") if clip_ids else None
    if ds is None:
        return {}
    rows = ds.to_table(columns=["clip_id", "external_id"], filter=in_list("clip_id", clip_ids))
    return dict(
        zip(rows.column("clip_id").to_pylist(), rows.column("external_id").to_pylist(), strict=True)
    )


def _text_model_id(lh: Store) -> str:
    resolved = resolve_text(lh.config.models, check_online=False)
    if resolved.model_id:
        return resolved.model_id
    # no model here: search the newest text vectors by whichever model made them
    table = _table(lh, TEXT_TABLE)
    ids = table.search().select(["model_id"]).limit(1).to_arrow().column("model_id").to_pylist()
    if not ids:
        raise InputError("There are no caption embeddings yet; ingest annotated clips first.")
    return ids[0]


def _semantic(lh: Store, text: str, mode: str, flt: Filter, k: int) -> list[dict]:
    vector, model_id = embed_query(lh.config.models, text, mode)
    if mode == "visual":
        return vector_hits(lh, CLIP_TABLE, vector, model_id, flt, k)
    fields = len(lh.config.models.text_fields)
    rows = vector_hits(lh, TEXT_TABLE, vector, model_id, flt, k * fields)
    return _best_per_clip(rows, k)


def _hybrid(lh: Store, text: str, flt: Filter, k: int) -> list[dict]:
    depth = max(k * 3, 30)
    lists = [_semantic(lh, text, "caption", flt, depth)]
    fields = len(lh.config.models.text_fields)
    bm25 = text_hits(lh, text, _text_model_id(lh), flt, depth * fields)
    lists.append(_best_per_clip(bm25, depth))
    if resolve_clip(lh.config.models, check_online=False).model_id and lh.exists(CLIP_TABLE):
        lists.append(_semantic(lh, text, "visual", flt, depth))
    return fuse(lists, k, lh.config.search.rrf_k)


def _by_vector(lh: Store, vector: Sequence[float], mode: str, flt: Filter, k: int) -> list:
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


def _like(lh: Store, clip_id: str, mode: str, flt: Filter, k: int) -> list[dict]:
    import numpy as np

    visual = resolve_clip(lh.config.models, check_online=False).model_id
    if mode in ("visual", "hybrid") and visual and lh.exists(CLIP_TABLE):
        found = read_vectors(
            lh.dataset(CLIP_TABLE),
            filter=f"clip_id = {sql_literal(clip_id)} AND model_id = {sql_literal(visual)}",
        )
        if len(found):
            hits = vector_hits(lh, CLIP_TABLE, found.matrix[0], visual, flt, k + 1)
            return [h for h in hits if h["clip_id"] != clip_id][:k]
    if mode == "visual":
        raise InputError(f"Clip {clip_id!r} has no visual embedding for the configured CLIP model.")
    model_id = _text_model_id(lh)
    found = read_vectors(
        lh.dataset(TEXT_TABLE),
        filter=f"clip_id = {sql_literal(clip_id)} AND model_id = {sql_literal(model_id)}",
    )
    if not len(found):
        raise InputError(f"Clip {clip_id!r} has no embeddings to compare with; check the id.")
    q = np.mean(found.matrix, axis=0)
    q = (q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32)
    fields = len(lh.config.models.text_fields)
    hits = _best_per_clip(vector_hits(lh, TEXT_TABLE, q, model_id, flt, (k + 1) * fields), k + 1)
    return [h for h in hits if h["clip_id"] != clip_id][:k]
