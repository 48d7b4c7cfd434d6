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
