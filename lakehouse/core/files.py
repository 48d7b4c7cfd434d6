"""Files written atomically: a temporary name in the same folder, fsynced, then renamed into
place, so a reader never sees a partial file (results, exports, the Parquet copy, contact
sheets)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from lakehouse.core.errors import InputError

TMP_PREFIX = ".tmp-"  # the name of a file write_atomic has not renamed into place yet


def write_atomic(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename into place, so readers never see a partial file."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        raise InputError(f"Folder {folder} does not exist; create it or choose another --out.")
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a result file is not
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
