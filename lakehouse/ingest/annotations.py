"""The ``annotations`` stage: import a source's annotation files, one row per annotated clip.

Each row is resolved to a video of the source (by path relative to the annotation file, to the
source folder, or by unique file name). A row whose video is not here is still kept, with its URI
and ``video_found = false`` (``video_status`` says ``missing``, or ``quarantined`` when the file is
here but unusable): annotation-only catalogs are normal at scale. Every field of the
row is kept verbatim in ``fields_json``; known fields also get typed columns.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.core import ids
from lakehouse.core import quarantine as q
from lakehouse.core.schemas import ANNOTATION_TEXT_FIELDS
from lakehouse.core.timecode import TimeParseError, parse_time
from lakehouse.ingest.annotation_files import (
    HUMANNET_KEYS,
    HUMANNET_MAPPING,
    ColumnMapping,
    Record,
    detect_format,
    read_records,
    sniff_pickle,
)
from lakehouse.ingest.stage import StageResult, in_batches, record_issues

if TYPE_CHECKING:
    from lakehouse.ingest.sources import Source
    from lakehouse.storage.store import Store

VIEWPOINT_VALUES = {
    "ego": "ego",
    "egocentric": "ego",
    "first-person": "ego",
    "first_person": "ego",
    "fpv": "ego",
    "1st": "ego",
    "exo": "exo",
    "exocentric": "exo",
    "third-person": "exo",
    "third_person": "exo",
    "tpv": "exo",
    "3rd": "exo",
}


class RowError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class VideoIndex:
    """The source's videos, findable by absolute path, relative path or unique file name."""

    by_path: dict[str, dict[str, Any]]
    by_name: dict[str, list[dict[str, Any]]]
    quarantined: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, rows: list[dict[str, Any]], root: str) -> VideoIndex:
        by_path: dict[str, dict[str, Any]] = {}
        by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            for rel in [row["relpath"], *(row.get("aliases") or [])]:
                path = os.path.normpath(os.path.join(root, rel))
                by_path[path] = row
                by_name[os.path.basename(rel)].append(row)
        return cls(by_path, by_name)

    def find(self, candidates: list[str]) -> dict[str, Any] | None:
        for path in candidates:
            row = self.by_path.get(os.path.normpath(path))
            if row is not None:
                return row
        matches = {r["video_id"]: r for r in self.by_name.get(os.path.basename(candidates[0]), [])}
        return next(iter(matches.values())) if len(matches) == 1 else None

    def status(self, candidates: list[str]) -> str:
        """Why a referenced video has no row: ``quarantined`` (here but unusable) or ``missing``."""
        paths = {os.path.normpath(p) for p in candidates}
        return "quarantined" if paths & self.quarantined else "missing"


# Rows are handed to the table sync in batches of this many: a source's annotation rows are
# never all in memory (``Store.sync_batches``).
ROW_BATCH = 20_000


def import_annotations(lh: Store, source: Source, *, run_id: str) -> StageResult:
    """Import every annotation file of ``source`` into ``annotations``, streaming: the files
    are read record by record and written in batches (memory: the source's videos, one batch,
    and the keys the table sync compares)."""
    videos = lh.read("videos", filter=source.scope).to_pylist()
    index = VideoIndex.build(videos, source.uri)
    bad_files = lh.read(
        "quarantine",
        columns=["input_uri"],
        filter=f"{source.scope} AND stage IN ('discover', 'videos')",
    ).column("input_uri")
    index.quarantined = {os.path.normpath(p) for p in bad_files.to_pylist()}
    issues: list[q.Issue] = []
    counts = {"files": 0, "rows": 0, "video_found": 0}

    def rows() -> Iterator[dict[str, Any]]:
        for path in source.annotation_files:
            fmt = _readable_format(path, source, issues)
            if fmt is None:
                continue
            counts["files"] += 1
            for row in _import_file(path, fmt, source, index, issues, run_id):
                counts["rows"] += 1
                counts["video_found"] += row["video_found"]
                yield row

    write = lh.sync_batches("annotations", in_batches(rows(), ROW_BATCH), scope=source.scope)
    count, reasons = record_issues(lh, source, ("annotations",), issues, run_id)
    return StageResult(
        "annotations",
        source.name,
        "annotations",
        write,
        rows=lh.count("annotations", source.scope),
        quarantined=count,
        reasons=reasons,
        details={
            "files": counts["files"],
            "video_found": counts["video_found"],
            "video_missing": counts["rows"] - counts["video_found"],
        },
    )


