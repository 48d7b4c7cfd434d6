"""The stage sequence, declared once: what each stage is, what it needs, which job runs it.

:data:`STAGES` lists every stage of the pipeline in the order plain Python runs them; :data:`JOBS`
names the stages of each job. The facade (``lh.ingest``, ``lh.signals``) runs jobs with
:func:`run_job`; ``dagster_defs`` builds one asset per stage (same name, dependencies, group and
partitioning) and one Dagster job per entry of :data:`JOBS`, so a ``lakehouse ingest`` run and a
``lh.ingest`` call run the same functions in the same dependency order.

A per-source stage runs for one source (a Dagster partition); the others run over every source.
Every stage returns a :class:`~lakehouse.ingest.stage.StageResult`. The ``published_*`` stages
publish what the stages before them wrote, after the blocking checks passed on exactly those
versions (:func:`lakehouse.publication.publish.publish`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse.core.schemas import (
    CLIP_TABLE,
    CURATION_TABLES,
    DUPLICATES_TABLE,
    PIPELINE_TABLES,
    SIGNAL_TABLES,
    SIGNALS_TABLE,
    TEXT_TABLE,
    VIEWPOINT_TABLE,
)
from lakehouse.enrich.duplicates import find_near_duplicates
from lakehouse.enrich.embeddings import embed_captions, embed_clips
from lakehouse.enrich.signals import compute_signals
from lakehouse.enrich.viewpoint import predict_viewpoints
from lakehouse.ingest.annotations import import_annotations
from lakehouse.ingest.clips import build_clips
from lakehouse.ingest.keyframes import extract_keyframes
from lakehouse.ingest.sources import Source, get_source, list_sources
from lakehouse.ingest.stage import Progress, StageResult, no_progress, quarantine_report
from lakehouse.ingest.videos import ingest_videos
from lakehouse.publication.publish import publish
from lakehouse.search.indexes import refresh_indexes
from lakehouse.storage.writes import WriteResult

if TYPE_CHECKING:
    from lakehouse.storage.store import Store

# run(store, source, run_id, progress): source is None for a stage over every source
Run = Callable[["Store", "Source | None", str, Progress], StageResult]

INGEST_JOB = "ingest"
EMBED_JOB = "embed"
SIGNALS_JOB = "signals_job"
CURATION_JOB = "curation"


@dataclass(frozen=True)
class Stage:
    """One step: a function over the lakehouse (and a source), and where it sits."""

    name: str
    run: Run
    deps: tuple[str, ...]
    group: str
    description: str
    kinds: frozenset[str] = frozenset({"lance"})
    per_source: bool = True


def _per_source(function: Callable[..., StageResult], *, progress: bool = False) -> Run:
    def run(store: Store, source: Source | None, run_id: str, report: Progress) -> StageResult:
        assert source is not None, "a per-source stage needs its source"
        extra = {"progress": report} if progress else {}
        return function(store, source, run_id=run_id, **extra)

    return run


def _quarantine(store: Store, source: Source | None, run_id: str, report: Progress) -> StageResult:
    assert source is not None
    return quarantine_report(store, source)


def _search_index(store: Store, source: Source | None, run_id: str, report: Progress):
    indexes = refresh_indexes(store)
    return StageResult(
        "search_index",
        source.name if source else "*",
        "search_index",
        WriteResult("search_index"),
        rows=0,
        details={"indexes": indexes},
    )


def _published(name: str, tables: Sequence[str]) -> Run:
    def run(store: Store, source: Source | None, run_id: str, report: Progress) -> StageResult:
        versions = publish(store, tables)
        return StageResult(
            name,
            source.name if source else "*",
            name,
            WriteResult(name),
            rows=len(versions),
            details={"published": versions},
        )

    return run


def _over_all(function: Callable[..., StageResult]) -> Run:
    def run(store: Store, source: Source | None, run_id: str, report: Progress) -> StageResult:
        return function(store, run_id=run_id)

    return run


STAGES: tuple[Stage, ...] = (
    Stage(
        "videos",
        _per_source(ingest_videos, progress=True),
        (),
        "ingest",
        "One row per source video file, probed with PyAV (content-hash video_id).",
        frozenset({"lance", "pyav"}),
    ),
    Stage(
        "annotations",
        _per_source(import_annotations),
        ("videos",),
        "ingest",
        "Captions and labels per clip from the source's annotation files.",
    ),
    Stage(
        "clips",
        _per_source(build_clips),
        ("videos", "annotations"),
        "ingest",
        "Virtual clips: annotation spans, else scene cuts with a fixed-window fallback.",
    ),
    Stage(
        "keyframes",
        _per_source(extract_keyframes, progress=True),
        ("clips",),
        "ingest",
        "Sampled frames per clip as small JPEG thumbnails, GOP-aware sampling.",
        frozenset({"lance", "pyav"}),
    ),
    Stage(
        "quarantine",
        _quarantine,
        ("videos", "annotations", "clips", "keyframes"),
        "ingest",
        "Every input of the source that could not be used, with stage and reason.",
    ),
    Stage(
        TEXT_TABLE,
        _per_source(embed_captions, progress=True),
        ("annotations", "clips"),
        "embeddings",
        "Sentence-transformers vectors of each clip's caption fields, with the model id.",
        frozenset({"lance", "pytorch"}),
    ),
    Stage(
        CLIP_TABLE,
        _per_source(embed_clips, progress=True),
        ("keyframes", "clips"),
        "embeddings",
        "CLIP (open_clip) vectors per clip: pooled and per keyframe, with the model id.",
        frozenset({"lance", "pytorch"}),
    ),
    Stage(
        "search_index",
        _search_index,
        (CLIP_TABLE, TEXT_TABLE),
        "embeddings",
        "ANN (past search.ann_min_rows), full-text and scalar indexes over the embedding "
        "tables; covers the whole tables and refreshes incrementally.",
    ),
    Stage(
        "published_versions",
        _published("published_versions", PIPELINE_TABLES),
        ("quarantine", "search_index"),
        "publication",
        "The table versions readers see, moved forward (every table at once) only after the "
        "blocking checks passed on exactly those versions.",
    ),
    Stage(
        SIGNALS_TABLE,
        _per_source(compute_signals, progress=True),
        ("keyframes", "clips"),
        "signals",
        "Hand, body, face and quality signals per clip (MediaPipe hands/pose/faces at the "
        "keyframe times) with privacy_status, and per-frame landmarks in signal_frames.",
        frozenset({"lance", "mediapipe"}),
    ),
    Stage(
        "published_signals",
        _published("published_signals", SIGNAL_TABLES),
        (SIGNALS_TABLE,),
        "publication",
        "The signals versions readers see (clip_facts, exports' privacy gate), moved forward "
        "only after the signals' blocking range check passed.",
    ),
    Stage(
        VIEWPOINT_TABLE,
        _over_all(predict_viewpoints),
        (SIGNALS_TABLE, "clips"),
        "signals",
        "Predicted ego/exo viewpoint per clip with its confidence: a classifier over the hand, "
        "body and face signals, trained on the labelled clips (labelled ones held out by video).",
        frozenset({"lance", "scikitlearn"}),
        per_source=False,
    ),
    Stage(
        DUPLICATES_TABLE,
        _over_all(find_near_duplicates),
        (TEXT_TABLE, CLIP_TABLE, SIGNALS_TABLE),
        "signals",
        "Near-duplicate clusters of clips (caption or CLIP embeddings within a threshold), one "
        "representative each; subset SQL drops the rest with exclude_near_duplicates(clip_facts).",
        frozenset({"lance", "numpy"}),
        per_source=False,
    ),
    Stage(
        "published_curation",
        _published("published_curation", CURATION_TABLES),
        (VIEWPOINT_TABLE, DUPLICATES_TABLE),
        "publication",
        "The viewpoint-prediction and near-duplicate versions readers see, moved forward only "
        "after the cluster check passed.",
        per_source=False,
    ),
)
BY_NAME = {stage.name: stage for stage in STAGES}

EMBEDDING_STAGES = (TEXT_TABLE, CLIP_TABLE, "search_index")
JOBS: dict[str, tuple[tuple[str, ...], str]] = {
    INGEST_JOB: (
        (
            "videos",
            "annotations",
            "clips",
            "keyframes",
            "quarantine",
            *EMBEDDING_STAGES,
            "published_versions",
        ),
        "Ingest one source folder: videos → annotations → clips → keyframes → embeddings, "
        "then publish the checked versions to readers.",
    ),
    EMBED_JOB: (
        (*EMBEDDING_STAGES, "published_versions"),
        "(Re-)embed one source with the configured models, refresh the indexes, publish.",
    ),
    SIGNALS_JOB: (
        (SIGNALS_TABLE, "published_signals"),
        "Hand, body, face and quality signals of one source's clips (MediaPipe), then publish "
        "them once their checks passed.",
    ),
    CURATION_JOB: (
        (VIEWPOINT_TABLE, DUPLICATES_TABLE, "published_curation"),
        "Predicted viewpoints and near-duplicate clusters over every source, then publish them "
        "once their checks passed.",
    ),
}


def job_stages(job: str, *, skip: Sequence[str] = ()) -> list[Stage]:
    """The stages of ``job`` in run order, without those named in ``skip``."""
    names, _ = JOBS[job]
    return [BY_NAME[name] for name in names if name not in skip]


def run_job(
    store: Store,
    job: str,
    source: Source | None = None,
    *,
    run_id: str | None = None,
    progress: Progress = no_progress,
    skip: Sequence[str] = (),
) -> list[StageResult]:
    """Run the stages of ``job`` in order (for ``source`` where they are per source), without
    Dagster; returns each stage's result. A publication stage raises
    :class:`~lakehouse.core.errors.PublicationError` when a blocking check fails."""
    run_id = run_id or uuid.uuid4().hex
    return [stage.run(store, source, run_id, progress) for stage in job_stages(job, skip=skip)]


def run_stages(
    store: Store,
    source: Source,
    *,
    run_id: str | None = None,
    progress: Progress = no_progress,
    embed: bool = True,
) -> list[StageResult]:
    """The ingest job for one source: videos → annotations → clips → keyframes → quarantine
    report, then (with ``embed``) caption and CLIP embeddings and the search indexes, and
    finally the publication of the checked versions."""
    skip = () if embed else EMBEDDING_STAGES
    return run_job(store, INGEST_JOB, source, run_id=run_id, progress=progress, skip=skip)


def publication(store: Store, source: Source | None = None) -> StageResult:
    """Publish the pipeline tables (the ``published_versions`` stage alone)."""
    return BY_NAME["published_versions"].run(store, source, "", no_progress)


def run_signals(
    store: Store, source: str | None = None, *, run_id: str | None = None
) -> list[StageResult]:
    """The signals job of ``source`` (default: every source), then the curation job over every
    source: each group of tables is published once its blocking checks passed."""
    run_id = run_id or uuid.uuid4().hex
    sources = [get_source(store, source)] if source else list_sources(store)
    results = []
    for src in sources:
        results += run_job(store, SIGNALS_JOB, src, run_id=run_id)
    return results + run_job(store, CURATION_JOB, run_id=run_id)
