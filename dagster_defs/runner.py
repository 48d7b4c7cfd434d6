"""Run the ingest job in-process on a persistent Dagster instance (what ``lakehouse ingest``
does), so CLI runs appear in the Dagster UI's run history and asset lineage."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from dagster_defs.definitions import INGEST_JOB, build_defs
from dagster_defs.ingest.partitions import sources_partitions
from lakehouse.core.config import Config
from lakehouse.core.errors import PipelineError


@dataclass
class AssetReport:
    asset: str
    metadata: dict[str, Any]


@dataclass
class CheckReport:
    asset: str
    check: str
    passed: bool
    severity: str
    metadata: dict[str, Any]


@dataclass
class RunReport:
    run_id: str
    success: bool
    assets: list[AssetReport] = field(default_factory=list)
    checks: list[CheckReport] = field(default_factory=list)


def open_instance(config: Config) -> dg.DagsterInstance:
    """The Dagster instance that keeps this lakehouse's run history."""
    home = config.dagster_home_path
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        # no network here and no reason to phone home from a local lakehouse
        settings.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def ensure_partition(instance: dg.DagsterInstance, source: str) -> None:
    """Register ``source`` as a partition. Two runs starting at once both see it missing and
    both insert; Dagster's table has a unique key, so the second insert fails — and the
    partition is there, which is all either run needs."""
    if instance.has_dynamic_partition(sources_partitions.name, source):
        return
    try:
        instance.add_dynamic_partitions(sources_partitions.name, [source])
    except Exception:  # sqlalchemy's IntegrityError, through whichever storage is configured
        if not instance.has_dynamic_partition(sources_partitions.name, source):
            raise


def run_ingest(
    config: Config,
    source: str,
    *,
    instance: dg.DagsterInstance | None = None,
    log_level: int = logging.INFO,
    job_name: str = INGEST_JOB,
) -> RunReport:
    """Materialize a job's assets (and their checks) for one source partition."""
    defs = build_defs(config)
    own_instance = instance is None
    instance = instance or open_instance(config)
    try:
        ensure_partition(instance, source)
        job = defs.resolve_job_def(job_name)
        run_config = {
            "loggers": {"console": {"config": {"log_level": logging.getLevelName(log_level)}}}
        }
        result = job.execute_in_process(
            run_config=run_config, partition_key=source, instance=instance, raise_on_error=False
        )
        report = _report(result)
    finally:
        if own_instance:
            instance.dispose()
    if not report.success:
        failure = _first_failure(result)
        raise PipelineError(f"Dagster run {report.run_id} ({job_name}) failed: {failure}")
    return report


def run_subset(
    config: Config,
    name: str,
    params: dict[str, Any] | None = None,
    *,
    instance: dg.DagsterInstance | None = None,
    log_level: int = logging.INFO,
) -> RunReport:
    """Materialize one subset asset in a Dagster run (``lakehouse subset materialize``)."""
    import json

    from dagster_defs.definitions import SUBSETS_JOB
    from lakehouse.subsets.files import get_subset

    get_subset(config, name)  # a clear error for an unknown name, before Dagster's
    defs = build_defs(config)
    own_instance = instance is None
    instance = instance or open_instance(config)
    try:
        job = defs.resolve_job_def(SUBSETS_JOB)
        run_config = {
            "loggers": {"console": {"config": {"log_level": logging.getLevelName(log_level)}}},
            "ops": {name: {"config": {"params_json": json.dumps(params or {})}}},
        }
        result = job.execute_in_process(
            run_config=run_config,
            instance=instance,
            asset_selection=[dg.AssetKey(name)],
            raise_on_error=False,
        )
        report = _report(result)
    finally:
        if own_instance:
            instance.dispose()
    if not report.success:
        raise PipelineError(
            f"Dagster run {report.run_id} (subset {name}) failed: {_first_failure(result)}"
        )
    return report


def run_curation(
    config: Config,
    *,
    instance: dg.DagsterInstance | None = None,
    log_level: int = logging.INFO,
) -> RunReport:
    """Materialize the curation assets over every source (predicted viewpoints, near-duplicates)
    in a Dagster run (``lakehouse signals`` runs it after the per-source signals)."""
    from dagster_defs.definitions import CURATION_JOB

    defs = build_defs(config)
    own_instance = instance is None
    instance = instance or open_instance(config)
    try:
        job = defs.resolve_job_def(CURATION_JOB)
        run_config = {
            "loggers": {"console": {"config": {"log_level": logging.getLevelName(log_level)}}}
        }
        result = job.execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False
        )
        report = _report(result)
    finally:
        if own_instance:
            instance.dispose()
    if not report.success:
        raise PipelineError(
            f"Dagster run {report.run_id} ({CURATION_JOB}) failed: {_first_failure(result)}"
        )
    return report


def _report(result: dg.ExecuteInProcessResult) -> RunReport:
    report = RunReport(result.run_id, result.success)
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        report.assets.append(
            AssetReport(
                mat.asset_key.to_user_string(), {k: v.value for k, v in mat.metadata.items()}
            )
        )
    for event in result.get_asset_check_evaluations():
        report.checks.append(
            CheckReport(
                event.asset_key.to_user_string(),
                event.check_name,
                event.passed,
                event.severity.value,
                {k: v.value for k, v in event.metadata.items()},
            )
        )
    return report


def _first_failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            message = error.message.strip().splitlines()[0] if error else "unknown error"
            cause = error.cause if error else None
            while cause is not None:
                message = cause.message.strip().splitlines()[0]
                cause = cause.cause
            return f"step {event.step_key}: {message}"
    return "see the Dagster run log"