def _readable_format(path: str, source: Source, issues: list[q.Issue]) -> str | None:
    """The format of an annotation file, or None (and an issue) when it cannot be imported."""
    if not os.path.isfile(path):
        issues.append(q.Issue("annotations", path, q.UNREADABLE, "annotation file is missing"))
        return None
    if sniff_pickle(path):
        issues.append(
            q.Issue(
                "annotations",
                path,
                q.PICKLE_REFUSED,
                "pickled data is never loaded; convert it to JSONL or CSV",
            )
        )
        return None
    fmt = detect_format(path, source.mapping)
    if fmt is None:
        issues.append(
            q.Issue(
                "annotations",
                path,
                q.UNSUPPORTED_FORMAT,
                "unsupported annotation format; use .jsonl, .json, .csv or .tsv",
            )
        )
    return fmt


def _import_file(
    path: str,
    fmt: str,
    source: Source,
    index: VideoIndex,
    issues: list[q.Issue],
    run_id: str,
) -> Iterator[dict[str, Any]]:
    """The rows of one annotation file, one by one (bad records become issues)."""
    mapping: ColumnMapping | None = None
    seen_ids: set[int] = set()  # the ids as numbers (they are hex digests): half the memory
    for item in read_records(path, fmt):
        if isinstance(item, q.Issue):
            issues.append(item)
            continue
        if mapping is None:
            mapping = _mapping_for(fmt, source.mapping, item)
        try:
            row = _to_row(item, mapping, path, source, index, run_id)
        except RowError as exc:
            issues.append(
                q.Issue("annotations", path, exc.code, str(exc), f"line {item.line_number}")
            )
            continue
        number = int(row["annotation_id"], 16)
        if number in seen_ids:
            issues.append(
                q.Issue(
                    "annotations",
                    path,
                    q.BAD_ROW,
                    f"duplicate clip id {row['external_id']!r} in this file; the first is kept",
                    f"line {item.line_number}",
                )
            )
            continue
        seen_ids.add(number)
        yield row


def _mapping_for(fmt: str, configured: ColumnMapping, first: Record) -> ColumnMapping:
    if fmt == "humannet" or (
        configured.format == "auto" and fmt == "jsonl" and set(first.values) >= HUMANNET_KEYS
    ):
        base = HUMANNET_MAPPING
    else:
        base = configured
    return base.resolved(list(first.values))


