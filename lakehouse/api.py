"""The user's facade: :class:`Lakehouse`, a :class:`~lakehouse.storage.store.Store` with verbs.

``lakehouse.open()`` returns one. It is the storage handle (every library function takes it as
its store) plus what a user does with a lakehouse: ingest a folder, run SQL, search, compute
signals, draw a contact sheet, materialize, reproduce and export subsets. Each verb calls one
library function; none of them is run by the library itself, so the layers below never depend
on this one (docs/architecture.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lakehouse.core.schemas import VECTOR_TABLES
from lakehouse.ingest.sources import register_source
from lakehouse.pipeline import run_signals, run_stages
from lakehouse.query.session import run_sql
from lakehouse.render.contact_sheet import ContactSheet, contact_sheet
from lakehouse.search.ranking import search
from lakehouse.storage.leases import reading
from lakehouse.storage.store import Store
from lakehouse.subsets.export import ExportResult, export_subset
from lakehouse.subsets.versions import (
    Reproduction,
    SubsetVersion,
    materialize_subset,
    reproduce_subset,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.ingest.stage import StageResult


class Lakehouse(Store):
    """A lakehouse root (tables are ``<root>/<name>.lance``) and what a user does with it."""

    def __repr__(self) -> str:
        return f"Lakehouse(root={self.root!r})"

    def sql(self, query: str, params: Any = None, **kwargs: Any) -> pa.Table:
        """Run one read-only SQL query over the tables and views (see
        :func:`lakehouse.query.session.run_sql`)."""
        return run_sql(self, query, params, **kwargs)

    def ingest(
        self,
        folder: str | os.PathLike[str],
        *,
        source: str | None = None,
        annotations: Sequence[str | os.PathLike[str]] | None = None,
        viewpoint: str | None = None,
        run_id: str | None = None,
    ) -> list[StageResult]:
        """Register ``folder`` as a source and run every ingest stage on it (no Dagster)."""
        src = register_source(
            self, folder, name=source, annotations=annotations, viewpoint=viewpoint
        )
        return run_stages(self, src, run_id=run_id)

    def signals(self, source: str | None = None, *, run_id: str | None = None) -> list[StageResult]:
        """Hand, body, face and quality signals of the clips lacking them (MediaPipe), then the
        predicted viewpoints and near-duplicate clusters over every source (no Dagster; the
        ``signals_job`` and ``curation`` jobs run the same stages). Each group of tables is
        published (readers see it) only after its blocking checks passed. Returns each stage's
        result; see docs/signals.md."""
        return run_signals(self, source, run_id=run_id)

    def search(self, text: str | None = None, **kwargs: Any) -> pa.Table:
        """Semantic search over clips; see :func:`lakehouse.search.ranking.search`. The
        published vector tables it reads are leased for the search, so cleanup keeps them."""
        versions = {}
        publication = self.publication()
        for name in VECTOR_TABLES:
            ds = self.published_dataset(name, publication)
            if ds is not None:
                versions[name] = ds.version
        with reading(self, versions):
            return search(self, text, **kwargs)

    def contact_sheet(self, clips: Any, **kwargs: Any) -> ContactSheet:
        """The keyframes of ``clips`` (search hits, or any table with ``clip_id``) on one
        self-contained HTML page that notebooks show inline; see
        :func:`lakehouse.render.contact_sheet.contact_sheet`."""
        return contact_sheet(self, clips, **kwargs)

    def materialize_subset(
        self, name: str, params: Mapping[str, Any] | None = None
    ) -> SubsetVersion:
        """Record the next version of subset ``name`` (without Dagster); see
        :func:`lakehouse.subsets.versions.materialize_subset`."""
        return materialize_subset(self, name, params)

    def reproduce_subset(self, name: str, version: int | None = None) -> Reproduction:
        """Re-run a recorded subset version against its pinned tables."""
        return reproduce_subset(self, name, version)

    def export_subset(self, name: str, *, fmt: str, out: str, **kwargs: Any) -> ExportResult:
        """Export a subset version (Parquet or JSONL manifest, WebDataset shards)."""
        return export_subset(self, name, fmt=fmt, out=out, **kwargs)
