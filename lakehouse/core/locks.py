"""Advisory locks that serialize read-then-write steps across processes (e.g. creating a table,
switching the publication record). A local root uses ``fcntl`` locks on files under
``<root>/.locks``; the OS drops them when a holder dies, so a crash never leaves a stale lock.
An object-store root has no shared file system: there the step relies on the table's
primary-key merge (a racing writer of the same key updates the row instead of duplicating it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lakehouse.storage.store import Store


@contextlib.contextmanager
def lakehouse_lock(lh: Store, name: str, *, shared: bool = False) -> Iterator[None]:
    """Hold the lakehouse-wide lock ``name`` (blocking) for the duration of the block; with
    ``shared``, alongside other shared holders (but never alongside an exclusive one). A root the
    process cannot write to (a read-only mount) is read without locks."""
    if not lh.config.is_local:
        yield
        return
    import fcntl

    folder = os.path.join(lh.root, ".locks")
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(os.path.join(folder, f"{name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if not shared:
            raise
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
