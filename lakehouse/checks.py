"""The blocking checks, as library functions: Dagster's asset checks call them on the tables'
latest versions, and :func:`lakehouse.publish.publish` calls them again on exactly the versions
it is about to publish. Each takes an open :class:`~lakehouse.sql.Session` and returns a
:class:`CheckOutcome`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse import schemas

if TYPE_CHECKING:
    from lakehouse.sql import Session
    from lakehouse.store import Lakehouse

NORM_TOLERANCE = 1e-3


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        detail = ", ".join(f"{k}={v}" for k, v in self.metadata.items())
        return f"{self.name} ({detail})"


def _one(session: Session, sql: str, params: Any = None) -> dict[str, Any]:
    return session.query(sql, params).to_pylist()[0]


def clip_spans_within_video(session: Session, source: str | None = None) -> CheckOutcome:
    """Every probed clip (of ``source``, or of every source) lies inside its video, with one
    frame of slack at the end."""
    row = _one(
        session,
        """
        select count(*) as clips,
               count(*) filter (
                   where c.start_s < 0 or c.end_s <= c.start_s
                      or c.end_s > v.duration_s + 1.0 / coalesce(v.fps, 30) + 0.001
               ) as outside
        from clips c join videos v on v.video_id = c.video_id
        where c.probe_status = 'ok' and ($source is null or c.source = $source)
        """,
        {"source": source},
    )
    return CheckOutcome(
        "clip_spans_within_video",
        row["outside"] == 0,
        {"clips_checked": row["clips"], "clips_outside_video": row["outside"]},
    )


def unique_keys(session: Session, table: str) -> CheckOutcome:
    """No primary key appears twice in ``table``."""
    key = schemas.primary_key(session.lh.schema(table))
    row = _one(session, f"select count(*) as n, count(distinct {key}) as d from {table}")
    return CheckOutcome(
        f"unique_{key}", row["n"] == row["d"], {"rows": row["n"], "duplicates": row["n"] - row["d"]}
    )


def unit_vectors(
    lh: Lakehouse, table: str, version: int, since_version: int | None = None
) -> CheckOutcome:
    """Every vector written after ``since_version`` (all of them when None) and present at
    ``version`` is finite and of unit norm. Rows written since are exactly the rows of fragments
    the older version does not have (an update rewrites its rows into new fragments), so a
    publication reads only what changed."""
    import numpy as np

    ds = lh.dataset(table, version=version)
    seen = set()
    if since_version is not None:
        seen = {f.fragment_id for f in lh.dataset(table, version=since_version).get_fragments()}
    fragments = [f for f in ds.get_fragments() if f.fragment_id not in seen]
    checked = bad = 0
    if fragments:
        for batch in ds.to_batches(columns=["vector"], fragments=fragments):
            column = batch.column("vector")
            nulls = column.null_count
            values = column.drop_null().flatten().to_numpy(zero_copy_only=False)
            width = column.type.list_size
            matrix = values.reshape(-1, width).astype(np.float64)
            norms = np.sqrt((matrix * matrix).sum(axis=1))
            checked += batch.num_rows
            bad += nulls + int(np.sum(~np.isfinite(norms) | (np.abs(norms - 1.0) > NORM_TOLERANCE)))
    return CheckOutcome(
        f"{table}_unit_norm",
        bad == 0,
        {"vectors_checked": checked, "not_unit_norm": bad},
    )
