"""Checks on the signals tables: values in range, coverage by the current models, the privacy
review queue, the viewpoint classifier's held-out accuracy, one representative per cluster."""

import warnings

import dagster as dg

from dagster_defs.ingest.partitions import sources_partitions
from dagster_defs.resources import LakehouseResource
from dagster_defs.signals.assets import near_duplicates, signals, viewpoint_predictions
from lakehouse.errors import ModelUnavailableError
from lakehouse.signals import PRIVACY_STATUSES

warnings.filterwarnings("ignore", category=dg.PreviewWarning, module="dagster")

FRACTIONS = (
    "hands_frac",
    "hands_0_frac",
    "hands_1_frac",
    "hands_2_frac",
    "left_hand_frac",
    "right_hand_frac",
    "person_frac",
    "full_body_frac",
    "face_frac",
    "max_face_area",
    "brightness",
    "contrast",
)
MIN_VIEWPOINT_ACCURACY = 0.8


@dg.asset_check(asset=signals, blocking=True, partitions_def=sources_partitions)
def signal_values_in_range(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Fractions and areas lie in [0, 1], the 0/1/2-hand fractions add up to 1, and every
    privacy_status is a known one."""
    out_of_range = " or ".join(f"{c} < 0 or {c} > 1" for c in FRACTIONS)
    row = (
        lakehouse.open()
        .sql(
            f"""
            select count(*) as rows,
                   count(*) filter (where {out_of_range}) as out_of_range,
                   count(*) filter (
                       where abs(hands_0_frac + hands_1_frac + hands_2_frac - 1) > 1e-6
                   ) as hand_fractions_not_summing_to_one,
                   count(*) filter (
                       where privacy_status is null or not list_contains(?, privacy_status)
                   ) as unknown_privacy_status
            from signals where source = ?
            """,
            [list(PRIVACY_STATUSES), context.partition_key],
        )
        .to_pylist()[0]
    )
    bad = row["out_of_range"] + row["hand_fractions_not_summing_to_one"]
    return dg.AssetCheckResult(
        passed=bad + row["unknown_privacy_status"] == 0,
        metadata={k: int(v) for k, v in row.items()},
    )


@dg.asset_check(asset=signals, partitions_def=sources_partitions)
def signal_coverage(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Share of the source's clips with keyframes that have signals from the current models."""
    from lakehouse.detectors import resolve_signals_model

    lh = lakehouse.open()
    try:
        model_id = resolve_signals_model()
    except ModelUnavailableError as exc:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"message": str(exc)}
        )
    row = lh.sql(
        """
        select count(distinct k.clip_id) as clips,
               count(distinct s.clip_id) as covered
        from keyframes k
        left join signals s on s.clip_id = k.clip_id and s.model_id = ?
        where k.source = ?
        """,
        [model_id, context.partition_key],
    ).to_pylist()[0]
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


@dg.asset_check(asset=signals, partitions_def=sources_partitions)
def privacy_review_queue(
    context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
) -> dg.AssetCheckResult:
    """Warns while clips of the source need a person's privacy review; counts every status."""
    rows = (
        lakehouse.open()
        .sql(
            """
            select privacy_status, count(*) as clips from clip_facts
            where source = ? and privacy_status is not null group by all order by all
            """,
            [context.partition_key],
        )
        .to_pylist()
    )
    counts = {r["privacy_status"]: int(r["clips"]) for r in rows}
    return dg.AssetCheckResult(
        passed=counts.get("needs_review", 0) == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"by_status": dg.MetadataValue.json(counts)},
    )


@dg.asset_check(asset=viewpoint_predictions)
def viewpoint_held_out_accuracy(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    """Accuracy of the stored out-of-fold predictions on the labelled clips (warns under 0.8)."""
    row = (
        lakehouse.open()
        .sql(
            """
            select count(*) as held_out,
                   count(*) filter (where predicted_viewpoint = labelled_viewpoint) as correct
            from viewpoint_predictions where held_out
            """
        )
        .to_pylist()[0]
    )
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


@dg.asset_check(asset=near_duplicates, blocking=True)
def one_representative_per_cluster(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    """Every cluster has exactly one representative (itself), and every member is within the
    threshold of it."""
    row = (
        lakehouse.open()
        .sql(
            """
            with clusters as (
                select cluster_id,
                       count(*) filter (where is_representative) as representatives,
                       bool_and(is_representative = (clip_id = cluster_id)) as consistent,
                       bool_and(similarity >= threshold - 1e-6) as within
                from near_duplicates group by cluster_id
            )
            select count(*) as clusters,
                   count(*) filter (
                       where representatives <> 1 or not consistent or not within
                   ) as bad_clusters
            from clusters
            """
        )
        .to_pylist()[0]
    )
    return dg.AssetCheckResult(
        passed=row["bad_clusters"] == 0, metadata={k: int(v) for k, v in row.items()}
    )


signal_checks = [
    signal_values_in_range,
    signal_coverage,
    privacy_review_queue,
    viewpoint_held_out_accuracy,
    one_representative_per_cluster,
]
