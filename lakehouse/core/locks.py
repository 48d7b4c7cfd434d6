"""Advisory locks that serialize read-then-write steps across processes (e.g. creating a table,
switching the publication record). A local root uses ``fcntl`` locks on files under
``<root>/.locks``; the OS drops them when a holder dies, so a crash never leaves a stale lock.
An object-store root has no shared file system: there the step relies on the table's
primary-key merge (a racing writer of the same key updates the row instead of duplicating it).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lakehouse.storage.store import Store


class lakehouse_lock:  # lower case: it reads as a function, ``with lakehouse_lock(lh, name):``
    """Hold the lakehouse-wide lock ``name`` (blocking) for the duration of a ``with`` block;
    with ``shared``, alongside other shared holders (but never alongside an exclusive one). A
    root the process cannot write to (a read-only mount) is read without locks."""

    def __init__(self, lh: Store, name: str, *, shared: bool = False) -> None:
        self.lh, self.name, self.shared = lh, name, shared
        self.fd: int | None = None

    def __enter__(self) -> None:
        if not self.lh.config.is_local:
            return
        import fcntl

        folder = os.path.join(self.lh.root, ".locks")
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(os.path.join(folder, f"{self.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            if not self.shared:
                raise
            return  # a read-only root: nothing can change it under a reader either
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def __exit__(self, *exc: object) -> None:
        if self.fd is None:
            return
        import fcntl

        fd, self.fd = self.fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
