"""Find video files under a folder by their content, not their extension.

The walk follows directory symlinks but never enters a directory twice (so symlink loops end),
never opens anything that is not a regular file (so FIFOs and devices cannot block it), and
reports the same file reached by several names once, with its other names as aliases.
Hidden entries (names starting with ``.``) are skipped. A name that is not UTF-8 is found like
any other; the tables store it losslessly (:mod:`lakehouse.core.paths`).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from lakehouse.core import quarantine as q
from lakehouse.core.config import VIDEO_EXTENSIONS
from lakehouse.core.errors import InputError, InputNotFoundError
from lakehouse.core.paths import storable_name, storable_path

SNIFF_BYTES = 512


@dataclass
class Candidate:
    """A regular file whose first bytes look like a video container. ``path`` and ``relpath``
    are as the file system gives them (a name that is not UTF-8 holds surrogates: it opens, but
    no table can store it); :attr:`uri` and :attr:`name` are what the tables store."""

    path: str
    relpath: str
    size: int
    mtime: float
    container_hint: str
    aliases: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        """The path as stored: itself, or a lossless ``file://`` URI for a non-UTF-8 name."""
        return storable_path(self.path)

    @property
    def name(self) -> str:
        """The relative path as stored (percent-encoded when it is not UTF-8)."""
        return storable_name(self.relpath)


@dataclass
class Discovery:
    candidates: list[Candidate]
    issues: list[q.Issue]
    files_seen: int = 0


def sniff_container(head: bytes) -> str | None:
    """Name the container family from a file's first bytes, or None if it is not a video."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"):
        return "isobmff"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if len(head) > 376 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "mpegts"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "mpeg"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"YUV4MPEG2"):
        return "y4m"
    if head.startswith(b"\x00\x00\x00\x01") and len(head) > 4:
        nal = head[4]
        if nal & 0x1F == 7 or (nal >> 1) & 0x3F == 32:
            return "annexb"
    return None


def has_video_extension(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def discover(root: str | os.PathLike[str]) -> Discovery:
    """Walk ``root`` recursively; return video candidates and quarantine issues."""
    root = os.fspath(root)
    if not os.path.exists(root):
        raise InputNotFoundError(f"Folder {root} does not exist; pass an existing video folder.")
    if not os.path.isdir(root):
        raise InputError(f"{root} is not a folder; pass the folder that holds the videos.")
    root = os.path.abspath(root)
    candidates: dict[tuple[int, int], Candidate] = {}
    issues: list[q.Issue] = []
    visited_dirs: set[tuple[int, int]] = set()
    files_seen = 0
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in visited_dirs:
            continue
        visited_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            issues.append(_issue(folder, q.UNREADABLE, f"cannot list folder: {exc.strerror}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            files_seen += 1
            item = _classify(entry, root, stack, issues)
            if item is None:
                continue
            key, cand = item
            if key in candidates:
                candidates[key].aliases.append(cand.name)
            else:
                candidates[key] = cand
    ordered = sorted(candidates.values(), key=lambda c: c.name)
    return Discovery(ordered, issues, files_seen)


def _issue(path: str, code: str, message: str, **extra: object) -> q.Issue:
    return q.Issue("discover", q.display_path(path), code, message, **extra)  # type: ignore[arg-type]


def _classify(
    entry: os.DirEntry, root: str, stack: list[str], issues: list[q.Issue]
) -> tuple[tuple[int, int], Candidate] | None:
    path = entry.path
    try:
        st = os.stat(path)
    except OSError as exc:
        if entry.is_symlink():
            if exc.errno == errno.ELOOP:
                issues.append(_issue(path, q.SYMLINK_LOOP, "symbolic link loops back on itself"))
            else:
                issues.append(
                    _issue(path, q.DANGLING_SYMLINK, "symbolic link points to a missing file")
                )
        else:
            issues.append(_issue(path, q.UNREADABLE, f"cannot stat: {exc.strerror}"))
        return None
    if stat.S_ISDIR(st.st_mode):
        stack.append(path)
        return None
    if not stat.S_ISREG(st.st_mode):
        if has_video_extension(entry.name):
            issues.append(
                _issue(path, q.NOT_REGULAR_FILE, "not a regular file (FIFO, socket or device)")
            )
        return None
    extra = {"size_bytes": st.st_size, "mtime": st.st_mtime}
    if st.st_size == 0:
        if has_video_extension(entry.name):
            issues.append(_issue(path, q.EMPTY_FILE, "file is empty (0 bytes)", **extra))
        return None
    try:
        head = _read_head(path)
    except OSError as exc:
        issues.append(_issue(path, q.UNREADABLE, f"cannot read: {exc.strerror}", **extra))
        return None
    if head is None:  # replaced by a non-regular file since the stat
        return None
    kind = sniff_container(head)
    if kind is None:
        if has_video_extension(entry.name):
            issues.append(
                _issue(
                    path,
                    q.NOT_A_VIDEO,
                    "content is not a known video container despite its video extension",
                    **extra,
                )
            )
        return None
    cand = Candidate(path, os.path.relpath(path, root), st.st_size, st.st_mtime, kind)
    return (st.st_dev, st.st_ino), cand


def _read_head(path: str) -> bytes | None:
    # O_NONBLOCK so that a FIFO swapped in after the stat cannot block the walk.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, SNIFF_BYTES)
    finally:
        os.close(fd)
