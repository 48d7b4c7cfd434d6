"""The publication assets: ``published_versions`` (the last asset of the ingest and embed jobs),
``published_signals`` (of the signals job) and ``published_curation`` (of the curation job).

Each runs only when every upstream asset materialized and every blocking check passed (Dagster
skips the downstream of a failed blocking check), and then publishes the versions just checked
(:func:`lakehouse.publish.publish`); readers see nothing of a run before that.
"""

import dagster as dg

from dagster_defs.embeddings.assets import search_index
from dagster_defs.ingest.assets import quarantine
from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.resources import LakehouseResource
from dagster_defs.signals.assets import near_duplicates, signals, viewpoint_predictions
from lakehouse.publish import CURATION_TABLES, PIPELINE_TABLES, SIGNAL_TABLES, publish

GROUP = "publication"


def _publish(lakehouse: LakehouseResource, tables: tuple[str, ...]) -> dg.MaterializeResult:
    """Publish ``tables`` (after their blocking checks) and report what readers see now."""
    versions = publish(lakehouse.open(), tables)
    return dg.MaterializeResult(metadata={"published": dg.MetadataValue.json(versions)})


@dg.asset(
    partitions_def=sources_partitions,
    group_name=GROUP,
    deps=[quarantine, search_index],
    kinds={"lance"},
    description=(
        "The table versions readers see, moved forward (every table at once) only after the "
        "blocking checks passed on exactly those versions."
    ),
)
def published_versions(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    return _publish(lakehouse, PIPELINE_TABLES)


@dg.asset(
    partitions_def=sources_partitions,
    group_name=GROUP,
    deps=[signals],
    kinds={"lance"},
    description=(
        "The signals versions readers see (clip_facts, exports' privacy gate), moved forward "
        "only after the signals' blocking range check passed."
    ),
)
def published_signals(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    return _publish(lakehouse, SIGNAL_TABLES)


@dg.asset(
    group_name=GROUP,
    deps=[viewpoint_predictions, near_duplicates],
    kinds={"lance"},
    description=(
        "The viewpoint-prediction and near-duplicate versions readers see, moved forward only "
        "after the cluster check passed."
    ),
)
def published_curation(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    return _publish(lakehouse, CURATION_TABLES)


publication_assets = [published_versions]
signal_publication_assets = [published_signals]
curation_publication_assets = [published_curation]
