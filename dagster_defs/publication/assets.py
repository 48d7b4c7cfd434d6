"""``published_versions``: the last asset of the ingest and embed jobs.

It runs only when every upstream asset materialized and every blocking check passed (Dagster
skips the downstream of a failed blocking check), and then publishes the versions just checked
(:func:`lakehouse.publish.publish`); readers see nothing of a run before that.
"""

import dagster as dg

from dagster_defs.embeddings.assets import search_index
from dagster_defs.ingest.assets import quarantine
from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.resources import LakehouseResource
from lakehouse.publish import publish

GROUP = "publication"


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
    versions = publish(lakehouse.open())
    return dg.MaterializeResult(metadata={"published": dg.MetadataValue.json(versions)})


publication_assets = [published_versions]
