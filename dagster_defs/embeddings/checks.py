"""Checks on the embedding tables: vector width, unit norm, coverage by the configured model."""

import warnings

import dagster as dg

from dagster_defs.embeddings.assets import clip_embeddings, text_embeddings
from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.metadata import check_result
from dagster_defs.resources import LakehouseResource
from lakehouse import checks
from lakehouse.embeddings import CLIP_TABLE, TEXT_TABLE, caption_stream
from lakehouse.models import resolve_clip, resolve_text
from lakehouse.sources import get_source

warnings.filterwarnings("ignore", category=dg.PreviewWarning, module="dagster")


def _shape_check(lh, table: str, source, resolved) -> dg.AssetCheckResult:
    if not resolved.model_id:
        return dg.AssetCheckResult(
            passed=True, metadata={"skipped": "model unavailable", "message": resolved.message}
        )
    return check_result(checks.model_vectors(lh, table, source, resolved.model_id, resolved.dim))


@dg.asset_check(asset=clip_embeddings, blocking=True, partitions_def=sources_partitions)
def clip_vectors_have_model_width_and_unit_norm(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    return _shape_check(lh, CLIP_TABLE, source, resolve_clip(lh.config.models, check_online=False))


@dg.asset_check(asset=text_embeddings, blocking=True, partitions_def=sources_partitions)
def text_vectors_have_model_width_and_unit_norm(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    return _shape_check(lh, TEXT_TABLE, source, resolve_text(lh.config.models, check_online=False))


@dg.asset_check(asset=clip_embeddings, partitions_def=sources_partitions)
def clip_embedding_coverage(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Share of the source's clips with keyframes that have a vector from the configured model."""
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    resolved = resolve_clip(lh.config.models, check_online=False)
    if not resolved.model_id:
        clips = lh.count("keyframes", source.scope) if lh.exists("keyframes") else 0
        return dg.AssetCheckResult(
            passed=not clips,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"keyframes": clips, "covered": 0, "message": resolved.message},
        )
    outcome = checks.clip_embedding_coverage(lh, source, resolved.model_id)
    return check_result(outcome, dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=text_embeddings, partitions_def=sources_partitions)
def text_embedding_coverage(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Share of the source's caption texts embedded by the configured text model."""
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    resolved = resolve_text(lh.config.models, check_online=False)
    fields = lh.config.models.text_fields
    if not resolved.model_id:
        texts = sum(len(t) for _, t in caption_stream(lh, source, fields))
        return dg.AssetCheckResult(
            passed=not texts,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"texts": texts, "covered": 0, "message": resolved.message},
        )
    outcome = checks.text_embedding_coverage(lh, source, resolved.model_id, fields)
    return check_result(outcome, dg.AssetCheckSeverity.WARN)


embedding_checks = [
    clip_vectors_have_model_width_and_unit_norm,
    text_vectors_have_model_width_and_unit_norm,
    clip_embedding_coverage,
    text_embedding_coverage,
]
