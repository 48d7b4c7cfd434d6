"""Run one user query in a separate process under hard limits (``lakehouse sql`` does).

DuckDB's memory limit covers its buffer manager and an interrupt stops a query between vectors,
but a few functions allocate outside the buffer manager and run to completion regardless
(``repeat('x', 1000000000)`` took 38 s past a 10 s limit and 2 GB here). In a worker process
(:mod:`lakehouse.media.workers`) the query runs under an address-space limit
(``sql.process_memory_mb``) and is killed at its time limit, so such a query fails with a clear
error and the caller lives. The worker side is :func:`lakehouse.query.session.query_task`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lakehouse.core import errors
from lakehouse.core.errors import QueryError, QueryTimeoutError

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.storage.store import Store

GRACE_S = 8.0  # starting the process and opening the tables, on top of the query's own limit
# what the worker process runs (the query in a session; a test may give it one that never ends)
QUERY_TASK = "lakehouse.query.session:query_task"


def run_isolated(
    lh: Store,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    versions: Mapping[str, int | str] | None = None,
    timeout_s: float | None = None,
) -> pa.Table:
    """Like :func:`lakehouse.query.session.run_sql`, in a worker process that is killed past its
    limits."""
    import pyarrow as pa

    from lakehouse.media.workers import run_supervised

    settings = lh.config.sql
    timeout = settings.timeout_s if timeout_s is None else timeout_s
    payload = {
        "config": lh.config.to_dict(),
        "sql": sql,
        "params": params if isinstance(params, Mapping) else list(params or ()),
        "versions": dict(versions or {}),
        "timeout_s": timeout,
    }
    (outcome,) = list(
        run_supervised(
            QUERY_TASK,
            [("query", payload)],
            workers=1,
            timeout_s=timeout + GRACE_S,
            memory_mb=settings.process_memory_mb,
        )
    )
    if not outcome.ok:
        if outcome.error_code == "timeout":
            raise QueryTimeoutError(
                f"Query ran past the {timeout:g} s time limit and was stopped; narrow it or raise "
                "sql.timeout_s."
            )
        raise QueryError(
            f"Query was stopped: it needed more than the {settings.process_memory_mb} MB the "
            "query process may use (sql.process_memory_mb); select less or narrow it."
        )
    result = outcome.value
    if not result["ok"]:
        cls = getattr(errors, result["error"], QueryError)
        if not (isinstance(cls, type) and issubclass(cls, errors.LakehouseError)):
            cls = QueryError
        raise cls(result["message"])
    with pa.ipc.open_stream(io.BytesIO(result["arrow"])) as reader:
        return reader.read_all()
