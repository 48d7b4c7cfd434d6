"""Near-duplicate clusters: clips whose embeddings are within a cosine-similarity threshold.

Each clip is represented by one unit vector: its CLIP vector (``visual``) or the mean of its
caption-field vectors (``caption``). ``signals.duplicate_embedding = "auto"`` takes the visual
vectors when trained CLIP vectors exist for the configured model (a randomly initialised test
model's vectors say nothing about content) and the caption vectors otherwise.

Clustering is greedy and deterministic: clips are visited best first (longest, then sharpest,
then by id); a clip joins the first representative it is at least ``duplicate_threshold``
similar to, or becomes a representative itself. So every cluster has exactly one
representative, and every member is within the threshold of it (no chaining). The work is
``O(clips × representatives)`` matrix products, fine to a few hundred thousand clips; past that
an ANN query per clip (the ``search_index``) would replace the dense product.

Subset SQL excludes the duplicates with ``from exclude_near_duplicates(clip_facts)`` (a DuckDB
table macro registered in every session) or ``where near_duplicate_of is null``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from lakehouse.embeddings import CLIP_TABLE, TEXT_TABLE
from lakehouse.errors import ConfigError
from lakehouse.models import RANDOM_TAG, resolve_clip, resolve_text
from lakehouse.stage import StageResult
from lakehouse.store import WriteResult, sql_literal

if TYPE_CHECKING:
    import numpy as np

    from lakehouse.store import Lakehouse

TABLE = "near_duplicates"
EMBEDDINGS = ("auto", "caption", "visual")
# registered in every SQL session (lakehouse.semantic_sql); ``t`` is a table or view name
MACROS = """
CREATE OR REPLACE MACRO exclude_near_duplicates(t) AS TABLE
    SELECT * FROM query_table(t)
    WHERE clip_id NOT IN (
        SELECT clip_id FROM near_duplicates WHERE near_duplicate_of IS NOT NULL
    );
"""


def clip_vectors(lh: Lakehouse, kind: str) -> tuple[str, str | None, list[str], np.ndarray]:
    """``(kind, model_id, clip_ids, unit vectors)`` for ``kind`` = caption | visual | auto."""
    import numpy as np

    if kind not in EMBEDDINGS:
        raise ConfigError(
            f"signals.duplicate_embedding is {kind!r}; use one of {', '.join(EMBEDDINGS)}."
        )
    if kind in ("auto", "visual"):
        model_id = resolve_clip(lh.config.models, check_online=False).model_id
        if model_id and lh.exists(CLIP_TABLE) and (kind == "visual" or RANDOM_TAG not in model_id):
            data = lh.read(
                CLIP_TABLE,
                columns=["clip_id", "vector"],
                filter=f"model_id = {sql_literal(model_id)}",
            )
            if data.num_rows or kind == "visual":
                return "visual", model_id, *_unit(data.column("clip_id").to_pylist(), data)
    model_id = resolve_text(lh.config.models, check_online=False).model_id
    if not model_id or not lh.exists(TEXT_TABLE):
        return "caption", model_id, [], np.zeros((0, 1), np.float32)
    data = lh.read(
        TEXT_TABLE, columns=["clip_id", "vector"], filter=f"model_id = {sql_literal(model_id)}"
    )
    sums: dict[str, Any] = defaultdict(float)
    vectors = (
        np.stack(data.column("vector").to_numpy(zero_copy_only=False)) if data.num_rows else []
    )
    for clip_id, vector in zip(data.column("clip_id").to_pylist(), vectors, strict=True):
        sums[clip_id] = sums[clip_id] + vector
    ids = sorted(sums)
    if not ids:
        return "caption", model_id, [], np.zeros((0, 1), np.float32)
    matrix = np.stack([sums[c] for c in ids]).astype(np.float32)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return "caption", model_id, ids, matrix


def _unit(ids: list[str], data: Any) -> tuple[list[str], np.ndarray]:
    import numpy as np

    if not ids:
        return [], np.zeros((0, 1), np.float32)
    matrix = np.stack(data.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return ids, matrix


def cluster(matrix: np.ndarray, order: list[int], threshold: float) -> list[tuple[int, float]]:
    """Greedy leader clustering: ``(representative index, similarity to it)`` per row."""
    import numpy as np

    out: list[tuple[int, float]] = [(-1, 0.0)] * len(matrix)
    leaders: list[int] = []
    block = np.zeros((0, matrix.shape[1]), np.float32)
    for i in order:
        if len(leaders):
            sims = block @ matrix[i]
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                out[i] = (leaders[best], float(sims[best]))
                continue
        leaders.append(i)
        block = np.vstack([block, matrix[i][None, :]])
        out[i] = (i, 1.0)
    return out


def find_near_duplicates(lh: Lakehouse, *, run_id: str) -> StageResult:
    """Cluster every clip with an embedding; one row per clip in ``near_duplicates``."""
    settings = lh.config.signals
    kind, model_id, ids, matrix = clip_vectors(lh, settings.duplicate_embedding)
    facts = {
        r["clip_id"]: r
        for r in lh.sql("select clip_id, source, duration_s, sharpness from clip_facts").to_pylist()
    }
    keep = [i for i, c in enumerate(ids) if c in facts]
    ids, matrix = [ids[i] for i in keep], matrix[keep] if keep else matrix[:0]

    def priority(i: int) -> tuple[float, float, str]:
        fact = facts[ids[i]]
        return (-(fact["duration_s"] or 0.0), -(fact["sharpness"] or 0.0), ids[i])

    assignment = cluster(
        matrix, sorted(range(len(ids)), key=priority), settings.duplicate_threshold
    )
    sizes: dict[int, int] = defaultdict(int)
    for leader, _ in assignment:
        sizes[leader] += 1
    rows = []
    for i, (leader, similarity) in enumerate(assignment):
        rows.append(
            {
                "clip_id": ids[i],
                "source": facts[ids[i]]["source"],
                "cluster_id": ids[leader],
                "near_duplicate_of": None if leader == i else ids[leader],
                "is_representative": leader == i,
                "similarity": round(similarity, 6),
                "cluster_size": sizes[leader],
                "embedding": kind,
                "model_id": model_id,
                "threshold": settings.duplicate_threshold,
                "run_id": run_id,
            }
        )
    write = lh.sync(TABLE, rows, scope="clip_id IS NOT NULL") if rows or lh.exists(TABLE) else None
    duplicates = sum(r["near_duplicate_of"] is not None for r in rows)
    return StageResult(
        TABLE,
        "*",
        TABLE,
        write or WriteResult(TABLE),
        rows=len(rows),
        details={
            "embedding": kind,
            "model_id": model_id or "",
            "threshold": settings.duplicate_threshold,
            "clusters": len(sizes),
            "near_duplicates": duplicates,
            **({} if rows else {"message": "no clip has an embedding yet; run the embed job"}),
        },
    )
