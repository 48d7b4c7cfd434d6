"""Semantic predicates inside SQL: similarity functions and hit relations for DuckDB sessions.

Registered in every :class:`lakehouse.query.session.Session` (before it is locked down):

- ``caption_similarity(clip_id, text)`` / ``visual_similarity(clip_id, text)``: cosine similarity
  between the text and the clip's caption embeddings (best field) or CLIP vector, NULL when the
  clip has none;
- ``caption_hits(text, k)`` / ``visual_hits(text, k)``: the ``k`` most similar clips as a relation
  ``(clip_id, score)``, usable in a join;
- ``exclude_near_duplicates(t)``: the rows of table or view ``t`` without the clips that are
  near duplicates of another (:mod:`lakehouse.enrich.duplicates`).

So one subset file can say "ego, longer than 30 s, and close to 'using a hand tool'":
``where viewpoint = 'ego' and duration_s > 30
and caption_similarity(clip_id, 'using a hand tool') > 0.4``.
Vectors are read at the table versions the session is pinned to, with the configured models;
the query text is embedded once per session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import QueryError
from lakehouse.core.schemas import CLIP_TABLE, TEXT_TABLE
from lakehouse.models.queries import embed_query
from lakehouse.storage.filters import sql_literal
from lakehouse.storage.vectors import read_vectors

# Each distinct query text costs a model call and a score per clip, held for the session: a
# query that compares against a different text per row (``caption_similarity(clip_id, clip_id)``)
# would run the model once per row and keep millions of scores. Both are bounded.
MAX_TEXTS_PER_SESSION = 32
MAX_TEXT_CHARS = 2000

if TYPE_CHECKING:
    import numpy as np

    from lakehouse.query.session import Session

MACROS = """
CREATE OR REPLACE MACRO caption_hits(q, k) AS TABLE
    SELECT clip_id, score FROM (
        SELECT clip_id, caption_similarity(clip_id, q) AS score FROM clips
    ) WHERE score IS NOT NULL ORDER BY score DESC, clip_id LIMIT k;
CREATE OR REPLACE MACRO visual_hits(q, k) AS TABLE
    SELECT clip_id, score FROM (
        SELECT clip_id, visual_similarity(clip_id, q) AS score FROM clips
    ) WHERE score IS NOT NULL ORDER BY score DESC, clip_id LIMIT k;
CREATE OR REPLACE MACRO exclude_near_duplicates(t) AS TABLE
    SELECT * FROM query_table(t)
    WHERE clip_id NOT IN (
        SELECT clip_id FROM near_duplicates WHERE near_duplicate_of IS NOT NULL
    );
"""


class SemanticFunctions:
    """Per-session state: the vectors (loaded on first use) and the embedded query texts."""

    def __init__(self, session: Session):
        self.session = session
        self.vectors: dict[str, tuple[list[str], np.ndarray] | None] = {}
        self.scores: dict[tuple[str, str], dict[str, float]] = {}
        self.model_ids: dict[str, str] = {}

    def register(self) -> None:
        from duckdb.func import ARROW, SPECIAL
        from duckdb.sqltypes import DOUBLE, VARCHAR

        for name, kind in (("caption_similarity", "caption"), ("visual_similarity", "visual")):
            self.session.con.create_function(
                name,
                self._udf(kind),
                [VARCHAR, VARCHAR],
                DOUBLE,
                type=ARROW,
                null_handling=SPECIAL,
                side_effects=False,
            )
        for statement in MACROS.split(";"):
            if statement.strip():
                self.session.con.execute(statement)

    def _udf(self, kind: str) -> Any:
        import pyarrow as pa

        def similarity(clip_ids, texts):  # no annotations: DuckDB evaluates them
            out = []
            for clip_id, text in zip(clip_ids.to_pylist(), texts.to_pylist(), strict=True):
                if clip_id is None or text is None:
                    out.append(None)
                else:
                    out.append(self._scores(kind, text).get(clip_id))
            return pa.array(out, type=pa.float64())

        return similarity

    def _scores(self, kind: str, text: str) -> dict[str, float]:
        """Similarity of every clip to ``text`` (computed once per session and text)."""
        import numpy as np

        key = (kind, text)
        if key not in self.scores:
            if len(text) > MAX_TEXT_CHARS:
                raise QueryError(
                    f"A semantic query text is {len(text)} characters long; at most "
                    f"{MAX_TEXT_CHARS} are compared."
                )
            if len(self.scores) >= MAX_TEXTS_PER_SESSION:
                raise QueryError(
                    f"Semantic functions compare clips against at most {MAX_TEXTS_PER_SESSION} "
                    "distinct texts per query; pass a constant text."
                )
            vector, model_id = embed_query(self.session.lh.config.models, text, kind)
            ids, matrix = self._vectors(kind, model_id)
            scores: dict[str, float] = {}
            if len(ids):
                values = matrix @ vector.astype(np.float32)
                for clip_id, value in zip(ids, values.tolist(), strict=True):
                    if value > scores.get(clip_id, -2.0):
                        scores[clip_id] = value  # caption: the best-matching field
            self.scores[key] = scores
            self.model_ids[kind] = model_id
        return self.scores[key]

    def _vectors(self, kind: str, model_id: str) -> tuple[list[str], np.ndarray]:
        table = CLIP_TABLE if kind == "visual" else TEXT_TABLE
        if table not in self.vectors:
            lh = self.session.lh
            found = read_vectors(
                lh.dataset(table, version=self.session.versions.get(table)),
                columns=["clip_id"],
                filter=f"model_id = {sql_literal(model_id)}",
            )
            self.vectors[table] = (found.columns["clip_id"], found.matrix)
        return self.vectors[table]
