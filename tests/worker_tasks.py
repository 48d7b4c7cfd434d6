"""Task functions for worker-pool tests (imported by worker processes by name)."""

import os
import time


def echo(payload):
    return payload


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def fail(message):
    raise ValueError(message)


def crash(_):
    os._exit(7)


def allocate(megabytes):
    return len(bytearray(megabytes * 1024 * 1024))


def whereabouts(_):
    """Which process ran the task, and its Ray task id when it ran on Ray."""
    try:
        import ray

        task = ray.get_runtime_context().get_task_id() if ray.is_initialized() else None
    except ImportError:
        task = None
    return os.getpid(), task


def probe_or_stall(payload):
    """The real probe, except for a file named ``stall*``: the probe asks for the time its
    header earns (as the real one does) and then blocks for good, so that file's probe runs
    past its time limit on any machine, however fast."""
    from lakehouse.media.probe import header_time_limit, probe_file
    from lakehouse.media.workers import request_time_limit

    if not os.path.basename(payload["path"]).startswith("stall"):
        return probe_file(payload)
    wanted = header_time_limit(payload)
    if wanted is not None:
        request_time_limit(wanted)
    while True:
        time.sleep(60)


def stalled_query(payload):
    """A query that neither honours DuckDB's interrupt nor returns (as ``repeat('x', 1e9)``
    does for seconds): only killing its process stops it, on any machine."""
    while True:
        time.sleep(60)
