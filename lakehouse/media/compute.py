"""Where per-item work runs: supervised local worker processes, or tasks on a Ray cluster.

A stage hands :func:`run_tasks` a per-item function (``"module:function"``, taking one picklable
payload) and its ``(key, payload)`` pairs; ``compute.backend`` in the configuration decides
where the calls run, and the stage gets the same :class:`~lakehouse.media.workers.TaskOutcome`
stream either way (completion order, one outcome per task, failures reported per task, the
batch going on). Reading and writing tables stays with the caller, so the tables an asset
writes are the same on both backends.

- ``local`` (default): :func:`lakehouse.media.workers.run_supervised` — ``ingest.workers``
  processes, each task under a time and memory limit.
- ``ray``: one Ray task per item (``compute.ray_cpus_per_task`` CPUs), at most
  ``compute.max_in_flight`` submitted at once; a task past its time limit is cancelled and
  reported as ``timeout``, a task whose worker died as ``worker_crashed``. Ray has no per-task
  address-space limit: its memory monitor kills tasks under memory pressure instead. The
  payloads name files by path (videos), so on a multi-node cluster the sources must be on a
  file system every node mounts.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import ConfigError
from lakehouse.media.workers import TaskOutcome, granted_limit, resolve_function, run_supervised

if TYPE_CHECKING:
    from lakehouse.core.config import Config


def run_tasks(
    config: Config,
    func_ref: str,
    tasks: Iterable[tuple[Any, Any]],
    *,
    timeout_s: float,
    max_timeout_s: float | None = None,
    timeout_for: Callable[[Any], float | None] | None = None,
    memory_mb: int | None = None,
) -> Iterator[TaskOutcome]:
    """Run ``func(payload)`` for every ``(key, payload)`` on the configured backend.

    Each task may take ``timeout_s``, or more for a bigger item, up to ``max_timeout_s``: a local
    worker asks for it itself (:func:`lakehouse.media.workers.request_time_limit`), and on Ray,
    where a running task cannot ask, ``timeout_for(payload)`` (when given) says each task's limit
    before it is submitted."""
    backend = config.compute.backend
    if backend == "ray":
        yield from run_on_ray(
            config,
            func_ref,
            tasks,
            timeout_s=timeout_s,
            max_timeout_s=max_timeout_s,
            timeout_for=timeout_for,
        )
    elif backend == "local":
        yield from run_supervised(
            func_ref,
            tasks,
            workers=config.ingest.workers,
            timeout_s=timeout_s,
            max_timeout_s=max_timeout_s,
            memory_mb=memory_mb,
        )
    else:
        raise ConfigError(f"compute.backend must be 'local' or 'ray', not {backend!r}.")


def task_limit(
    payload: Any,
    timeout_s: float,
    max_timeout_s: float | None,
    timeout_for: Callable[[Any], float | None] | None,
) -> float:
    """One task's time limit on Ray: ``timeout_for``'s answer, within [timeout_s, max_timeout_s]."""
    wanted = timeout_for(payload) if timeout_for is not None else None
    ceiling = timeout_s if max_timeout_s is None else max(timeout_s, max_timeout_s)
    return granted_limit(wanted, timeout_s, ceiling)


def call(func_ref: str, payload: Any) -> Any:
    """The body of every Ray task: resolve the per-item function and apply it."""
    return resolve_function(func_ref)(payload)


def ensure_ray(config: Config) -> Any:
    """The ``ray`` module, connected: the runtime already started in this process, else the
    cluster at ``compute.ray_address`` (or a new local one when it is empty)."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "compute.backend = 'ray' needs Ray: pip install 'video-lakehouse[ray]'."
        ) from None
    if not ray.is_initialized():
        address = config.compute.ray_address or None
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return ray


def run_on_ray(
    config: Config,
    func_ref: str,
    tasks: Iterable[tuple[Any, Any]],
    *,
    timeout_s: float,
    max_timeout_s: float | None = None,
    timeout_for: Callable[[Any], float | None] | None = None,
) -> Iterator[TaskOutcome]:
    """One Ray task per item, a bounded number in flight, outcomes in completion order. Items
    are drawn from ``tasks`` as slots free up, so a caller may stream them."""
    upcoming = iter(tasks)
    queue = list(itertools.islice(upcoming, 1))
    if not queue:
        return
    ray = ensure_ray(config)
    from ray.exceptions import GetTimeoutError, RayTaskError, TaskCancelledError, WorkerCrashedError

    remote = ray.remote(call).options(
        num_cpus=config.compute.ray_cpus_per_task, max_retries=0, retry_exceptions=False
    )
    limit = config.compute.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    running: dict[Any, tuple[Any, float, float]] = {}  # ref -> key, start, its time limit
    while True:
        while len(running) < limit:
            queue.extend(itertools.islice(upcoming, 1 - len(queue)))
            if not queue:
                break
            key, payload = queue.pop()
            allowed = task_limit(payload, timeout_s, max_timeout_s, timeout_for)
            running[remote.remote(func_ref, payload)] = (key, time.monotonic(), allowed)
        if not running:
            break
        deadline = min(started + allowed for _, started, allowed in running.values())
        ready, _ = ray.wait(
            list(running), num_returns=1, timeout=max(0.0, deadline - time.monotonic())
        )
        for ref in ready:
            key, started, allowed = running.pop(ref)
            elapsed = time.monotonic() - started
            try:
                value = ray.get(ref, timeout=allowed)
            except RayTaskError as exc:
                cause = exc.cause if exc.cause is not None else exc
                message = f"{type(cause).__name__}: {cause}".strip()
                yield TaskOutcome(key, False, None, "exception", message, elapsed)
            except (WorkerCrashedError, TaskCancelledError, GetTimeoutError) as exc:
                message = f"the Ray worker running this task died ({type(exc).__name__})"
                yield TaskOutcome(key, False, None, "worker_crashed", message, elapsed)
            else:
                yield TaskOutcome(key, True, value, seconds=elapsed)
        now = time.monotonic()
        for ref, (key, started, allowed) in list(running.items()):
            if now - started >= allowed:
                ray.cancel(ref, force=True)
                del running[ref]
                message = f"took longer than the {allowed:g} s per-file time limit"
                yield TaskOutcome(key, False, None, "timeout", message, now - started)
