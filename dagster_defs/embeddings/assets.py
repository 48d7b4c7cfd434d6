"""Embedding assets, partitioned by source like the ingest assets they read."""

import dagster as dg

from dagster_defs.ingest.assets import _progress, annotations, clips, keyframes
from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.metadata import materialize_result
from dagster_defs.resources import LakehouseResource
from lakehouse.embeddings import embed_captions, embed_clips
from lakehouse.search import refresh_indexes
from lakehouse.sources import get_source

GROUP = "embeddings"


def _report(context: dg.AssetExecutionContext, lh, result) -> dg.MaterializeResult:
    message = result.details.get("message")
    if message:  # offline without weights: the asset is recorded as skipped, the run goes on
        context.log.warning(message)
    return materialize_result(lh, result)


@dg.asset(
    partitions_def=sources_partitions,
    group_name=GROUP,
    deps=[keyframes, clips],
    kinds={"lance", "pytorch"},
    description="CLIP (open_clip) vectors per clip: pooled and per keyframe, with the model id.",
)
def clip_embeddings(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    result = embed_clips(lh, source, run_id=context.run_id, progress=_progress(context))
    return _report(context, lh, result)


@dg.asset(
    partitions_def=sources_partitions,
    group_name=GROUP,
    deps=[annotations, clips],
    kinds={"lance", "pytorch"},
    description="Sentence-transformers vectors of each clip's caption fields, with the model id.",
)
def text_embeddings(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    result = embed_captions(lh, source, run_id=context.run_id, progress=_progress(context))
    return _report(context, lh, result)


@dg.asset(
    partitions_def=sources_partitions,
    group_name=GROUP,
    deps=[clip_embeddings, text_embeddings],
    kinds={"lance"},
    description=(
        "ANN (past search.ann_min_rows), full-text and scalar indexes over the embedding tables; "
        "covers the whole tables and refreshes incrementally."
    ),
)
def search_index(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    report = refresh_indexes(lakehouse.open())
    for table, entry in report.items():
        context.log.info(f"{table}: {', '.join(entry['actions'])}")
    return dg.MaterializeResult(metadata={"indexes": dg.MetadataValue.json(report)})


embedding_assets = [clip_embeddings, text_embeddings, search_index]
