"""Checks on the embedding tables: vector width, unit norm, coverage by the configured model."""

import warnings

import dagster as dg
import numpy as np

from dagster_defs.embeddings.assets import clip_embeddings, text_embeddings
from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.resources import LakehouseResource
from lakehouse.embeddings import CLIP_TABLE, TEXT_TABLE, caption_texts
from lakehouse.models import resolve_clip, resolve_text
from lakehouse.sources import get_source
from lakehouse.store import sql_literal

warnings.filterwarnings("ignore", category=dg.PreviewWarning, module="dagster")


def _vectors(lh, table: str, source, model_id: str) -> np.ndarray:
    if not lh.exists(table):
        return np.zeros((0, 0), np.float32)
    data = lh.read(
        table,
        columns=["vector"],
        filter=f"{source.scope} AND model_id = {sql_literal(model_id)}",
    )
    if not data.num_rows:
        return np.zeros((0, 0), np.float32)
    return np.stack(data.column("vector").to_numpy(zero_copy_only=False))


def _shape_check(lh, table: str, source, resolved) -> dg.AssetCheckResult:
    if not resolved.model_id:
        return dg.AssetCheckResult(
            passed=True, metadata={"skipped": "model unavailable", "message": resolved.message}
        )
    vectors = _vectors(lh, table, source, resolved.model_id)
    norms = np.linalg.norm(vectors, axis=1) if len(vectors) else np.zeros(0)
    width = int(vectors.shape[1]) if len(vectors) else 0
    bad_norm = int(np.sum(np.abs(norms - 1.0) > 1e-3))
    right_width = resolved.dim is None or not len(vectors) or width == resolved.dim
    return dg.AssetCheckResult(
        passed=bad_norm == 0 and right_width,
        metadata={
            "model_id": resolved.model_id,
            "vectors": len(vectors),
            "dimension": width,
            "expected_dimension": resolved.dim or 0,
            "not_unit_norm": bad_norm,
        },
    )


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
    with_frames = set(
        lh.read("keyframes", columns=["clip_id"], filter=source.scope).column("clip_id").to_pylist()
    )
    if not resolved.model_id:
        return dg.AssetCheckResult(
            passed=not with_frames,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"clips": len(with_frames), "covered": 0, "message": resolved.message},
        )
    covered = set()
    if lh.exists(CLIP_TABLE):
        covered = set(
            lh.read(
                CLIP_TABLE,
                columns=["clip_id"],
                filter=f"{source.scope} AND model_id = {sql_literal(resolved.model_id)}",
            )
            .column("clip_id")
            .to_pylist()
        )
    share = len(covered & with_frames) / len(with_frames) if with_frames else 1.0
    return dg.AssetCheckResult(
        passed=share == 1.0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "model_id": resolved.model_id,
            "clips": len(with_frames),
            "covered": len(covered & with_frames),
            "coverage": dg.MetadataValue.float(round(share, 4)),
        },
    )


@dg.asset_check(asset=text_embeddings, partitions_def=sources_partitions)
def text_embedding_coverage(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Share of the source's caption texts embedded by the configured text model."""
    lh = lakehouse.open()
    source = get_source(lh, context.partition_key)
    resolved = resolve_text(lh.config.models, check_online=False)
    texts = caption_texts(lh, source, lh.config.models.text_fields)
    if not resolved.model_id:
        return dg.AssetCheckResult(
            passed=not texts,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"texts": len(texts), "covered": 0, "message": resolved.message},
        )
    covered = 0
    if lh.exists(TEXT_TABLE):
        rows = lh.read(
            TEXT_TABLE,
            columns=["clip_id", "field"],
            filter=f"{source.scope} AND model_id = {sql_literal(resolved.model_id)}",
        ).to_pylist()
        covered = len({(r["clip_id"], r["field"]) for r in rows} & set(texts))
    share = covered / len(texts) if texts else 1.0
    return dg.AssetCheckResult(
        passed=share == 1.0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "model_id": resolved.model_id,
            "texts": len(texts),
            "covered": covered,
            "coverage": dg.MetadataValue.float(round(share, 4)),
        },
    )


embedding_checks = [
    clip_vectors_have_model_width_and_unit_norm,
    text_vectors_have_model_width_and_unit_norm,
    clip_embedding_coverage,
    text_embedding_coverage,
]
