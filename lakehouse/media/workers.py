"""Per-file work in supervised worker processes, each task under a time and memory limit.

Decoding untrusted video can hang or balloon; a thread cannot be stopped, a process can. Each
worker runs one task at a time; a task past its deadline gets its worker SIGKILLed and replaced,
and the task is reported as ``timeout``. A worker that dies (segfault, out of memory) reports
``worker_crashed``. The rest of the batch always continues.

The time limit is per task: ``timeout_s`` unless the task, once it knows how much work it holds
(a video's length, read from its header), asks for more with :func:`request_time_limit`; the
supervisor grants at most ``max_timeout_s``.
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any


@dataclass
class TaskOutcome:
    """The result of one task: ``value`` when ok, else an error code and message."""

    key: Any
    ok: bool
    value: Any = None
    error_code: str = ""
    message: str = ""
    seconds: float = 0.0


# In a worker process, while a task runs: the channel to the supervisor and the task's id.
_running: tuple[Connection, int] | None = None


def request_time_limit(seconds: float) -> None:
    """Ask the supervisor to let the running task take ``seconds`` in all, counted from its
    start, instead of the run's ``timeout_s``: granted between ``timeout_s`` and the run's
    ``max_timeout_s``. Does nothing outside a supervised worker (a direct call, a Ray task)."""
    if _running is not None:
        outbox, task_id = _running
        outbox.send((task_id, "time_limit", float(seconds)))


def granted_limit(wanted: float | None, timeout_s: float, ceiling: float) -> float:
    """The time limit a task that asks for ``wanted`` seconds gets: at least ``timeout_s``, at
    most ``ceiling``; ``timeout_s`` when the request is not a usable number (None, NaN, <= 0)."""
    if wanted is None or not wanted > 0:
        return timeout_s
    return min(ceiling, max(timeout_s, wanted))


def resolve_function(func_ref: str) -> Callable[[Any], Any]:
    module, _, name = func_ref.partition(":")
    return getattr(importlib.import_module(module), name)


def worker_main(func_ref: str, memory_mb: int, threads: int) -> None:
    """Child side: read tasks from fd 0, answer on the original fd 1 (stdout goes to stderr,
    so a library that prints cannot corrupt the channel)."""
    global _running
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    inbox, outbox = Connection(0, writable=False), Connection(reply_fd, readable=False)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if memory_mb:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    func = resolve_function(func_ref)
    while True:
        try:
            message = inbox.recv()
        except EOFError:
            return
        if message is None:
            return
        task_id, payload = message
        _running = (outbox, task_id)
        try:
            outbox.send((task_id, "ok", func(payload)))
        except MemoryError:
            outbox.send((task_id, "memory_limit", "ran out of memory (per-file memory limit)"))
        except Exception as exc:  # reported per task; the batch goes on
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            outbox.send((task_id, "exception", detail))
        finally:
            _running = None


@dataclass
class _Task:
    task_id: int
    key: Any
    started: float
    limit_s: float


class _Worker:
    """A worker is a fresh interpreter (``python -m lakehouse.media.workers``), not a fork or a
    multiprocessing spawn: it never re-imports the caller's ``__main__`` and shares no locks
    or threads with the parent."""

    def __init__(self, func_ref: str, memory_mb: int | None, threads: int):
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _close()
        # the child sees the parent's import path, so any importable function can be a task
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lakehouse.media.workers",
                func_ref,
                str(memory_mb or 0),
                str(threads),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
            env=env,
        )
        self.outbox = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.inbox = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        self.task: _Task | None = None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._close()

    def stop(self) -> None:
        try:
            self.outbox.send(None)
        except OSError:
            pass
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._close()

    def _close(self) -> None:
        for conn in (self.inbox, self.outbox):
            try:
                conn.close()
            except OSError:
                pass
        self.log.close()

    def crash_message(self) -> str:
        try:
            code = self.process.wait(2)
        except subprocess.TimeoutExpired:
            code = None
        self.log.seek(0)
        tail = self.log.read()[-300:].decode("utf-8", "replace").strip().splitlines()
        detail = f" ({tail[-1]})" if tail else ""
        if code is not None and code < 0:
            return (
                f"the worker process was killed by signal {-code} while reading this file{detail}"
            )
        return f"the worker process exited with code {code} while reading this file{detail}"


def run_supervised(
    func_ref: str,
    tasks: Iterable[tuple[Any, Any]],
    *,
    workers: int = 2,
    timeout_s: float = 120.0,
    max_timeout_s: float | None = None,
    memory_mb: int | None = None,
) -> Iterator[TaskOutcome]:
    """Run ``func(payload)`` for every ``(key, payload)`` in worker processes.

    ``func_ref`` is ``"module:function"`` (importable in a fresh interpreter; payloads and
    results must pickle). Outcomes are yielded as tasks finish, in completion order. Each task
    may take ``timeout_s``, or what it asks for with :func:`request_time_limit` up to
    ``max_timeout_s`` (None: no ceiling here, the task's own request is the limit).
    """
    ceiling = math.inf if max_timeout_s is None else max(timeout_s, max_timeout_s)
    # tasks are drawn as workers free up, so a caller may stream them (a stage's plan)
    upcoming = enumerate(tasks)
    queue = deque(itertools.islice(upcoming, max(1, workers)))
    if not queue:
        return
    n = max(1, min(workers, len(queue)))
    threads = max(1, (os.cpu_count() or 1) // n)
    pool = [_Worker(func_ref, memory_mb, threads) for _ in range(n)]
    try:
        while True:
            for w in pool:
                if w.task is None and not queue:
                    queue.extend(itertools.islice(upcoming, 1))
                if w.task is None and queue:
                    task_id, (key, payload) = queue.popleft()
                    w.task = _Task(task_id, key, time.monotonic(), timeout_s)
                    try:
                        w.outbox.send((task_id, payload))
                    except OSError:
                        pass  # the worker died; noticed below as a crash
            busy = [w for w in pool if w.task]
            if not busy:
                break
            next_deadline = min(w.task.started + w.task.limit_s for w in busy)
            ready = wait(
                [w.inbox for w in busy], timeout=max(0.0, next_deadline - time.monotonic())
            )
            for i, w in enumerate(pool):
                if w.task is None:
                    continue
                task = w.task
                elapsed = time.monotonic() - task.started
                if w.inbox in ready:
                    try:
                        task_id, status, value = w.inbox.recv()
                    except (EOFError, OSError):
                        status, value = q_crashed, w.crash_message()
                    else:
                        if status == "time_limit":  # still running, with a new limit
                            if task_id == task.task_id:
                                task.limit_s = granted_limit(value, timeout_s, ceiling)
                            continue
                        w.task = None
                        if status == "ok":
                            yield TaskOutcome(task.key, True, value, seconds=elapsed)
                        else:
                            yield TaskOutcome(task.key, False, None, status, value, elapsed)
                        continue
                elif elapsed >= task.limit_s:
                    status = "timeout"
                    value = f"took longer than the {task.limit_s:g} s per-file time limit"
                else:
                    continue
                w.kill()
                pool[i] = _Worker(func_ref, memory_mb, threads)
                yield TaskOutcome(task.key, False, None, status, value, elapsed)
    finally:
        for w in pool:
            w.stop()


q_crashed = "worker_crashed"


if __name__ == "__main__":
    # run as the module lakehouse.media.workers, not as __main__: that is the module a task imports
    # to call request_time_limit()
    from lakehouse.media.workers import worker_main as main

    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
