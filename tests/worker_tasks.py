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
