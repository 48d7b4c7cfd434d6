"""Turn a library :class:`~lakehouse.stage.StageResult` into Dagster materialization metadata."""

from __future__ import annotations

import itertools
from typing import Any

import dagster as dg

from lakehouse.stage import StageResult
from lakehouse.store import Lakehouse, sql_literal

PREVIEW_COLUMNS = {
    "videos": ["video_id", "relpath", "codec", "width", "height", "fps", "duration_s"],
    "annotations": ["clip_id", "external_id", "viewpoint", "short_caption", "video_found"],
    "clips": ["clip_id", "viewpoint", "start_s", "end_s", "segmentation", "probe_status"],
    "keyframes": ["keyframe_id", "clip_id", "time_s", "width", "height", "sampler"],
    "quarantine": ["stage", "reason_code", "input_uri", "locator", "message"],
    "signals": ["clip_id", "hands_frac", "person_frac", "face_frac", "privacy_status", "sharpness"],
}


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text[:60] + "…" if len(text) > 60 else text

    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(cell(r.get(c)) for c in columns) + " |\n" for r in rows)


HISTOGRAM_EDGES = (0, 2, 5, 10, 20, 30, 60, 120, 300)


def duration_histogram(durations: list[float], width: int = 30) -> str:
    """A bar chart (markdown) of clip durations, drawn in text so the UI shows it inline."""
    values = [d for d in durations if d is not None]
    if not values:
        return "_no clips_"
    labels = [f"{a}–{b} s" for a, b in itertools.pairwise(HISTOGRAM_EDGES)]
    labels.append(f"≥ {HISTOGRAM_EDGES[-1]} s")
    counts = [0] * len(labels)
    for value in values:
        index = sum(value >= edge for edge in HISTOGRAM_EDGES[1:])
        counts[index] += 1
    top = max(counts)

    def bar(count: int) -> str:
        return f"`{'█' * max(1, round(width * count / top))}`" if count else ""

    rows = [
        f"| {label} | {count} | {bar(count)} |"
        for label, count in zip(labels, counts, strict=True)
        if count or label != labels[-1]
    ]
    return "| duration | clips | |\n|---|---:|---|\n" + "\n".join(rows) + "\n"


def materialize_result(lh: Lakehouse, result: StageResult) -> dg.MaterializeResult:
    columns = PREVIEW_COLUMNS.get(result.table, [])
    preview = lh.read(
        result.table, columns=columns, filter=f"source = {sql_literal(result.source)}", limit=5
    ).to_pylist()
    ds = lh.dataset(result.table)
    metadata: dict[str, Any] = {
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
            duration_histogram(durations.to_pylist())
        )
    if result.reasons:
        metadata["quarantine_reasons"] = dg.MetadataValue.json(result.reasons)
    for key, value in result.details.items():
        metadata[key] = dg.MetadataValue.json(value) if isinstance(value, dict) else value
    return dg.MaterializeResult(metadata=metadata)
