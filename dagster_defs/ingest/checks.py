"""Asset checks on the ingest tables, evaluated per source partition with DuckDB.

Checks read the tables' latest versions (what the run just wrote), not the published ones; the
blocking ones gate ``published_versions``, which re-runs them on the exact versions it publishes.
"""

import warnings

import dagster as dg

from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.metadata import check_result
from dagster_defs.resources import LakehouseResource
from lakehouse.publication import checks
from lakehouse.query.session import Session

# Partitioned asset checks are a preview feature in Dagster 1.13; they are what lets a check
# look at exactly the source partition that was just materialized.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, module="dagster")


@dg.asset_check(asset="clips", blocking=True, partitions_def=sources_partitions)
def clip_spans_within_video(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Every probed clip lies inside its video (one frame of slack at the end)."""
    with Session(lakehouse.open(), latest=True) as session:
        return check_result(checks.clip_spans_within_video(session, context.partition_key))


@dg.asset_check(asset="clips", blocking=True, partitions_def=sources_partitions)
def unique_clip_id(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """No clip_id appears twice in the whole clips table."""
    with Session(lakehouse.open(), latest=True) as session:
        return check_result(checks.unique_keys(session, "clips"))


@dg.asset_check(
    asset="clips",
    partitions_def=sources_partitions,
    additional_deps=[dg.AssetKey("annotations")],
)
def annotation_coverage(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Every annotation row resolves to a clip; reports the share of clips with annotations."""
    with Session(lakehouse.open(), latest=True) as session:
        return check_result(checks.annotation_coverage(session, context.partition_key))


@dg.asset_check(asset="quarantine", partitions_def=sources_partitions)
def quarantine_counts(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Warns when more than half of a source's video files were quarantined."""
    with Session(lakehouse.open(), latest=True) as session:
        outcome = checks.quarantine_counts(session, context.partition_key)
    # a warning, not a gate: the usable files of a half-broken source are still worth reading
    return check_result(outcome, severity=dg.AssetCheckSeverity.WARN)


ingest_checks = [clip_spans_within_video, unique_clip_id, annotation_coverage, quarantine_counts]
