"""What every stage returns (:class:`StageResult`), the shared step that records a stage's
quarantine rows, and the quarantine report of a source."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from lakehouse.core import quarantine as q
from lakehouse.storage.filters import in_list
from lakehouse.storage.writes import WriteResult

if TYPE_CHECKING:
    from lakehouse.ingest.sources import Source
    from lakehouse.storage.store import Store

Progress = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str) -> None:
    """The default progress callback: silent."""


@dataclass
class StageResult:
    """Summary of one stage run over one source (turned into Dagster metadata)."""

    stage: str
    source: str
    table: str
    write: WriteResult
    rows: int
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        w = self.write
        text = (
            f"{self.stage}[{self.source}]: {self.rows} rows in {self.table} "
            f"(+{w.inserted} new, {w.updated} updated, {w.deleted} removed)"
        )
        if self.quarantined:
            text += f", {self.quarantined} quarantined {dict(self.reasons)}"
        return text


def record_issues(
    lh: Store,
    source: Source,
    stages: Iterable[str],
    issues: list[q.Issue],
    run_id: str,
) -> tuple[int, dict[str, int]]:
    """Replace the quarantine rows of ``source`` for ``stages`` with ``issues``."""
    rows = {}
    for issue in issues:
        row = issue.to_row(source.name, run_id)
        rows.setdefault(row["quarantine_id"], row)
    scope = f"{source.scope} AND {in_list('stage', stages)}"
    # The same failure found again keeps its recorded message: FFmpeg's wording of one damage
    # can differ between runs (how many frames the decoder's threads got out before the error),
    # and a re-run that finds nothing new must commit nothing.
    if rows:
        before = lh.read(
            "quarantine", columns=["quarantine_id", "reason_code", "message"], filter=scope
        )
        for old in before.to_pylist():
            row = rows.get(old["quarantine_id"])
            if row is not None and row["reason_code"] == old["reason_code"]:
                row["message"] = old["message"]
    lh.sync("quarantine", list(rows.values()), scope=scope)
    reasons = Counter(r["reason_code"] for r in rows.values())
    return len(rows), dict(sorted(reasons.items()))


T = TypeVar("T")


def in_batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter), for a stage that streams its rows
    into ``Store.sync_batches``."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def quarantine_report(lh: Store, source: Source) -> StageResult:
    """Summarize the quarantine rows the stages recorded for ``source``."""
    rows = lh.read("quarantine", columns=["stage", "reason_code"], filter=source.scope).to_pylist()
    reasons = Counter(r["reason_code"] for r in rows)
    stages = Counter(r["stage"] for r in rows)
    ds = lh.dataset("quarantine")
    return StageResult(
        "quarantine",
        source.name,
        "quarantine",
        WriteResult("quarantine", version=ds.version if ds is not None else None),
        rows=len(rows),
        quarantined=len(rows),
        reasons=dict(sorted(reasons.items())),
        details={"by_stage": dict(sorted(stages.items()))},
    )
