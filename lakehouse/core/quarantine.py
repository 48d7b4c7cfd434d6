"""Quarantine records: every input that could not be used, with stage, reason code and message.

Reason codes are stable strings (documented in ``docs/tables.md``) so curators can filter on them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lakehouse.core.ids import stable_id

# discovery
NON_UTF8_NAME = "non_utf8_name"
SYMLINK_LOOP = "symlink_loop"
DANGLING_SYMLINK = "dangling_symlink"
NOT_REGULAR_FILE = "not_regular_file"
UNREADABLE = "unreadable"
EMPTY_FILE = "empty_file"
NOT_A_VIDEO = "not_a_video"
# probing / decoding
UNREADABLE_CONTAINER = "unreadable_container"
NO_VIDEO_STREAM = "no_video_stream"
NO_FRAMES = "no_frames"
DECODE_ERROR = "decode_error"
TIMEOUT = "timeout"
MEMORY_LIMIT = "memory_limit"
WORKER_CRASHED = "worker_crashed"
# annotations
PICKLE_REFUSED = "pickle_refused"
UNSUPPORTED_FORMAT = "unsupported_format"
BAD_JSON = "bad_json"
BAD_UTF8 = "bad_utf8"
BAD_ROW = "bad_row"
MISSING_VIDEO_REF = "missing_video_ref"
BAD_SPAN = "bad_span"
NEGATIVE_SPAN = "negative_span"
INVERTED_SPAN = "inverted_span"
NAN_SPAN = "nan_span"
SPAN_OUT_OF_RANGE = "span_out_of_range"

STAGES = ("discover", "videos", "annotations", "clips", "keyframes")


@dataclass(frozen=True)
class Issue:
    """One unusable input; ``locator`` pins a row inside a file (``line 12``)."""

    stage: str
    input_uri: str
    reason_code: str
    message: str
    locator: str = ""
    size_bytes: int | None = None
    mtime: float | None = None

    def to_row(self, source: str, run_id: str) -> dict:
        return {
            "quarantine_id": stable_id(source, self.stage, self.input_uri, self.locator),
            "source": source,
            "stage": self.stage,
            "input_uri": self.input_uri,
            "locator": self.locator,
            "reason_code": self.reason_code,
            "message": self.message,
            "size_bytes": self.size_bytes,
            "mtime": self.mtime,
            "quarantined_at": dt.datetime.now(dt.UTC),
            "run_id": run_id,
        }


def display_path(path: str | bytes) -> str:
    """A printable, UTF-8-safe rendering of a file name that may hold undecodable bytes."""
    import os

    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")
