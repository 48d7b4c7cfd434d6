"""Checks on the signals tables: values in range, coverage by the current models, the privacy
review queue, the viewpoint classifier's held-out accuracy, one representative per cluster."""

import warnings

import dagster as dg

from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.metadata import check_result, skipped_check
from dagster_defs.resources import LakehouseResource
from lakehouse.core.errors import ModelUnavailableError
from lakehouse.core.schemas import DUPLICATES_TABLE, VIEWPOINT_TABLE
from lakehouse.media.detectors import resolve_signals_model
from lakehouse.publication import checks
from lakehouse.query.session import Session

warnings.filterwarnings("ignore", category=dg.PreviewWarning, module="dagster")

MIN_VIEWPOINT_ACCURACY = 0.8


def _latest(lakehouse: LakehouseResource, sql: str, params: list | None = None) -> list[dict]:
    """Rows of ``sql`` over the tables' latest versions: what the run just wrote, which the
    publication assets show readers only after the blocking checks passed."""
    with Session(lakehouse.open(), latest=True) as session:
        return session.query(sql, params).to_pylist()


@dg.asset_check(asset="signals", blocking=True, partitions_def=sources_partitions)
def signal_values_in_range(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Every value in its range (``lakehouse.enrich.signals.out_of_range_sql``: fractions,
    areas, grey levels in [0, 1], sharpness and motion not negative), the 0/1/2-hand fractions add
    up to 1, and every privacy_status is a known one. It reads the latest versions: the rows the
    asset just wrote, before readers see them (``published_signals`` runs it again on what it
    publishes)."""
    with Session(lakehouse.open(), latest=True) as session:
        outcome = checks.signal_values_in_range(session, context.partition_key)
    return check_result(outcome)


@dg.asset_check(asset="signals", partitions_def=sources_partitions)
def signal_coverage(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Share of the source's clips with keyframes that have signals from the current models."""
    try:
        model_id = resolve_signals_model()
    except ModelUnavailableError as exc:  # nothing to measure coverage by: a skip
        return skipped_check("model unavailable", str(exc))
    row = _latest(
        lakehouse,
        """
        select count(distinct k.clip_id) as clips,
               count(distinct s.clip_id) as covered
        from keyframes k
        left join signals s on s.clip_id = k.clip_id and s.model_id = $1
        where k.source = $2
        """,
        [model_id, context.partition_key],
    )[0]
    share = row["covered"] / row["clips"] if row["clips"] else 1.0
    return dg.AssetCheckResult(
        passed=share == 1.0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "model_id": model_id,
            "clips": row["clips"],
            "covered": row["covered"],
            "coverage": dg.MetadataValue.float(round(share, 4)),
        },
    )


@dg.asset_check(asset="signals", partitions_def=sources_partitions)
def privacy_review_queue(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Warns while clips of the source need a person's privacy review; counts every status."""
    rows = _latest(
        lakehouse,
        """
        select privacy_status, count(*) as clips from clip_facts
        where source = $1 and privacy_status is not null group by all order by all
        """,
        [context.partition_key],
    )
    counts = {r["privacy_status"]: int(r["clips"]) for r in rows}
    return dg.AssetCheckResult(
        passed=counts.get("needs_review", 0) == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"by_status": dg.MetadataValue.json(counts)},
    )


@dg.asset_check(asset=VIEWPOINT_TABLE)
def viewpoint_held_out_accuracy(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    """Accuracy of the stored out-of-fold predictions on the labelled clips (warns under 0.8)."""
    row = _latest(
        lakehouse,
        """
        select count(*) as held_out,
               count(*) filter (where predicted_viewpoint = labelled_viewpoint) as correct
        from viewpoint_predictions where held_out
        """,
    )[0]
    accuracy = row["correct"] / row["held_out"] if row["held_out"] else None
    return dg.AssetCheckResult(
        passed=accuracy is not None and accuracy >= MIN_VIEWPOINT_ACCURACY,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "held_out_clips": row["held_out"],
            "correct": row["correct"],
            "accuracy": dg.MetadataValue.float(round(accuracy or 0.0, 4)),
        },
    )


@dg.asset_check(asset=DUPLICATES_TABLE, blocking=True)
def one_representative_per_cluster(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    """Every cluster has exactly one representative (itself), and every member is within the
    threshold of it (on the latest version, before ``published_curation`` publishes it)."""
    with Session(lakehouse.open(), latest=True) as session:
        outcome = checks.one_representative_per_cluster(session)
    return check_result(outcome)


signal_checks = [
    signal_values_in_range,
    signal_coverage,
    privacy_review_queue,
    viewpoint_held_out_accuracy,
    one_representative_per_cluster,
]
