"""Ingest assets: one per lakehouse table, partitioned by source.

Each body reads its partition and resource, calls one library function, and returns its
summary as materialization metadata.
"""

import dagster as dg

from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.metadata import materialize_result
from dagster_defs.resources import LakehouseResource
from lakehouse.annotations import import_annotations
from lakehouse.clips import build_clips
from lakehouse.keyframes import extract_keyframes
from lakehouse.pipeline import quarantine_report
from lakehouse.sources import get_source
from lakehouse.videos import ingest_videos

GROUP = "ingest"


def _progress(context: dg.AssetExecutionContext):
    step = {"last": -1}

    def report(done: int, total: int, message: str) -> None:
        # log the start, the end, and about every tenth of the way
        if done in (0, total) or total < 10 or done * 10 // total != step["last"]:
            step["last"] = done * 10 // max(total, 1)
            context.log.info(f"{done}/{total} {message}")

    return report


@dg.asset(
    partitions_def=sources_partitions,
    group_name=GROUP,
    kinds={"lance", "pyav"},
    description="One row per source video file, probed with PyAV (content-hash video_id).",
)
def videos(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    result = ingest_videos(lh, source, run_id=context.run_id, progress=_progress(context))
    return materialize_result(lh, result)


@dg.asset(
    partitions_def=sources_partitions,
    group_name=GROUP,
    deps=[videos],
    kinds={"lance"},
    description="Captions and labels per clip from the source's annotation files.",
)
def annotations(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    return materialize_result(lh, import_annotations(lh, source, run_id=context.run_id))


@dg.asset(
    partitions_def=sources_partitions,
    group_name=GROUP,
    deps=[videos, annotations],
    kinds={"lance"},
    description="Virtual clips: annotation spans, else scene cuts with a fixed-window fallback.",
)
def clips(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    return materialize_result(lh, build_clips(lh, source, run_id=context.run_id))


@dg.asset(
    partitions_def=sources_partitions,
    group_name=GROUP,
    deps=[clips],
    kinds={"lance", "pyav"},
    description="Sampled frames per clip as small JPEG thumbnails, GOP-aware sampling.",
)
def keyframes(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    result = extract_keyframes(lh, source, run_id=context.run_id, progress=_progress(context))
    return materialize_result(lh, result)


@dg.asset(
    partitions_def=sources_partitions,
    group_name=GROUP,
    deps=[videos, annotations, clips, keyframes],
    kinds={"lance"},
    description="Every input of the source that could not be used, with stage and reason.",
)
def quarantine(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    return materialize_result(lh, quarantine_report(lh, source))


ingest_assets = [videos, annotations, clips, keyframes, quarantine]
