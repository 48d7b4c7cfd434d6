"""The project's Dagster definitions over one lakehouse root: ingest, embedding and signals assets
(per source), the curation assets over all sources, the SQL views, one asset per subset file,
their checks and jobs."""

from __future__ import annotations

import dagster as dg

from dagster_defs.embeddings.assets import embedding_assets
from dagster_defs.embeddings.checks import embedding_checks
from dagster_defs.ingest.assets import ingest_assets
from dagster_defs.ingest.checks import ingest_checks
from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.publication.assets import (
    curation_publication_assets,
    publication_assets,
    signal_publication_assets,
)
from dagster_defs.resources import lakehouse_resource
from dagster_defs.signals.assets import curation_assets, signal_assets
from dagster_defs.signals.checks import signal_checks
from dagster_defs.subsets.assets import subset_assets, view_specs
from lakehouse.core.config import Config
from lakehouse.pipeline import (
    CURATION_JOB,
    EMBED_JOB,
    INGEST_JOB,
    JOBS,
    SIGNALS_JOB,
    job_stages,
)

SUBSETS_JOB = "subsets"
__all__ = ["CURATION_JOB", "EMBED_JOB", "INGEST_JOB", "SIGNALS_JOB", "SUBSETS_JOB", "build_defs"]


def stage_job(name: str) -> dg.UnresolvedAssetJobDefinition:
    """The Dagster job of one entry of :data:`lakehouse.pipeline.JOBS`: its stages' assets,
    partitioned by source when every stage is."""
    stages = job_stages(name)
    per_source = all(stage.per_source for stage in stages)
    return dg.define_asset_job(
        name,
        selection=dg.AssetSelection.assets(*(dg.AssetKey(s.name) for s in stages)),
        partitions_def=sources_partitions if per_source else None,
        description=JOBS[name][1],
    )


def build_defs(config: Config) -> dg.Definitions:
    """Definitions wired to ``config``'s lakehouse root."""
    subsets = subset_assets(config)
    subsets_job = dg.define_asset_job(
        SUBSETS_JOB,
        selection=dg.AssetSelection.assets(*subsets),
        description="Materialize subsets (select one or more): each run records a new version.",
    )
    return dg.Definitions(
        assets=[
            *ingest_assets,
            *embedding_assets,
            *publication_assets,
            *signal_assets,
            *signal_publication_assets,
            *curation_assets,
            *curation_publication_assets,
            *view_specs(config),
            *subsets,
        ],
        asset_checks=[*ingest_checks, *embedding_checks, *signal_checks],
        jobs=[*(stage_job(name) for name in JOBS), subsets_job],
        resources={"lakehouse": lakehouse_resource(config)},
    )
