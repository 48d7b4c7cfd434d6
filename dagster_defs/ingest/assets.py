"""Ingest assets: one per lakehouse table, partitioned by source (videos, annotations, clips,
keyframes, quarantine), built from the stage declaration (:mod:`lakehouse.pipeline`)."""

from dagster_defs.stages import stage_assets

ingest_assets = stage_assets("ingest")
