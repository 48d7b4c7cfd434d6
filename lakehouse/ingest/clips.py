"""The ``clips`` stage: virtual spans of videos (nothing is re-encoded).

Clips come from annotation spans when a video has annotations; otherwise from the scene cuts
found while probing, with short scenes merged and long ones split into fixed windows (between
``min_clip_s`` and ``max_clip_s``). A clip's id is ``ids.clip_id(video_id, start_s, end_s)``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from lakehouse.core import ids
from lakehouse.core.schemas import CLIP_TEXT_FIELDS, CLIP_VIDEO_FIELDS
from lakehouse.ingest.stage import StageResult, in_batches

if TYPE_CHECKING:
    from lakehouse.core.config import IngestSettings
    from lakehouse.ingest.sources import Source
    from lakehouse.storage.store import Store


def segment(
    duration: float,
    cuts: list[float],
    *,
    min_s: float,
    max_s: float,
    window_s: float,
) -> list[tuple[float, float, str]]:
    """Split ``[0, duration)`` at scene cuts, merging short scenes and windowing long ones.

    Returns ``(start, end, how)`` with ``how`` in ``scene_cut``, ``fixed_window``,
    ``whole_video``.
    """
    if duration <= 0:
        return []
    bounds = [0.0, *sorted(c for c in cuts if 0.0 < c < duration), duration]
    scenes: list[list[float]] = []
    for start, end in pairwise(bounds):
        if scenes and (end - start < min_s or scenes[-1][1] - scenes[-1][0] < min_s):
            scenes[-1][1] = end
        else:
            scenes.append([start, end])
    if len(scenes) > 1 and scenes[-1][1] - scenes[-1][0] < min_s:
        scenes[-2][1] = scenes.pop()[1]
    has_cuts = len(scenes) > 1
    out: list[tuple[float, float, str]] = []
    for start, end in scenes:
        length = end - start
        if length <= max_s:
            how = "scene_cut" if has_cuts else "whole_video"
            out.append((start, end, how))
            continue
        parts = max(1, math.ceil(length / min(window_s, max_s)))
        step = length / parts
        for i in range(parts):
            out.append(
                (start + i * step, start + (i + 1) * step if i < parts - 1 else end, "fixed_window")
            )
    return out


VIDEO_COLUMNS = list(
    dict.fromkeys(
        [
            "video_id",
            "uri",
            "fps",
            "duration_s",
            "num_frames",
            "scene_cuts_s",
            *CLIP_VIDEO_FIELDS.values(),
        ]
    )
)
ANNOTATION_COLUMNS = [
    "clip_id",
    "video_id",
    "uri",
    "annotation_source",
    "line_number",
    "start_s",
    "end_s",
    "viewpoint",
    "video_status",
    "external_id",
    "source_video_id",
    "taxonomy_l1",
    "taxonomy_l2",
    "taxonomy_l3",
    "quality_score",
    *CLIP_TEXT_FIELDS,
    "text_truncated",
]


# Clip rows go to the table sync in batches of this many (never a whole source in memory).
ROW_BATCH = 20_000


def build_clips(lh: Store, source: Source, *, run_id: str) -> StageResult:
    """Derive the clips of ``source`` from its annotations and videos, streaming: the
    annotations arrive sorted by clip (:meth:`Store.read_sorted`, which spills to disk),
    so one clip's rows are together, and clips are written in batches. Memory holds the
    source's videos, one batch and the keys the table sync compares, not the source's rows."""
    settings = lh.config.ingest
    # only the columns a clip is made of (not fields_json, keyframe times…)
    videos = {
        r["video_id"]: r
        for r in lh.read("videos", columns=VIDEO_COLUMNS, filter=source.scope).to_pylist()
    }
    annotated_videos: set[str] = set()
    kinds: dict[str, int] = defaultdict(int)
    not_probed = 0

    def clips() -> Iterator[dict[str, Any]]:
        for clip_id, anns in _clip_annotations(lh, source):
            video = videos.get(anns[0]["video_id"])
            if video is not None:  # only the source's own videos (not every id a catalog names)
                annotated_videos.add(video["video_id"])
            yield _annotated_clip(clip_id, anns, video, source)
        for video in videos.values():
            if video["video_id"] not in annotated_videos:
                yield from {
                    r["clip_id"]: r for r in _segmented_clips(video, source, settings)
                }.values()

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal not_probed
        for row in clips():
            row["run_id"] = run_id
            kinds[row["segmentation"]] += 1
            not_probed += row["probe_status"] != "ok"
            yield row

    write = lh.sync_batches("clips", in_batches(counted(), ROW_BATCH), scope=source.scope)
    return StageResult(
        "clips",
        source.name,
        "clips",
        write,
        rows=lh.count("clips", source.scope),
        details={"by_segmentation": dict(sorted(kinds.items())), "not_probed": not_probed},
    )


def _clip_annotations(lh: Store, source: Source) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Each clip id of ``source``'s annotations with its rows, in file and line order."""
    clip_id = ""
    group: list[dict[str, Any]] = []
    for batch in lh.read_sorted(
        "annotations",
        columns=ANNOTATION_COLUMNS,
        order_by=["clip_id", "annotation_source", "line_number"],
        filter=source.scope,
        batch_rows=ROW_BATCH,
    ):
        for ann in batch.to_pylist():
            if ann["clip_id"] != clip_id:
                if group:
                    yield clip_id, group
                clip_id, group = ann["clip_id"], []
            group.append(ann)
    if group:
        yield clip_id, group


