"""Run the ingest stages of one source in order, without Dagster.

``lakehouse ingest`` runs the same stages as Dagster assets (``dagster_defs``), so its runs show
in the Dagster UI; this module is the plain-Python path (scripts, notebooks, other engines).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import TYPE_CHECKING

from lakehouse.annotations import import_annotations
from lakehouse.clips import build_clips
from lakehouse.keyframes import extract_keyframes
from lakehouse.stage import Progress, StageResult, no_progress
from lakehouse.store import WriteResult
from lakehouse.videos import ingest_videos

if TYPE_CHECKING:
    from lakehouse.sources import Source
    from lakehouse.store import Lakehouse

STAGE_ORDER = ("videos", "annotations", "clips", "keyframes", "quarantine")


def quarantine_report(lh: Lakehouse, source: Source) -> StageResult:
    """Summarize the quarantine rows the stages recorded for ``source``."""
    rows = lh.read("quarantine", columns=["stage", "reason_code"], filter=source.scope).to_pylist()
    reasons = Counter(r["reason_code"] for r in rows)
    stages = Counter(r["stage"] for r in rows)
    ds = lh.dataset("quarantine")
    return StageResult(
        "quarantine",
        source.name,
        "quarantine",
        WriteResult("quarantine", version=ds.version if ds is not None else None),
        rows=len(rows),
        quarantined=len(rows),
        reasons=dict(sorted(reasons.items())),
        details={"by_stage": dict(sorted(stages.items()))},
    )


def run_stages(
    lh: Lakehouse,
    source: Source,
    *,
    run_id: str | None = None,
    progress: Progress = no_progress,
    embed: bool = True,
) -> list[StageResult]:
    """Run videos → annotations → clips → keyframes → quarantine report for one source, then
    (with ``embed``) caption and CLIP embeddings and the search indexes; finally publish the
    tables (:func:`lakehouse.publish.publish`: the blocking checks run on the new versions, and
    readers see them only if they pass)."""
    run_id = run_id or uuid.uuid4().hex
    results = [
        ingest_videos(lh, source, run_id=run_id, progress=progress),
        import_annotations(lh, source, run_id=run_id),
        build_clips(lh, source, run_id=run_id),
        extract_keyframes(lh, source, run_id=run_id, progress=progress),
        quarantine_report(lh, source),
    ]
    if embed:
        results += embed_stages(lh, source, run_id=run_id, progress=progress)
    results.append(publication(lh, source))
    return results


def publication(lh: Lakehouse, source: Source) -> StageResult:
    """Publish the pipeline tables (raises PublicationError when a blocking check fails)."""
    from lakehouse.publish import publish

    versions = publish(lh)
    return StageResult(
        "published_versions",
        source.name,
        "published_versions",
        WriteResult("published_versions"),
        rows=len(versions),
        details={"published": versions},
    )


def embed_stages(
    lh: Lakehouse, source: Source, *, run_id: str, progress: Progress = no_progress
) -> list[StageResult]:
    """Caption and CLIP embeddings of one source, then the search indexes."""
    from lakehouse.embeddings import embed_captions, embed_clips
    from lakehouse.search import refresh_indexes

    results = [
        embed_captions(lh, source, run_id=run_id, progress=progress),
        embed_clips(lh, source, run_id=run_id, progress=progress),
    ]
    report = refresh_indexes(lh)
    results.append(
        StageResult(
            "search_index",
            source.name,
            "search_index",
            WriteResult("search_index"),
            rows=0,
            details=report,
        )
    )
    return results
