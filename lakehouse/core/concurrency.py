"""Work ahead in a background thread: the one prefetch helper of the project.

A stage that alternates I/O or decoding with model work (JPEG decoding before CLIP, video
frames before the detectors) reads the next items in a thread while the current one is used.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of ``items`` in order while a thread produces up to ``depth`` more.

    ``depth`` 0 produces each item in the caller's thread, when asked for (no overlap: what a
    CPU model that already uses every core wants). An exception raised while producing is
    raised here, at the item it stopped; closing the iterator early stops the thread and
    closes ``items`` (a generator's own clean-up, such as stopping worker processes, runs)."""
    if depth <= 0:
        yield from items
        return
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(("item", item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)
