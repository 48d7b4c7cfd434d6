"""A video-clip lakehouse for human-centric video corpora.

Lance tables under one root, DuckDB SQL over them, Dagster assets that build them. Heavy
libraries (lance, duckdb, av, torch) are imported only where they are used, so ``import
lakehouse`` and the CLI start fast.

    >>> import lakehouse
    >>> lh = lakehouse.open("./lakehouse_data")          # doctest: +SKIP
    >>> lh.sql("select viewpoint, count(*) from clip_facts group by 1")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from lakehouse.core.config import Config
from lakehouse.core.errors import LakehouseError

if TYPE_CHECKING:
    from lakehouse.api import Lakehouse

__version__ = "0.1.0"
__all__ = ["Config", "Lakehouse", "LakehouseError", "open"]


def open(
    root: str | os.PathLike[str] | None = None,
    *,
    config: Config | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Lakehouse:
    """Open (or create) the lakehouse at ``root`` (default: configuration, then
    ``$LAKEHOUSE_ROOT``, then ``./lakehouse_data``)."""
    from lakehouse.api import Lakehouse

    if config is None:
        config = Config.load(root=root, config_file=config_file)
    elif root is not None:
        config = config.with_root(root)
    return Lakehouse(config)


def __getattr__(name: str) -> Any:
    if name == "Lakehouse":
        from lakehouse.api import Lakehouse

        return Lakehouse
    raise AttributeError(f"module 'lakehouse' has no attribute {name!r}")
