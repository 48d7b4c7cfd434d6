"""Commits with retries: every write to a table goes through :func:`commit_with_retry`.

Concurrency: the key field carries Lance's unenforced-primary-key metadata, so two writers
inserting the same new key at once conflict and the loser retries as an update (measured: 4
processes × 15 overlapping merges leave exactly one row per key). Retryable conflicts are retried
from the latest version with jittered exponential backoff; an incompatible one (the table
overwritten or restored meanwhile) raises :class:`~lakehouse.core.errors.WriteConflictError`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from lakehouse.core.errors import WriteConflictError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE_CONFLICTS = (
    "retryable commit conflict",
    "preempted by concurrent transaction",
    "too many concurrent writers",
)
INCOMPATIBLE_CONFLICTS = ("incompatible transaction",)
COMMIT_ATTEMPTS = 8
BACKOFF_S = 0.05
BACKOFF_MAX_S = 3.0
# Past this much new data a merge joins by scanning the table's keys instead of looking them up
# in the key's btree index: Lance's index lookup holds the whole source in a hash table that
# cannot spill, and fails beyond its 300 MB memory pool (100k clip rows on a 10M-row table);
# the scan join is as fast at that size.
INDEXED_MERGE_MAX_BYTES = 32 * 1024 * 1024


def conflict_kind(exc: BaseException) -> str | None:
    """``"retryable"``, ``"incompatible"`` or None (not a commit conflict) for a Lance error."""
    from lance.commit import CommitConflictError

    text = str(exc).lower()
    if any(m in text for m in INCOMPATIBLE_CONFLICTS):
        return "incompatible"
    if isinstance(exc, CommitConflictError) or any(m in text for m in RETRYABLE_CONFLICTS):
        return "retryable"
    return None


def commit_with_retry(
    table: str, attempt: Callable[[], T], *, attempts: int = COMMIT_ATTEMPTS
) -> T:
    """Run one commit; ``attempt`` must start from the table's latest version every time.

    A retryable conflict (another writer committed first and Lance could not rebase over it) is
    retried after a jittered exponential backoff (0.05 s, 0.1 s, … capped at 3 s). An incompatible
    one — the table was overwritten or restored meanwhile — raises WriteConflictError at once:
    applying the step on top of such a change would silently undo or mix it. Merge statistics
    (a dict result) gain ``attempts``.
    """
    delay = BACKOFF_S
    for n in range(1, attempts + 1):
        try:
            result = attempt()
        except (OSError, RuntimeError) as exc:  # lancedb reports lance errors as RuntimeError
            kind = conflict_kind(exc)
            if kind is None:
                raise
            detail = str(exc).split(", /")[0].strip()
            if kind == "incompatible":
                raise WriteConflictError(
                    f"Table {table} was changed incompatibly by another writer while this step "
                    f"wrote it ({detail}); nothing was committed: check who overwrote or restored "
                    "it, then re-run the step."
                ) from None
            if n == attempts:
                raise WriteConflictError(
                    f"Table {table} still conflicted with concurrent writers after {attempts} "
                    f"attempts ({detail}); nothing was committed: re-run the step."
                ) from None
            pause = delay * (0.5 + random.random())
            log.info(
                "commit conflict on %s (attempt %d/%d); retrying in %.2f s",
                table,
                n,
                attempts,
                pause,
            )
            time.sleep(pause)
            delay = min(delay * 2, BACKOFF_MAX_S)
        else:
            if isinstance(result, dict):
                result["attempts"] = n
            return result
    raise AssertionError("unreachable")


def run_merge(builder: Any, data: pa.Table) -> dict[str, int]:
    """Execute a ``merge_insert`` builder on ``data``; its statistics as a dict.

    Lance's own retry loop is switched off so that every conflict comes back to
    :func:`commit_with_retry`, where it is retried with backoff from the latest version (and
    counted): the outcome is the same."""
    if data.nbytes > INDEXED_MERGE_MAX_BYTES:
        builder = builder.use_index(False)
    return dict(builder.conflict_retries(0).execute(data))