def _first(anns: list[dict[str, Any]], key: str) -> Any:
    return next((a[key] for a in anns if a.get(key) is not None), None)


def _annotated_clip(
    clip_id: str, anns: list[dict[str, Any]], video: dict[str, Any] | None, source: Source
) -> dict[str, Any]:
    start, end = anns[0]["start_s"], anns[0]["end_s"]
    fps = video["fps"] if video else None
    viewpoint = _first(anns, "viewpoint") or source.viewpoint
    return {
        "clip_id": clip_id,
        "video_id": anns[0]["video_id"],
        "source": source.name,
        "uri": anns[0]["uri"],
        "probe_status": "ok" if video else _unprobed_status(anns),
        "start_s": start,
        "end_s": end,
        "duration_s": None if end is None else round(end - start, 6),
        "start_frame": round(start * fps) if fps else None,
        "end_frame": round(end * fps) if fps and end is not None else None,
        "fps": fps,
        "viewpoint": viewpoint,
        "segmentation": "annotation",
        "external_id": _first(anns, "external_id"),
        "source_video_id": _first(anns, "source_video_id"),
        "taxonomy_l1": _first(anns, "taxonomy_l1"),
        "taxonomy_l2": _first(anns, "taxonomy_l2"),
        "taxonomy_l3": _first(anns, "taxonomy_l3"),
        "quality_score": _first(anns, "quality_score"),
        "annotation_count": len(anns),
        **{name: _first(anns, name) for name in CLIP_TEXT_FIELDS},
        "text_truncated": _first(anns, "text_truncated"),
        **_video_fields(video),
    }


def _video_fields(video: dict[str, Any] | None) -> dict[str, Any]:
    """The video metadata a clip row carries (all null for a video that is not probed)."""
    return {col: (video or {}).get(src) for col, src in CLIP_VIDEO_FIELDS.items()}


def _unprobed_status(anns: list[dict[str, Any]]) -> str:
    return "quarantined" if _first(anns, "video_status") == "quarantined" else "not_probed"


def _segmented_clips(
    video: dict[str, Any], source: Source, settings: IngestSettings
) -> list[dict[str, Any]]:
    fps = video["fps"] or 30.0
    spans = segment(
        video["duration_s"] or 0.0,
        list(video.get("scene_cuts_s") or []),
        min_s=settings.min_clip_s,
        max_s=settings.max_clip_s,
        window_s=settings.fixed_window_s,
    )
    out = []
    for start, end, how in spans:
        start_frame, end_frame = round(start * fps), round(end * fps)
        if end >= video["duration_s"]:
            end_frame = video["num_frames"] or end_frame
        start_s = round(start_frame / fps, 6)
        end_s = round(min(end_frame / fps, video["duration_s"]), 6)
        out.append(
            {
                "clip_id": ids.clip_id(video["video_id"], start_s, end_s),
                "video_id": video["video_id"],
                "source": source.name,
                "uri": video["uri"],
                "probe_status": "ok",
                "start_s": start_s,
                "end_s": end_s,
                "duration_s": round(end_s - start_s, 6),
                "start_frame": start_frame,
                "end_frame": end_frame,
                "fps": video["fps"],
                "viewpoint": source.viewpoint,
                "segmentation": how,
                "external_id": None,
                "source_video_id": None,
                "taxonomy_l1": None,
                "taxonomy_l2": None,
                "taxonomy_l3": None,
                "quality_score": None,
                "annotation_count": 0,
                **_video_fields(video),
            }
        )
    return out
