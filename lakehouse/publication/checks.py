"""The checks, as library functions: Dagster's asset checks call them on the tables' latest
versions, and :func:`lakehouse.publication.publish.publish` calls the blocking ones again on
exactly the versions it is about to publish. The per-source checks that do not gate
publication (annotation coverage, quarantine counts, embedding coverage) live here too, so the
asset checks stay wiring. Each returns a :class:`CheckOutcome`; the SQL ones take an open
:class:`~lakehouse.query.session.Session`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.core import schemas
from lakehouse.core.schemas import CLIP_TABLE, TEXT_TABLE
from lakehouse.enrich.embeddings import caption_stream
from lakehouse.enrich.signals import PRIVACY_STATUSES, out_of_range_sql
from lakehouse.ingest.plan import merge, sorted_groups, stream_memory_mb
from lakehouse.storage.filters import sql_literal
from lakehouse.storage.streams import BOUNDED_SCAN
from lakehouse.storage.vectors import to_matrix

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.ingest.sources import Source
    from lakehouse.query.session import Session
    from lakehouse.storage.store import Store

NORM_TOLERANCE = 1e-3


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        detail = ", ".join(f"{k}={v}" for k, v in self.metadata.items())
        return f"{self.name} ({detail})"


def _one(session: Session, sql: str, params: Any = None) -> dict[str, Any]:
    return session.query(sql, params).to_pylist()[0]


def clip_spans_within_video(session: Session, source: str | None = None) -> CheckOutcome:
    """Every probed clip (of ``source``, or of every source) lies inside its video, with one
    frame of slack at the end."""
    row = _one(
        session,
        """
        select count(*) as clips,
               count(*) filter (
                   where c.start_s < 0 or c.end_s <= c.start_s
                      or c.end_s > v.duration_s + 1.0 / coalesce(v.fps, 30) + 0.001
               ) as outside
        from clips c join videos v on v.video_id = c.video_id
        where c.probe_status = 'ok' and ($source is null or c.source = $source)
        """,
        {"source": source},
    )
    return CheckOutcome(
        "clip_spans_within_video",
        row["outside"] == 0,
        {"clips_checked": row["clips"], "clips_outside_video": row["outside"]},
    )


def unique_keys(session: Session, table: str) -> CheckOutcome:
    """No primary key appears twice in ``table``."""
    key = schemas.primary_key(session.lh.schema(table))
    row = _one(session, f"select count(*) as n, count(distinct {key}) as d from {table}")
    return CheckOutcome(
        f"unique_{key}", row["n"] == row["d"], {"rows": row["n"], "duplicates": row["n"] - row["d"]}
    )


def _norms(batches: Iterable[pa.RecordBatch]) -> tuple[int, int, int]:
    """``(vectors, not finite or not unit norm, width)`` over the ``vector`` column of the
    batches, one batch in memory at a time (a null vector counts as bad)."""
    import numpy as np

    checked = bad = width = 0
    for batch in batches:
        column = batch.column("vector")
        width = column.type.list_size
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        matrix = to_matrix(column)[valid].astype(np.float64)
        norms = np.sqrt((matrix * matrix).sum(axis=1))
        checked += batch.num_rows
        bad += column.null_count
        bad += int(np.sum(~np.isfinite(norms) | (np.abs(norms - 1.0) > NORM_TOLERANCE)))
    return checked, bad, width


def unit_vectors(
    lh: Store, table: str, version: int, since_version: int | None = None
) -> CheckOutcome:
    """Every vector written after ``since_version`` (all of them when None) and present at
    ``version`` is finite and of unit norm. Rows written since are exactly the rows of fragments
    the older version does not have (an update rewrites its rows into new fragments), so a
    publication reads only what changed."""
    ds = lh.dataset(table, version=version)
    seen = set()
    if since_version is not None:
        seen = {f.fragment_id for f in lh.dataset(table, version=since_version).get_fragments()}
    fragments = [f for f in ds.get_fragments() if f.fragment_id not in seen]
    checked = bad = 0
    if fragments:
        checked, bad, _ = _norms(ds.to_batches(columns=["vector"], fragments=fragments))
    return CheckOutcome(
        f"{table}_unit_norm",
        bad == 0,
        {"vectors_checked": checked, "not_unit_norm": bad},
    )


def _model_scope(source: Source, model_id: str) -> str:
    return f"{source.scope} AND model_id = {sql_literal(model_id)}"


def model_vectors(
    lh: Store, table: str, source: Source, model_id: str, dim: int | None
) -> CheckOutcome:
    """The source's vectors from ``model_id`` are ``dim`` wide (when known), finite and of unit
    norm; streamed, so a source of any size is checked in the memory of one batch."""
    ds = lh.dataset(table)
    checked = bad = width = 0
    if ds is not None:
        batches = ds.to_batches(
            columns=["vector"], filter=_model_scope(source, model_id), **BOUNDED_SCAN
        )
        checked, bad, width = _norms(batches)
    return CheckOutcome(
        f"{table}_width_and_unit_norm",
        bad == 0 and (dim is None or not checked or width == dim),
        {
            "model_id": model_id,
            "vectors": checked,
            "dimension": width if checked else 0,
            "expected_dimension": dim or 0,
            "not_unit_norm": bad,
        },
    )


def clip_embedding_coverage(lh: Store, source: Source, model_id: str) -> CheckOutcome:
    """Share of the source's clips with keyframes that have a vector from ``model_id`` (one
    DuckDB query over streamed scans: distinct clip ids, spilling past its memory limit)."""
    row = next(
        lh.stream_query(
            "SELECT count(*) AS clips, count(e.clip_id) AS covered "
            "FROM (SELECT DISTINCT clip_id FROM framed) f "
            "LEFT JOIN (SELECT DISTINCT clip_id FROM embedded) e ON e.clip_id = f.clip_id",
            {
                "framed": ("keyframes", ["clip_id"], source.scope),
                "embedded": (CLIP_TABLE, ["clip_id"], _model_scope(source, model_id)),
            },
        )
    ).to_pylist()[0]
    return _coverage("clip_embedding_coverage", model_id, "clips", row["clips"], row["covered"])


def text_embedding_coverage(
    lh: Store, source: Source, model_id: str, fields: Iterable[str]
) -> CheckOutcome:
    """Share of the source's caption texts (per clip and field, as the stage embeds them) that
    have a vector from ``model_id``; both sides stream sorted by clip."""
    mb = stream_memory_mb(lh, 2)
    embedded = sorted_groups(
        lh,
        TEXT_TABLE,
        columns=["clip_id", "field"],
        order_by=["clip_id"],
        filter=_model_scope(source, model_id),
        memory_mb=mb,
    )
    texts = covered = 0
    for _, (wanted, have) in merge(caption_stream(lh, source, fields, mb), embedded):
        if wanted:
            texts += len(wanted)
            covered += len(wanted.keys() & {r["field"] for r in have or ()})
    return _coverage("text_embedding_coverage", model_id, "texts", texts, covered)


def _coverage(name: str, model_id: str, unit: str, total: int, covered: int) -> CheckOutcome:
    share = covered / total if total else 1.0
    return CheckOutcome(
        name,
        share == 1.0,
        {"model_id": model_id, unit: total, "covered": covered, "coverage": round(share, 4)},
    )


def signal_values_in_range(session: Session, source: str | None = None) -> CheckOutcome:
    """Every value of the ``signals`` rows (of ``source``, or of every source) in its range
    (:func:`lakehouse.enrich.signals.out_of_range_sql`: fractions, areas and grey levels in [0, 1],
    sharpness and motion not negative), the 0/1/2-hand fractions add up to 1, and every
    privacy_status is a known one."""
    out_of_range = out_of_range_sql()
    row = _one(
        session,
        f"""
        select count(*) as rows,
               count(*) filter (where {out_of_range}) as out_of_range,
               count(*) filter (
                   where abs(hands_0_frac + hands_1_frac + hands_2_frac - 1) > 1e-6
               ) as hand_fractions_not_summing_to_one,
               count(*) filter (
                   where privacy_status is null or not list_contains($statuses, privacy_status)
               ) as unknown_privacy_status
        from signals where $source is null or source = $source
        """,
        {"statuses": list(PRIVACY_STATUSES), "source": source},
    )
    metadata = {k: int(v) for k, v in row.items()}
    bad = sum(v for k, v in metadata.items() if k != "rows")
    return CheckOutcome("signal_values_in_range", bad == 0, metadata)


def one_representative_per_cluster(session: Session) -> CheckOutcome:
    """Every near-duplicate cluster has exactly one representative (itself), and every member is
    within the threshold of it."""
    row = _one(
        session,
        """
        with clusters as (
            select cluster_id,
                   count(*) filter (where is_representative) as representatives,
                   bool_and(is_representative = (clip_id = cluster_id)) as consistent,
                   bool_and(similarity >= threshold - 1e-6) as within
            from near_duplicates group by cluster_id
        )
        select count(*) as clusters,
               count(*) filter (
                   where representatives <> 1 or not consistent or not within
               ) as bad_clusters
        from clusters
        """,
    )
    metadata = {k: int(v) for k, v in row.items()}
    return CheckOutcome("one_representative_per_cluster", metadata["bad_clusters"] == 0, metadata)


def annotation_coverage(session: Session, source: str) -> CheckOutcome:
    """Every annotation row of ``source`` resolves to one of its clips (an orphan means the clips
    stage lost an annotated span); the metadata gives the share of clips with annotations."""
    row = _one(
        session,
        """
        with a as (select * from annotations where source = $source),
             c as (select * from clips where source = $source)
        select
            (select count(*) from c) as clips,
            (select count(*) from c where clip_id in (select clip_id from a)) as annotated,
            (select count(*) from a where clip_id not in (select clip_id from c)) as orphans,
            (select count(*) from a where not video_found) as video_missing
        """,
        {"source": source},
    )
    coverage = row["annotated"] / row["clips"] if row["clips"] else 0.0
    return CheckOutcome(
        "annotation_coverage",
        row["orphans"] == 0,
        {
            "coverage": round(coverage, 4),
            "annotated_clips": row["annotated"],
            "orphan_annotations": row["orphans"],
            "annotations_without_local_video": row["video_missing"],
        },
    )


# More than this share of a source's video files unusable points at the source (a wrong folder,
# a codec we cannot read), not at a few damaged files.
MAX_BAD_FILE_SHARE = 0.5


def quarantine_counts(session: Session, source: str) -> CheckOutcome:
    """At most :data:`MAX_BAD_FILE_SHARE` of the video files of ``source`` were quarantined
    (at discovery or while probing); other quarantine rows are counted, not judged."""
    row = _one(
        session,
        """
        select
            (select count(*) from videos where source = $source) as videos,
            (select count(*) from quarantine where source = $source) as quarantined,
            (select count(*) from quarantine
              where source = $source and stage in ('discover', 'videos')) as bad_files
        """,
        {"source": source},
    )
    files = row["videos"] + row["bad_files"]
    share = row["bad_files"] / files if files else 0.0
    return CheckOutcome(
        "quarantine_counts",
        share <= MAX_BAD_FILE_SHARE,
        {
            "quarantined_rows": row["quarantined"],
            "bad_video_files": row["bad_files"],
            "bad_file_share": round(share, 4),
        },
    )
