"""Turn a library :class:`~lakehouse.stage.StageResult` into Dagster materialization metadata."""

from __future__ import annotations

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
}


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text[:60] + "…" if len(text) > 60 else text

    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(cell(r.get(c)) for c in columns) + " |\n" for r in rows)


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
    if result.reasons:
        metadata["quarantine_reasons"] = dg.MetadataValue.json(result.reasons)
    for key, value in result.details.items():
        metadata[key] = dg.MetadataValue.json(value) if isinstance(value, dict) else value
    return dg.MaterializeResult(metadata=metadata)
