"""Read annotation files (HumanNet JSONL, generic JSONL/JSON, CSV/TSV) row by row.

A bad row (unparseable JSON, bad UTF-8, wrong column count) becomes a quarantine issue and the
file's other rows are still read. Pickled data (``.pkl``, ``.pt``, …, or pickle bytes under any
name) is refused without being loaded: nothing here ever unpickles.

The column mapping (which column holds the video, the span, the captions) is documented in
``docs/annotations.md``; :class:`ColumnMapping` auto-detects the usual names.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import IO, Any

from lakehouse.core import quarantine as q
from lakehouse.core.errors import ConfigError
from lakehouse.core.schemas import ANNOTATION_TEXT_FIELDS

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
    and CSV files are read line by line, a JSON document one array item at a time (any size)."""
    if fmt in ("jsonl", "humannet"):
        with open(path, "rb") as handle:
            yield from _read_jsonl(path, handle)
    elif fmt == "json":
        with open(path, "rb") as handle:
            yield from _read_json(path, handle)
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


def _read_json(path: str, handle: IO[bytes]) -> Iterator[Record | q.Issue]:
    """Stream a JSON document: a top-level array of objects, an object whose first list-valued
    member holds them (``{"version": 1, "clips": [...]}``), or one object, which is one record.
    Items before a syntax error are still yielded; the error is then one file-level issue."""
    text = _JsonText(handle)
    try:
        first = text.skip_space()
        if first == "[":
            items = text.array_items()
        elif first == "{":
            items = _object_items(text)
        else:
            text.value()  # raises for an empty file or bad JSON; a bare scalar holds no records
            if text.skip_space():
                raise text.error("Extra data")
            yield _issue(path, q.BAD_ROW, "file is JSON but not an array or object")
            return
        for index, item in enumerate(items, start=1):
            yield _json_item(path, index, item)
        if text.skip_space():
            raise text.error("Extra data")
    except UnicodeDecodeError as exc:
        yield _issue(path, q.BAD_UTF8, f"file is not valid UTF-8 ({exc.reason})")
    except json.JSONDecodeError as exc:
        line = text.line_of(exc.pos)
        yield _issue(path, q.BAD_JSON, f"file is not valid JSON ({exc.msg} at line {line})")
    except RecursionError:
        yield _issue(path, q.BAD_JSON, "file is JSON nested too deeply to read")


def _json_item(path: str, index: int, item: Any) -> Record | q.Issue:
    if not isinstance(item, dict):
        return _issue(path, q.BAD_ROW, f"item {index} is not an object")
    if _holds_surrogates(item):
        return _issue(path, q.BAD_UTF8, f"item {index} holds a lone surrogate escape")
    return Record(index, item)


def _object_items(text: _JsonText) -> Iterator[Any]:
    """The items of the object's first list-valued member, or the whole object if it has none.
    Members before that list are kept only until it starts; later members are parsed and
    dropped (so a syntax error there is still reported)."""
    text.pos += 1  # "{"
    members: dict[str, Any] = {}
    found = False
    if text.skip_space() != "}":
        while True:
            key = text.key()
            if text.skip_space() == "[":
                if found:
                    for _ in text.array_items():
                        pass
                else:
                    found = True
                    members.clear()
                    yield from text.array_items()
            else:
                value = text.value()
                if not found:
                    members[key] = value
            char = text.skip_space()
            if char == "}":
                break
            if char != ",":
                raise text.error("Expecting ',' delimiter")
            text.pos += 1
            text.skip_space()
    text.pos += 1  # "}"
    if not found:
        yield members


# Bytes read at a time; tests make it tiny so that items straddle the chunk boundaries.
JSON_CHUNK_BYTES = 1 << 20
# How far before the end of the text a failed parse may be caused by the cut rather than by the
# JSON: raw_decode reports a cut literal ("-Infinit") at its start, 8 characters back.
_CUT_SLACK = 16
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


class _JsonText:
    """A window on a JSON file's text: the unconsumed rest of the chunks read so far.

    Text before ``pos`` is dropped when the next chunk is read, so memory holds about one chunk
    plus the item being parsed. Bad UTF-8 is raised (as :class:`UnicodeDecodeError`) only once
    the text before it has been parsed."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.buf = ""
        self.pos = 0
        self.lines_dropped = 0  # newlines in the text already dropped, for error line numbers
        self.ended = False
        self.bad_utf8: UnicodeDecodeError | None = None

    def more(self) -> bool:
        """Append the next chunk; False once the file has ended. An item longer than a chunk
        makes the next read as long as what is held, so re-parsing it stays linear."""
        if self.bad_utf8 is not None:
            raise self.bad_utf8
        if self.ended:
            return False
        data = self.handle.read(max(JSON_CHUNK_BYTES, len(self.buf) - self.pos))
        try:
            new = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            new = exc.object[: exc.start].decode("utf-8")  # the text before the bad bytes
            self.bad_utf8 = exc
        if not data:
            self.ended = True
            if self.bad_utf8 is not None:
                raise self.bad_utf8
            return False
        self.lines_dropped += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos :] + new
        self.pos = 0
        return True

    def skip_space(self) -> str:
        """Move past whitespace; the next character, or "" at the end of the file."""
        while True:
            match = _SPACE.match(self.buf, self.pos)
            assert match is not None  # the pattern matches the empty string
            self.pos = match.end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def value(self) -> Any:
        """Parse the JSON value at ``pos``, reading more while it may be cut by the chunk's end."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                cut = exc.pos + _CUT_SLACK >= len(self.buf) or exc.msg.startswith("Unterminated")
                if cut and self.more():
                    continue
                raise
            # "12" cut after "1" parses; a number near the end may go on in the next chunk
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and end + _CUT_SLACK >= len(self.buf) and self.more():
                continue
            self.pos = end
            return value

    def key(self) -> str:
        """Parse an object member's name and the colon after it."""
        if self.skip_space() != '"':
            raise self.error("Expecting property name enclosed in double quotes")
        name: str = self.value()
        if self.skip_space() != ":":
            raise self.error("Expecting ':' delimiter")
        self.pos += 1
        self.skip_space()
        return name

    def array_items(self) -> Iterator[Any]:
        """The items of the array starting at ``pos``, one at a time."""
        self.pos += 1  # "["
        if self.skip_space() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            char = self.skip_space()
            if char == "]":
                self.pos += 1
                return
            if char != ",":
                raise self.error("Expecting ',' delimiter")
            self.pos += 1
            self.skip_space()

    def error(self, message: str) -> json.JSONDecodeError:
        return json.JSONDecodeError(message, self.buf, self.pos)

    def line_of(self, pos: int) -> int:
        """The 1-based line in the file of position ``pos`` in the held text."""
        return self.lines_dropped + self.buf.count("\n", 0, pos) + 1


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
