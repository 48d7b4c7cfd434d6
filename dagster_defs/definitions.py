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
from lakehouse.config import Config

INGEST_JOB = "ingest"
EMBED_JOB = "embed"
SUBSETS_JOB = "subsets"
SIGNALS_JOB = "signals_job"
CURATION_JOB = "curation"


def build_defs(config: Config) -> dg.Definitions:
    """Definitions wired to ``config``'s lakehouse root."""
    ingest_job = dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.assets(*ingest_assets, *embedding_assets, *publication_assets),
        partitions_def=sources_partitions,
        description=(
            "Ingest one source folder: videos → annotations → clips → keyframes → embeddings, "
            "then publish the checked versions to readers."
        ),
    )
    embed_job = dg.define_asset_job(
        EMBED_JOB,
        selection=dg.AssetSelection.assets(*embedding_assets, *publication_assets),
        partitions_def=sources_partitions,
        description=(
            "(Re-)embed one source with the configured models, refresh the indexes, publish."
        ),
    )
    signals_job = dg.define_asset_job(
        SIGNALS_JOB,
        selection=dg.AssetSelection.assets(*signal_assets, *signal_publication_assets),
        partitions_def=sources_partitions,
        description=(
            "Hand, body, face and quality signals of one source's clips (MediaPipe), then "
            "publish them once their checks passed."
        ),
    )
    curation_job = dg.define_asset_job(
        CURATION_JOB,
        selection=dg.AssetSelection.assets(*curation_assets, *curation_publication_assets),
        description=(
            "Predicted viewpoints and near-duplicate clusters over every source, then publish "
            "them once their checks passed."
        ),
    )
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
        jobs=[ingest_job, embed_job, signals_job, curation_job, subsets_job],
        resources={"lakehouse": lakehouse_resource(config)},
    )
