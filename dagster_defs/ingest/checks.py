"""Asset checks on the ingest tables, evaluated per source partition with DuckDB.

Checks read the tables' latest versions (what the run just wrote), not the published ones; the
blocking ones gate ``published_versions``, which re-runs them on the exact versions it publishes.
"""

import warnings

import dagster as dg

from dagster_defs.ingest.assets import clips, quarantine
from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.resources import LakehouseResource
from lakehouse import checks
from lakehouse.sql import Session

# Partitioned asset checks are a preview feature in Dagster 1.13; they are what lets a check
# look at exactly the source partition that was just materialized.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, module="dagster")


def _one(lakehouse: LakehouseResource, sql: str, source: str) -> dict:
    with Session(lakehouse.open(), latest=True) as session:
        return session.query(sql, [source]).to_pylist()[0]


def _result(outcome: checks.CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=outcome.passed, metadata=outcome.metadata)


@dg.asset_check(asset=clips, blocking=True, partitions_def=sources_partitions)
def clip_spans_within_video(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Every probed clip lies inside its video (one frame of slack at the end)."""
    with Session(lakehouse.open(), latest=True) as session:
        return _result(checks.clip_spans_within_video(session, context.partition_key))


@dg.asset_check(asset=clips, blocking=True, partitions_def=sources_partitions)
def unique_clip_id(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """No clip_id appears twice in the whole clips table."""
    with Session(lakehouse.open(), latest=True) as session:
        return _result(checks.unique_keys(session, "clips"))


@dg.asset_check(
    asset=clips,
    partitions_def=sources_partitions,
    additional_deps=[dg.AssetKey("annotations")],
)
def annotation_coverage(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Every annotation row resolves to a clip; reports the share of clips with annotations."""
    row = _one(
        lakehouse,
        """
        with a as (select * from annotations where source = $1),
             c as (select * from clips where source = $1)
        select
            (select count(*) from c) as clips,
            (select count(*) from c where clip_id in (select clip_id from a)) as annotated,
            (select count(*) from a where clip_id not in (select clip_id from c)) as orphans,
            (select count(*) from a where not video_found) as video_missing
        """,
        context.partition_key,
    )
    coverage = row["annotated"] / row["clips"] if row["clips"] else 0.0
    return dg.AssetCheckResult(
        passed=row["orphans"] == 0,
        metadata={
            "coverage": dg.MetadataValue.float(round(coverage, 4)),
            "annotated_clips": row["annotated"],
            "orphan_annotations": row["orphans"],
            "annotations_without_local_video": row["video_missing"],
        },
    )


@dg.asset_check(asset=quarantine, partitions_def=sources_partitions)
def quarantine_counts(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Warns when more than half of a source's video files were quarantined."""
    row = _one(
        lakehouse,
        """
        select
            (select count(*) from videos where source = $1) as videos,
            (select count(*) from quarantine where source = $1) as quarantined,
            (select count(*) from quarantine
              where source = $1 and stage in ('discover', 'videos')) as bad_files
        """,
        context.partition_key,
    )
    files = row["videos"] + row["bad_files"]
    share = row["bad_files"] / files if files else 0.0
    return dg.AssetCheckResult(
        passed=share <= 0.5,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "quarantined_rows": row["quarantined"],
            "bad_video_files": row["bad_files"],
            "bad_file_share": dg.MetadataValue.float(round(share, 4)),
        },
    )


ingest_checks = [clip_spans_within_video, unique_clip_id, annotation_coverage, quarantine_counts]