def _to_row(
    record: Record,
    mapping: ColumnMapping,
    path: str,
    source: Source,
    index: VideoIndex,
    run_id: str,
) -> dict[str, Any]:
    values = record.values
    ref = values.get(mapping.file) if mapping.file else None
    if not isinstance(ref, str) or not ref.strip():
        raise RowError(
            q.MISSING_VIDEO_REF,
            f"row names no video (expected a column like {mapping.file or 'file'!r})",
        )
    ref = ref.strip()
    candidates = (
        [ref]
        if os.path.isabs(ref)
        else [
            os.path.join(os.path.dirname(path), ref),
            os.path.join(source.uri, ref),
        ]
    )
    video = index.find(candidates)
    status = "ok" if video else index.status(candidates)
    uri = video["uri"] if video else os.path.normpath(candidates[0])
    if status == "quarantined":
        uri = next(
            os.path.normpath(p) for p in candidates if os.path.normpath(p) in index.quarantined
        )
    video_id = video["video_id"] if video else ids.video_id_from_uri(uri)
    fps = _fps(values, mapping, video)
    start, end, span_kind = _span(values, mapping, fps, video)
    raw_id = values.get(mapping.clip_id) if mapping.clip_id else None
    if isinstance(raw_id, list | dict | bool):
        raise RowError(q.BAD_ROW, f"the clip id must be text or a number, not {_text(raw_id)}")
    external_id = _text(raw_id)
    key = external_id or f"line {record.line_number}"
    typed = {
        name: _text(values.get(column))
        for name, column in mapping.fields.items()
        if name in ANNOTATION_TEXT_FIELDS
    }
    return {
        "annotation_id": ids.stable_id(source.name, path, key),
        "clip_id": ids.clip_id(video_id, start, end),
        "video_id": video_id,
        "source": source.name,
        "annotation_source": path,
        "line_number": record.line_number,
        "external_id": external_id,
        "video_ref": ref,
        "uri": uri,
        "video_found": video is not None,
        "video_status": status,
        "start_s": start,
        "end_s": end,
        "span_kind": span_kind,
        "viewpoint": _viewpoint(values.get(mapping.viewpoint) if mapping.viewpoint else None),
        "quality_score": _float(values.get("quality_score")),
        "text_truncated": values.get("text_truncated")
        if isinstance(values.get("text_truncated"), bool)
        else None,
        **{name: typed.get(name) for name in ANNOTATION_TEXT_FIELDS},
        "fields_json": json.dumps(values, ensure_ascii=False, sort_keys=True),
        "run_id": run_id,
    }


def _fps(values: dict[str, Any], mapping: ColumnMapping, video: dict | None) -> float | None:
    if isinstance(mapping.fps, int | float):
        return float(mapping.fps)
    if isinstance(mapping.fps, str):
        value = _float(values.get(mapping.fps))
        if value and value > 0:
            return value
    return video["fps"] if video and video.get("fps") else None


def _span(
    values: dict[str, Any], mapping: ColumnMapping, fps: float | None, video: dict | None
) -> tuple[float, float | None, str]:
    start_raw = values.get(mapping.start) if mapping.start else None
    end_raw = values.get(mapping.end) if mapping.end else None
    if mapping.span == "whole_file" or (start_raw is None and end_raw is None):
        duration = video["duration_s"] if video else _float(values.get("duration_s"))
        return 0.0, duration, "whole_file"
    if start_raw is None or end_raw is None:
        raise RowError(q.BAD_SPAN, "row has a start without an end (or an end without a start)")
    try:
        start = parse_time(start_raw, _unit(mapping, mapping.start), fps)
        end = parse_time(end_raw, _unit(mapping, mapping.end), fps)
    except TimeParseError as exc:
        raise RowError(q.BAD_SPAN, f"cannot read the clip span: {exc}") from None
    if math.isnan(start) or math.isnan(end) or math.isinf(start) or math.isinf(end):
        raise RowError(q.NAN_SPAN, "clip span is NaN or infinite")
    if start < 0 or end < 0:
        raise RowError(q.NEGATIVE_SPAN, f"clip span is negative ({start:g} s to {end:g} s)")
    if end <= start:
        raise RowError(
            q.INVERTED_SPAN, f"clip span ends before it starts ({start:g} s to {end:g} s)"
        )
    if video and video.get("duration_s"):
        slack = 1.0 / (video.get("fps") or 30.0) + 1e-3
        if start >= video["duration_s"] or end > video["duration_s"] + slack:
            raise RowError(
                q.SPAN_OUT_OF_RANGE,
                f"clip span {start:g}-{end:g} s lies outside the video "
                f"({video['duration_s']:g} s long)",
            )
        end = min(end, video["duration_s"])
    return round(start, 6), round(end, 6), "annotated"


def _unit(mapping: ColumnMapping, column: str | None) -> str:
    if mapping.time_unit != "auto":
        return "seconds" if mapping.time_unit == "timestamp" else mapping.time_unit
    return "frames" if column and "frame" in column.lower() else "seconds"


def _viewpoint(value: Any) -> str | None:
    if value is None:
        return None
    return VIEWPOINT_VALUES.get(str(value).strip().lower(), "unknown")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else str(value)


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
