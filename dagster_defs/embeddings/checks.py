"""Checks on the embedding tables: vector width, unit norm, coverage by the configured model."""

import warnings

import dagster as dg

from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.metadata import check_result, skipped_check
from dagster_defs.resources import LakehouseResource
from lakehouse.core.schemas import CLIP_TABLE, TEXT_TABLE
from lakehouse.ingest.sources import get_source
from lakehouse.models.resolve import resolve_clip, resolve_text
from lakehouse.publication import checks

warnings.filterwarnings("ignore", category=dg.PreviewWarning, module="dagster")


def _shape_check(lh, table: str, source, resolved) -> dg.AssetCheckResult:
    if not resolved.model_id:
        return skipped_check("model unavailable", resolved.message)
    return check_result(checks.model_vectors(lh, table, source, resolved.model_id, resolved.dim))


@dg.asset_check(asset=CLIP_TABLE, blocking=True, partitions_def=sources_partitions)
def clip_vectors_have_model_width_and_unit_norm(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    return _shape_check(lh, CLIP_TABLE, source, resolve_clip(lh.config.models, check_online=False))


@dg.asset_check(asset=TEXT_TABLE, blocking=True, partitions_def=sources_partitions)
def text_vectors_have_model_width_and_unit_norm(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    return _shape_check(lh, TEXT_TABLE, source, resolve_text(lh.config.models, check_online=False))


@dg.asset_check(asset=CLIP_TABLE, partitions_def=sources_partitions)
def clip_embedding_coverage(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Share of the source's clips with keyframes that have a vector from the configured model."""
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    resolved = resolve_clip(lh.config.models, check_online=False)
    if not resolved.model_id:  # nothing to measure coverage by: a skip, not a failure
        return skipped_check("model unavailable", resolved.message)
    outcome = checks.clip_embedding_coverage(lh, source, resolved.model_id)
    return check_result(outcome, dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=TEXT_TABLE, partitions_def=sources_partitions)
def text_embedding_coverage(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Share of the source's caption texts embedded by the configured text model."""
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    resolved = resolve_text(lh.config.models, check_online=False)
    fields = lh.config.models.text_fields
    if not resolved.model_id:  # nothing to measure coverage by: a skip, not a failure
        return skipped_check("model unavailable", resolved.message)
    outcome = checks.text_embedding_coverage(lh, source, resolved.model_id, fields)
    return check_result(outcome, dg.AssetCheckSeverity.WARN)


embedding_checks = [
    clip_vectors_have_model_width_and_unit_norm,
    text_vectors_have_model_width_and_unit_norm,
    clip_embedding_coverage,
    text_embedding_coverage,
]
