"""Read annotation files (HumanNet JSONL, generic JSONL/JSON, CSV/TSV) row by row.

A bad row (unparseable JSON, bad UTF-8, wrong column count) becomes a quarantine issue and the
file's other rows are still read. Pickled data (``.pkl``, ``.pt``, …, or pickle bytes under any
name) is refused without being loaded: nothing here ever unpickles.

The column mapping (which column holds the video, the span, the captions) is documented in
``docs/annotations.md``; :class:`ColumnMapping` auto-detects the usual names.
"""

from __future__ import annotations

import csv
import json
import os
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import IO, Any

from lakehouse import quarantine as q
from lakehouse.errors import ConfigError
from lakehouse.schemas import ANNOTATION_TEXT_FIELDS

PICKLE_EXTENSIONS = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".npy", ".npz", ".ckpt"}
FORMATS = ("auto", "humannet", "jsonl", "json", "csv", "tsv")

FILE_COLUMNS = ("file", "video", "video_path", "path", "filename", "video_file", "uri", "video_uri")
CLIP_ID_COLUMNS = ("clip_id", "id", "clip", "segment_id")
START_COLUMNS = (
    "start_s",
    "start_sec",
    "start_seconds",
    "start",
    "start_time",
    "start_ts",
    "start_timestamp",
    "start_timecode",
    "start_frame",
    "begin",
)
END_COLUMNS = (
    "end_s",
    "end_sec",
    "end_seconds",
    "end",
    "end_time",
    "end_ts",
    "end_timestamp",
    "end_timecode",
    "end_frame",
    "stop",
)
FPS_COLUMNS = ("fps", "frame_rate", "framerate")
VIEWPOINT_COLUMNS = ("viewpoint", "view", "perspective", "camera_view")
FIELD_ALIASES = {
    "caption": "short_caption",
    "description": "long_caption",
    "motion": "semantic_motion",
    "action": "semantic_motion",
    "level1": "taxonomy_l1",
    "level2": "taxonomy_l2",
    "level3": "taxonomy_l3",
}
HUMANNET_KEYS = {"clip_id", "file", "viewpoint", "num_frames", "source_video_id"}


@dataclass
class ColumnMapping:
    """How the columns of an annotation file map onto clips and annotation fields."""

    format: str = "auto"
    file: str | None = None
    clip_id: str | None = None
    start: str | None = None
    end: str | None = None
    time_unit: str = "auto"
    fps: str | float | None = None
    viewpoint: str | None = None
    span: str = "columns"
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ColumnMapping:
        """Read a mapping from a TOML file (a ``[mapping]`` table or top-level keys)."""
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"Mapping file {path} does not exist; check the path.") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Mapping file {path} is not valid TOML ({exc}).") from None
        return cls.from_dict(data.get("mapping", data))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnMapping:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"Unknown mapping keys {sorted(unknown)}; valid keys are {sorted(known)}."
            )
        mapping = cls(**data)
        if mapping.format not in FORMATS:
            raise ConfigError(f"Mapping format must be one of {FORMATS}, not {mapping.format!r}.")
        if mapping.time_unit not in ("auto", "seconds", "frames", "timestamp"):
            raise ConfigError("Mapping time_unit must be auto, seconds, frames or timestamp.")
        if mapping.span not in ("columns", "whole_file"):
            raise ConfigError("Mapping span must be 'columns' or 'whole_file'.")
        return mapping

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def resolved(self, columns: list[str]) -> ColumnMapping:
        """Fill unset column names from the file's columns (case-insensitive)."""
        lower = {c.lower(): c for c in columns}

        def pick(current: str | None, names: tuple[str, ...]) -> str | None:
            if current:
                return current
            return next((lower[n] for n in names if n in lower), None)

        out = ColumnMapping(**self.to_dict())
        out.fields = dict(self.fields)
        out.file = pick(self.file, FILE_COLUMNS)
        out.clip_id = pick(self.clip_id, CLIP_ID_COLUMNS)
        out.start = pick(self.start, START_COLUMNS)
        out.end = pick(self.end, END_COLUMNS)
        if self.fps is None:
            out.fps = pick(None, FPS_COLUMNS)
        out.viewpoint = pick(self.viewpoint, VIEWPOINT_COLUMNS)
        for col in columns:
            target = col.lower() if col.lower() in ANNOTATION_TEXT_FIELDS else None
            target = target or FIELD_ALIASES.get(col.lower())
            if target and target not in out.fields:
                out.fields[target] = col
        return out


HUMANNET_MAPPING = ColumnMapping(
    format="humannet", file="file", clip_id="clip_id", viewpoint="viewpoint", span="whole_file"
)


