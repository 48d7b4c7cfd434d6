"""Dagster wiring for the lakehouse (``dagster dev -m dagster_defs``)."""

from dagster_defs.definitions import build_defs
from lakehouse.core.config import Config

defs = build_defs(Config.load())
