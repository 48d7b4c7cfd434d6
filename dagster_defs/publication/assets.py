"""The publication assets: ``published_versions`` (the last asset of the ingest and embed jobs),
``published_signals`` (of the signals job) and ``published_curation`` (of the curation job).

Each runs only when every upstream asset materialized and every blocking check passed (Dagster
skips the downstream of a failed blocking check), and then publishes the versions just checked
(:func:`lakehouse.publication.publish.publish`); readers see nothing of a run before that.
"""

from dagster_defs.stages import stage_asset
from lakehouse.pipeline import BY_NAME

publication_assets = [stage_asset(BY_NAME["published_versions"])]
signal_publication_assets = [stage_asset(BY_NAME["published_signals"])]
curation_publication_assets = [stage_asset(BY_NAME["published_curation"])]
