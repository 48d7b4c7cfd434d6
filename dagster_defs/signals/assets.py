"""Signals assets: per-source signals from the keyframe times, then two assets over every
source (the viewpoint classifier and the near-duplicate clusters need all clips at once)."""

import dagster as dg

from dagster_defs.embeddings.assets import clip_embeddings, text_embeddings
from dagster_defs.ingest.assets import _progress, clips, keyframes
from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.metadata import markdown_table, materialize_result
from dagster_defs.resources import LakehouseResource
from lakehouse.duplicates import find_near_duplicates
from lakehouse.signals import compute_signals
from lakehouse.sources import get_source
from lakehouse.stage import StageResult
from lakehouse.viewpoint import predict_viewpoints

GROUP = "signals"


def _summary(context: dg.AssetExecutionContext, lh, result: StageResult, columns: list[str]):
    message = result.details.get("message")
    if message:  # nothing to learn from or cluster yet: recorded, the run goes on
        context.log.warning(message)
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


@dg.asset(
    partitions_def=sources_partitions,
    group_name=GROUP,
    deps=[keyframes, clips],
    kinds={"lance", "mediapipe"},
    description=(
        "Hand, body, face and quality signals per clip (MediaPipe hands/pose/faces at the "
        "keyframe times) with privacy_status, and per-frame landmarks in signal_frames."
    ),
)
def signals(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    result = compute_signals(lh, source, run_id=context.run_id, progress=_progress(context))
    if result.details.get("message"):
        context.log.warning(result.details["message"])
    return materialize_result(lh, result)


@dg.asset(
    group_name=GROUP,
    deps=[signals, clips],
    kinds={"lance", "scikitlearn"},
    description=(
        "Predicted ego/exo viewpoint per clip with its confidence: a classifier over the hand, "
        "body and face signals, trained on the labelled clips (labelled ones held out by video)."
    ),
)
def viewpoint_predictions(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    lh = lakehouse.open()
    result = predict_viewpoints(lh, run_id=context.run_id)
    columns = ["clip_id", "labelled_viewpoint", "predicted_viewpoint", "confidence", "held_out"]
    return _summary(context, lh, result, columns)


@dg.asset(
    group_name=GROUP,
    deps=[text_embeddings, clip_embeddings, signals],
    kinds={"lance", "numpy"},
    description=(
        "Near-duplicate clusters of clips (caption or CLIP embeddings within a threshold), one "
        "representative each; subset SQL drops the rest with exclude_near_duplicates(clip_facts)."
    ),
)
def near_duplicates(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    lh = lakehouse.open()
    result = find_near_duplicates(lh, run_id=context.run_id)
    columns = ["clip_id", "near_duplicate_of", "similarity", "cluster_size", "embedding"]
    return _summary(context, lh, result, columns)


signal_assets = [signals]
curation_assets = [viewpoint_predictions, near_duplicates]