@dataclass
class Record:
    """One parsed row of an annotation file."""

    line_number: int
    values: dict[str, Any]


def sniff_pickle(path: str) -> bool:
    """True if the file is pickled data (by extension or content); it is never loaded."""
    if os.path.splitext(path)[1].lower() in PICKLE_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                return any(n.endswith(".pkl") or n.endswith("data.pkl") for n in archive.namelist())
        except zipfile.BadZipFile:
            return False
    return False


def detect_format(path: str, mapping: ColumnMapping) -> str | None:
    if mapping.format != "auto":
        return mapping.format
    ext = os.path.splitext(path)[1].lower()
    return {
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "json",
        ".csv": "csv",
        ".tsv": "tsv",
    }.get(ext)


def read_records(path: str, fmt: str) -> Iterator[Record | q.Issue]:
    """Yield the file's rows as :class:`Record` or, for a bad row, a quarantine issue. JSONL
    and CSV files are read line by line (any size); a JSON document is parsed whole."""
    if fmt in ("jsonl", "humannet"):
        with open(path, "rb") as handle:
            yield from _read_jsonl(path, handle)
    elif fmt == "json":
        with open(path, "rb") as handle:
            data = handle.read()
        yield from _read_json(path, data)
    else:
        # undecodable bytes become surrogates, which the reader turns into row issues
        with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
            yield from _read_csv(path, text, "\t" if fmt == "tsv" else ",")


def _issue(path: str, code: str, message: str, line: int | None = None) -> q.Issue:
    return q.Issue("annotations", path, code, message, f"line {line}" if line else "")


def _read_jsonl(path: str, lines: Iterable[bytes]) -> Iterator[Record | q.Issue]:
    for number, raw in enumerate(lines, start=1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield _issue(path, q.BAD_UTF8, f"line is not valid UTF-8 ({exc.reason})", number)
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield _issue(path, q.BAD_JSON, f"line is not valid JSON ({exc.msg})", number)
            continue
        except RecursionError:  # "[[[[…" thousands deep: refused, the rest of the file is read
            yield _issue(path, q.BAD_JSON, "line is JSON nested too deeply to read", number)
            continue
        if not isinstance(value, dict):
            yield _issue(path, q.BAD_ROW, "line is JSON but not an object", number)
            continue
        if _holds_surrogates(value):  # "\ud800" is valid JSON but no UTF-8 text can hold it
            yield _issue(path, q.BAD_UTF8, "line holds a lone surrogate escape (\\ud800…)", number)
            continue
        yield Record(number, value)


def _read_json(path: str, data: bytes) -> Iterator[Record | q.Issue]:
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        yield _issue(path, q.BAD_UTF8, f"file is not valid UTF-8 ({exc.reason})")
        return
    except json.JSONDecodeError as exc:
        yield _issue(path, q.BAD_JSON, f"file is not valid JSON ({exc.msg} at line {exc.lineno})")
        return
    except RecursionError:
        yield _issue(path, q.BAD_JSON, "file is JSON nested too deeply to read")
        return
    if isinstance(value, dict):
        value = next((v for v in value.values() if isinstance(v, list)), [value])
    for index, item in enumerate(value, start=1):
        if isinstance(item, dict) and _holds_surrogates(item):
            yield _issue(path, q.BAD_UTF8, f"item {index} holds a lone surrogate escape")
        elif isinstance(item, dict):
            yield Record(index, item)
        else:
            yield _issue(path, q.BAD_ROW, f"item {index} is not an object")


def _read_csv(path: str, text: IO[str], delimiter: str) -> Iterator[Record | q.Issue]:
    reader = csv.DictReader(text, delimiter=delimiter, restkey="\0extra")
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        yield _issue(path, q.BAD_ROW, f"cannot read the CSV header ({exc})")
        return
    if any(_has_surrogates(h) for h in header):
        yield _issue(path, q.BAD_UTF8, "the CSV header is not valid UTF-8", 1)
        return
    while True:
        start_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _issue(path, q.BAD_ROW, f"malformed CSV row ({exc})", start_line)
            continue
        if any(isinstance(v, str) and _has_surrogates(v) for v in row.values()):
            yield _issue(path, q.BAD_UTF8, "row is not valid UTF-8", start_line)
            continue
        if "\0extra" in row or any(v is None for v in row.values()):
            yield _issue(
                path,
                q.BAD_ROW,
                f"row has a different number of columns than the header ({len(header)})",
                start_line,
            )
            continue
        yield Record(start_line, {k: (v if v != "" else None) for k, v in row.items()})


def _holds_surrogates(value: Any) -> bool:
    """True if any string in a parsed JSON value (keys included) cannot be encoded as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _has_surrogates(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
