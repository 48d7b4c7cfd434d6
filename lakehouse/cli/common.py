"""What every command shares: the state object and the ``--root`` / ``--config`` options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click


class State:
    def __init__(self) -> None:
        self.root: str | None = None
        self.config_file: str | None = None
        self.verbose = 0

    def config(self) -> Any:
        from lakehouse.core.config import Config

        return Config.load(root=self.root, config_file=self.config_file)

    def lakehouse(self) -> Any:
        from lakehouse.api import Lakehouse

        return Lakehouse(self.config())


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--root`` / ``--config`` accepted after the command name too."""

    @click.option("--root", "root", default=None, help="Lakehouse root (folder or s3:// URI).")
    @click.option("--config", "config_file", default=None, help="Configuration TOML file.")
    @click.pass_obj
    @functools.wraps(func)
    def wrapper(state: State, root: str | None, config_file: str | None, **kwargs: Any) -> Any:
        if root:
            state.root = root
        if config_file:
            state.config_file = config_file
        return func(state, **kwargs)

    return wrapper


def check_status(check: Any) -> str:
    """How a Dagster check of a run reads for people: ``passed``, ``skipped (why)`` for a check
    that could not run here (its model is unavailable: recorded as passing, with ``skipped`` in
    its metadata), or ``FAILED (severity)``."""
    if check.passed and check.metadata.get("skipped"):
        return f"skipped ({check.metadata['skipped']})"
    return "passed" if check.passed else f"FAILED ({str(check.severity).lower()})"
