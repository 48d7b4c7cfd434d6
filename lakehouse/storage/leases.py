"""Reader leases: the table versions running readers hold, so cleanup never deletes them.

A SQL session (and a search) registers a lease naming the versions it opened: a small JSON file
under ``<root>/.readers`` on which it holds a shared ``flock`` until it closes. ``lh.cleanup``
keeps every version a live lease names; a lease whose holder died (the OS dropped its lock) is
removed. Registering and cleaning up serialize on the ``cleanup`` lock, so a reader never opens
a version that a running cleanup is deleting. An object-store root has no shared file system to
hold leases on: there cleanup keeps every tagged version and everything younger than its
``older_than`` (7 days by default), which outlives any reader.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from lakehouse.core.locks import lakehouse_lock

if TYPE_CHECKING:
    from lakehouse.storage.store import Store

FOLDER = ".readers"
CLEANUP_LOCK = "cleanup"


class ReaderLease:
    """One reader's claim on the versions it opened (a no-op where leases cannot be kept)."""

    def __init__(self, lh: Store):
        self.lh = lh
        self.path: str | None = None
        self.fd: int | None = None

    @contextlib.contextmanager
    def registering(self) -> Iterator[ReaderLease]:
        """Open the versions inside this block and :meth:`hold` them before it ends."""
        with lakehouse_lock(self.lh, CLEANUP_LOCK, shared=True):
            yield self

    def hold(self, versions: Mapping[str, int]) -> None:
        if not self.lh.config.is_local or not versions:
            return
        import fcntl

        folder = os.path.join(self.lh.root, FOLDER)
        name = f"{os.getpid()}-{uuid.uuid4().hex}.json"
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(os.path.join(folder, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError:  # a read-only root: nothing can clean it up either
            return
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.write(fd, json.dumps({k: int(v) for k, v in versions.items()}).encode())
        self.fd, self.path = fd, os.path.join(folder, name)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = self.path = None


@contextlib.contextmanager
def reading(lh: Store, versions: Mapping[str, int]) -> Iterator[None]:
    """Hold a lease on ``versions`` for the duration of the block."""
    lease = ReaderLease(lh)
    with lease.registering():
        lease.hold(versions)
    try:
        yield
    finally:
        lease.release()


def held_versions(lh: Store) -> dict[str, set[int]]:
    """Versions named by live leases, per table; removes the leases of dead readers.
    Call it holding the ``cleanup`` lock exclusively."""
    import fcntl

    held: dict[str, set[int]] = {}
    folder = os.path.join(lh.root, FOLDER)
    if not lh.config.is_local or not os.path.isdir(folder):
        return held
    for entry in os.listdir(folder):
        path = os.path.join(folder, entry)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live reader
                data = os.read(fd, 1 << 20)
                try:
                    versions = json.loads(data or b"{}")
                except ValueError:
                    versions = {}
                for table, version in versions.items():
                    held.setdefault(table, set()).add(int(version))
            else:  # its holder is gone
                with contextlib.suppress(OSError):
                    os.unlink(path)
        finally:
            os.close(fd)
    return held
