"""Signals assets: per-source signals from the keyframe times, then two assets over every
source (the viewpoint classifier and the near-duplicate clusters need all clips at once)."""

from dagster_defs.stages import stage_assets

signal_assets = stage_assets("signals", per_source=True)
curation_assets = stage_assets("signals", per_source=False)
