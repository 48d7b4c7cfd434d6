"""Turn a library :class:`~lakehouse.ingest.stage.StageResult` into Dagster materialization
metadata, and a library check outcome into a Dagster check result."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg
import numpy as np

from lakehouse.api import Lakehouse
from lakehouse.core.schemas import CLIP_TABLE, DUPLICATES_TABLE, TEXT_TABLE, VIEWPOINT_TABLE
from lakehouse.ingest.stage import StageResult
from lakehouse.publication.checks import CheckOutcome
from lakehouse.render.plots import (
    duration_histogram_svg,
    durations_array,
    markdown_image,
    thumbnail_strip_jpeg,
)
from lakehouse.storage.filters import sql_literal

PREVIEW_COLUMNS = {
    "videos": ["video_id", "relpath", "codec", "width", "height", "fps", "duration_s"],
    "annotations": ["clip_id", "external_id", "viewpoint", "short_caption", "video_found"],
    "clips": ["clip_id", "viewpoint", "start_s", "end_s", "segmentation", "probe_status"],
    "keyframes": ["keyframe_id", "clip_id", "time_s", "width", "height", "sampler"],
    "quarantine": ["stage", "reason_code", "input_uri", "locator", "message"],
    CLIP_TABLE: ["clip_id", "model_id", "viewpoint", "short_caption"],
    TEXT_TABLE: ["clip_id", "field", "model_id", "text"],
    "signals": ["clip_id", "hands_frac", "person_frac", "face_frac", "privacy_status", "sharpness"],
    VIEWPOINT_TABLE: [
        "clip_id",
        "labelled_viewpoint",
        "predicted_viewpoint",
        "confidence",
        "held_out",
    ],
    DUPLICATES_TABLE: ["clip_id", "near_duplicate_of", "similarity", "cluster_size", "embedding"],
}


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text[:60] + "…" if len(text) > 60 else text

    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(cell(r.get(c)) for c in columns) + " |\n" for r in rows)


def duration_histogram(durations: Iterable[float | None] | np.ndarray) -> str:
    """Markdown holding an SVG bar chart of clip durations inline (a data URI); the UI draws
    it as a picture in the metadata table (see :func:`lakehouse.render.plots.bar_chart_svg`)."""
    values = durations_array(durations)
    if not len(values):
        return "_no clips_"
    return markdown_image(duration_histogram_svg(values), "image/svg+xml", "clip durations")


def keyframe_strip(lh: Lakehouse, source: str, clips: int = 6) -> str | None:
    """Markdown with the first keyframe of a few of the source's clips, side by side."""
    rows = lh.read(
        "keyframes",
        columns=["clip_id", "jpeg"],
        filter=f"source = {sql_literal(source)} AND idx = 0",
        limit=clips,
    ).to_pylist()
    jpegs = [r["jpeg"] for r in rows if r["jpeg"]]
    if not jpegs:
        return None
    alt = f"first keyframes of {len(jpegs)} clips"
    return markdown_image(thumbnail_strip_jpeg(jpegs), "image/jpeg", alt)


def skipped_check(reason: str, message: str) -> dg.AssetCheckResult:
    """A check that could not run here (its model is unavailable): recorded as passing, with
    ``skipped`` and the reason in its metadata, which the CLI shows as a skip, never a failure."""
    return dg.AssetCheckResult(passed=True, metadata={"skipped": reason, "message": message})


def check_result(
    outcome: CheckOutcome, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
) -> dg.AssetCheckResult:
    """A library check's outcome as a Dagster asset check result."""
    return dg.AssetCheckResult(passed=outcome.passed, severity=severity, metadata=outcome.metadata)


def materialize_result(lh: Lakehouse, result: StageResult) -> dg.MaterializeResult:
    columns = PREVIEW_COLUMNS.get(result.table, [])
    preview = lh.read(
        result.table, columns=columns, filter=f"source = {sql_literal(result.source)}", limit=5
    ).to_pylist()
    ds = lh.dataset(result.table)
    metadata: dict[str, Any] = {
        # the row count Dagster shows on the asset (this partition's rows)
        "dagster/row_count": dg.MetadataValue.int(result.rows),
        "rows_in_source": dg.MetadataValue.int(result.rows),
        "rows_in_table": dg.MetadataValue.int(ds.count_rows() if ds is not None else 0),
        "table_version": dg.MetadataValue.int(ds.version if ds is not None else 0),
        "table_uri": dg.MetadataValue.path(lh.table_uri(result.table)),
        "inserted": dg.MetadataValue.int(result.write.inserted),
        "updated": dg.MetadataValue.int(result.write.updated),
        "deleted": dg.MetadataValue.int(result.write.deleted),
        "quarantined": dg.MetadataValue.int(result.quarantined),
        "preview": dg.MetadataValue.md(markdown_table(preview, columns)),
    }
    if result.table == "clips":
        durations = lh.read(
            "clips", columns=["duration_s"], filter=f"source = {sql_literal(result.source)}"
        ).column("duration_s")
        metadata["duration_histogram"] = dg.MetadataValue.md(
            duration_histogram(durations.to_numpy())  # NaN for a null
        )
    if result.table == "keyframes":
        strip = keyframe_strip(lh, result.source)
        if strip:
            metadata["keyframe_strip"] = dg.MetadataValue.md(strip)
    if result.reasons:
        metadata["quarantine_reasons"] = dg.MetadataValue.json(result.reasons)
    for key, value in result.details.items():
        metadata[key] = dg.MetadataValue.json(value) if isinstance(value, dict) else value
    return dg.MaterializeResult(metadata=metadata)


def summary_result(lh: Lakehouse, result: StageResult) -> dg.MaterializeResult:
    """The metadata of a stage over every source (viewpoints, near duplicates): its table's rows
    and changes, a preview, and what the stage reports."""
    columns = PREVIEW_COLUMNS[result.table]
    preview = (
        lh.read(result.table, columns=columns, limit=5).to_pylist()
        if lh.exists(result.table)
        else []
    )
    ds = lh.dataset(result.table)
    metadata = {
        "rows": dg.MetadataValue.int(result.rows),
        "table_version": dg.MetadataValue.int(ds.version if ds is not None else 0),
        "inserted": dg.MetadataValue.int(result.write.inserted),
        "updated": dg.MetadataValue.int(result.write.updated),
        "deleted": dg.MetadataValue.int(result.write.deleted),
        "preview": dg.MetadataValue.md(markdown_table(preview, columns)),
    }
    for key, value in result.details.items():
        metadata[key] = dg.MetadataValue.json(value) if isinstance(value, dict | list) else value
    return dg.MaterializeResult(metadata=metadata)
