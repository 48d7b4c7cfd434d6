"""One Dagster asset per stage of the pipeline (:data:`lakehouse.pipeline.STAGES`): the same name,
dependencies, group and partitioning as the declaration, a body that opens the lakehouse, runs
the stage for its partition and returns what it did as materialization metadata."""

import dagster as dg

from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.metadata import materialize_result, summary_result
from dagster_defs.resources import LakehouseResource
from lakehouse.core import schemas
from lakehouse.ingest.sources import get_source
from lakehouse.ingest.stage import Progress, StageResult
from lakehouse.pipeline import STAGES, Stage


def progress_logger(context: dg.AssetExecutionContext) -> Progress:
    """A stage's progress in the run log: the start, the end, and about every tenth of the way."""
    step = {"last": -1}

    def report(done: int, total: int, message: str) -> None:
        if done in (0, total) or total < 10 or done * 10 // total != step["last"]:
            step["last"] = done * 10 // max(total, 1)
            context.log.info(f"{done}/{total} {message}")

    return report


def stage_metadata(
    context: dg.AssetExecutionContext, lh, stage: Stage, result: StageResult
) -> dg.MaterializeResult:
    """What a stage did, as the asset's metadata: a table stage's rows, changes and preview; the
    details of the others (the indexes built, the versions published)."""
    message = result.details.get("message")
    if message:  # a model unavailable, nothing to learn from yet: recorded, the run goes on
        context.log.warning(message)
    if result.table not in schemas.TABLES and result.table not in schemas.DYNAMIC_TABLES:
        for table, entry in result.details.get("indexes", {}).items():
            context.log.info(f"{table}: {', '.join(entry['actions'])}")
        metadata = {k: dg.MetadataValue.json(v) for k, v in result.details.items()}
        return dg.MaterializeResult(metadata=metadata)
    if stage.per_source:
        return materialize_result(lh, result)
    return summary_result(lh, result)


def stage_asset(stage: Stage) -> dg.AssetsDefinition:
    """The asset of one stage."""

    @dg.asset(
        name=stage.name,
        partitions_def=sources_partitions if stage.per_source else None,
        group_name=stage.group,
        deps=list(stage.deps),
        kinds=set(stage.kinds),
        description=stage.description,
    )
    def _asset(
        context: dg.AssetExecutionContext, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        lh = lakehouse.open()
        source = get_source(lh, context.partition_key) if stage.per_source else None
        result = stage.run(lh, source, context.run_id, progress_logger(context))
        return stage_metadata(context, lh, stage, result)

    return _asset


def stage_assets(group: str, *, per_source: bool | None = None) -> list[dg.AssetsDefinition]:
    """The assets of the stages in ``group`` (only the per-source ones, or only the others)."""
    return [
        stage_asset(stage)
        for stage in STAGES
        if stage.group == group and (per_source is None or stage.per_source == per_source)
    ]
