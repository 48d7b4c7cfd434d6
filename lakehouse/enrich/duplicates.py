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
table macro of every SQL session, :mod:`lakehouse.query.semantic`) or ``where
near_duplicate_of is null``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import ConfigError
from lakehouse.core.schemas import CLIP_TABLE, DUPLICATES_TABLE, TEXT_TABLE
from lakehouse.ingest.stage import StageResult
from lakehouse.models.resolve import RANDOM_TAG, resolve_clip, resolve_text
from lakehouse.storage.filters import sql_literal
from lakehouse.storage.vectors import read_vectors, unit_rows
from lakehouse.storage.writes import WriteResult

if TYPE_CHECKING:
    import numpy as np

    from lakehouse.storage.store import Store

TABLE = DUPLICATES_TABLE
EMBEDDINGS = ("auto", "caption", "visual")


def clip_vectors(lh: Store, kind: str) -> tuple[str, str | None, list[str], np.ndarray]:
    """``(kind, model_id, clip_ids, unit vectors)`` for ``kind`` = caption | visual | auto."""
    import numpy as np

    if kind not in EMBEDDINGS:
        raise ConfigError(
            f"signals.duplicate_embedding is {kind!r}; use one of {', '.join(EMBEDDINGS)}."
        )
    if kind in ("auto", "visual"):
        model_id = resolve_clip(lh.config.models, check_online=False).model_id
        if model_id and lh.exists(CLIP_TABLE) and (kind == "visual" or RANDOM_TAG not in model_id):
            found = read_vectors(
                lh.dataset(CLIP_TABLE),
                columns=["clip_id"],
                filter=f"model_id = {sql_literal(model_id)}",
            )
            if len(found) or kind == "visual":
                return "visual", model_id, found.columns["clip_id"], unit_rows(found.matrix)
    model_id = resolve_text(lh.config.models, check_online=False).model_id
    if not model_id or not lh.exists(TEXT_TABLE):
        return "caption", model_id, [], np.zeros((0, 1), np.float32)
    found = read_vectors(
        lh.dataset(TEXT_TABLE),
        columns=["clip_id"],
        filter=f"model_id = {sql_literal(model_id)}",
    )
    if not len(found):
        return "caption", model_id, [], np.zeros((0, 1), np.float32)
    # the mean of each clip's caption-field vectors (clips sorted by id)
    ids, inverse = np.unique(
        np.asarray(found.columns["clip_id"], dtype=object), return_inverse=True
    )
    sums = np.zeros((len(ids), found.matrix.shape[1]), np.float32)
    np.add.at(sums, inverse, found.matrix)
    return "caption", model_id, [str(i) for i in ids], unit_rows(sums)


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


def find_near_duplicates(lh: Store, *, run_id: str) -> StageResult:
    """Cluster every clip with an embedding; one row per clip in ``near_duplicates``."""
    settings = lh.config.signals
    kind, model_id, ids, matrix = clip_vectors(lh, settings.duplicate_embedding)
    facts = {r["clip_id"]: r for r in _facts(lh)}
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


# What the clustering orders clips by (what clip_facts shows for them): each clip's duration and
# the sharpness of its most recent signals row, at the versions readers see.
_FACTS = """
SELECT c.clip_id, c.source, c.duration_s, s.sharpness
FROM clips c LEFT JOIN (
    SELECT clip_id, sharpness FROM signals
    QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY computed_at DESC, signal_id) = 1
) s USING (clip_id)
"""


def _facts(lh: Store) -> list[dict[str, Any]]:
    batches = lh.stream_query(
        _FACTS,
        {
            "clips": ("clips", ["clip_id", "source", "duration_s"], None),
            "signals": ("signals", ["clip_id", "sharpness", "computed_at", "signal_id"], None),
        },
        published=True,
    )
    return [row for batch in batches for row in batch.to_pylist()]
