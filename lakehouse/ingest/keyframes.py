"""The ``keyframes`` stage: a few frames per clip, stored as small JPEG thumbnails.

The frames are sampled by each file's GOP layout in worker processes
(:func:`lakehouse.media.frames.extract_video_keyframes`); this module plans which clips need
frames, hands each video's task to the compute backend and writes the rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from lakehouse.core import quarantine as q
from lakehouse.ingest.stage import Progress, StageResult, no_progress, record_issues
from lakehouse.media.compute import run_tasks
from lakehouse.media.frames import frame_task, sample_times
from lakehouse.storage.filters import in_list, sql_literal
from lakehouse.storage.sync import SYNC_DELETE_KEYS
from lakehouse.storage.writes import WriteResult

# Failures of the worker process rather than of the file keep their own reason codes.
_WORKER_CODES = {
    "timeout": q.TIMEOUT,
    "memory_limit": q.MEMORY_LIMIT,
    "worker_crashed": q.WORKER_CRASHED,
}

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.core.config import KeyframeSettings
    from lakehouse.ingest.sources import Source
    from lakehouse.storage.store import Store

FLUSH_ROWS = 2000


def extract_keyframes(
    lh: Store, source: Source, *, run_id: str, progress: Progress = no_progress
) -> StageResult:
    """Extract keyframes for the clips of ``source`` that lack them (under current settings).

    The plan streams: the clips to sample come from one DuckDB query over the tables, sorted by
    video (:meth:`Store.stream_query`, which spills to disk), and a video's task is built
    when a worker is free for it. Memory holds a few videos' tasks and a batch of rows, not the
    source's clips or keyframes."""
    settings = lh.config.keyframes
    fingerprint = settings.fingerprint()
    probed = f"{source.scope} AND probe_status = 'ok'"
    current = f"{source.scope} AND settings = {sql_literal(fingerprint)}"
    plan = lh.stream_query(
        _PLAN,
        {
            "clips": ("clips", ["clip_id", "video_id", "start_s", "end_s"], probed),
            "videos": ("videos", [*_VIDEO_COLUMNS, "keyframe_times_s"], source.scope),
            "done": ("keyframes", ["clip_id"], current),
        },
        batch_rows=FLUSH_ROWS,
    )
    first = next(plan, None)
    total = first.column("videos")[0].as_py() if first is not None and first.num_rows else 0
    issues: list[q.Issue] = []
    pending: list[dict[str, Any]] = []
    inserted = 0
    progress(0, total, f"keyframes for {total} video(s)")
    tasks = _tasks(itertools.chain([first] if first is not None else [], plan), settings)
    outcomes = run_tasks(
        lh.config,
        "lakehouse.media.frames:extract_video_keyframes",
        tasks,
        timeout_s=settings.timeout_s,
        memory_mb=lh.config.ingest.worker_memory_mb,
    )
    for n, outcome in enumerate(outcomes, start=1):
        video_id, relpath, uri, starts = outcome.key
        progress(n, total, relpath)
        if not outcome.ok:
            code = _WORKER_CODES.get(outcome.error_code, q.DECODE_ERROR)
            issues += [q.Issue("keyframes", uri, code, outcome.message, c) for c in starts]
            continue
        for row in outcome.value:
            pending.append(
                {
                    **row,
                    "keyframe_id": f"{row['clip_id']}:{fingerprint}:{row['idx']}",
                    "video_id": video_id,
                    "source": source.name,
                    "clip_time_s": round(row["time_s"] - starts[row["clip_id"]], 6),
                    "settings": fingerprint,
                    "run_id": run_id,
                }
            )
        if len(pending) >= FLUSH_ROWS:
            inserted += lh.upsert("keyframes", pending, update=False).inserted
            pending = []
    write = lh.upsert("keyframes", pending, update=False)
    inserted += write.inserted
    deleted = _delete_stale(lh, source, fingerprint, probed)
    count, reasons = record_issues(lh, source, ("keyframes",), issues, run_id)
    return StageResult(
        "keyframes",
        source.name,
        "keyframes",
        WriteResult("keyframes", inserted=inserted, deleted=deleted, version=write.version),
        rows=lh.count("keyframes", source.scope),
        quarantined=count,
        reasons=reasons,
        details={"videos_decoded": total, "settings": fingerprint},
    )


_VIDEO_COLUMNS = ["video_id", "uri", "relpath", "fps", "start_time_s", "rotation"]
# The clips of the source's videos that have no keyframes under the current settings, with
# their video, sorted by video (one task per video); ``videos`` counts the tasks.
_PLAN = f"""
SELECT c.clip_id, c.start_s, c.end_s, {", ".join(f"v.{n}" for n in _VIDEO_COLUMNS)},
       v.keyframe_times_s, count(DISTINCT c.video_id) OVER () AS videos
FROM clips c JOIN videos v ON v.video_id = c.video_id
WHERE c.end_s IS NOT NULL AND NOT EXISTS (SELECT 1 FROM done d WHERE d.clip_id = c.clip_id)
ORDER BY v.video_id, c.clip_id
"""


def _delete_stale(lh: Store, source: Source, fingerprint: str, probed: str) -> int:
    """Delete the source's keyframes made under other settings (one predicate) and those of
    clips that are gone or no longer probed (by clip id, streamed in bounded batches)."""
    if not lh.exists("keyframes"):
        return 0
    other = f"{source.scope} AND settings != {sql_literal(fingerprint)}"
    deleted = lh.delete("keyframes", other) if lh.count("keyframes", other) else 0
    gone = lh.stream_query(
        "SELECT DISTINCT k.clip_id FROM kept k "
        "WHERE NOT EXISTS (SELECT 1 FROM clips c WHERE c.clip_id = k.clip_id)",
        {"kept": ("keyframes", ["clip_id"], source.scope), "clips": ("clips", ["clip_id"], probed)},
        batch_rows=SYNC_DELETE_KEYS,
    )
    for batch in gone:
        ids = batch.column("clip_id").to_pylist()
        deleted += lh.delete("keyframes", f"{source.scope} AND {in_list('clip_id', ids)}")
    return deleted


def _tasks(
    plan: Iterable[pa.RecordBatch], settings: KeyframeSettings
) -> Iterator[tuple[tuple[str, str, str, dict[str, float]], dict[str, Any]]]:
    """One task per video of the plan (its rows arrive together, sorted by video)."""
    video: dict[str, Any] | None = None
    clips: list[dict[str, Any]] = []
    for batch in plan:
        for row in batch.to_pylist():
            if video is not None and row["video_id"] != video["video_id"]:
                yield _task(video, clips, settings)
                clips = []
            video = row
            clips.append(row)
    if video is not None:
        yield _task(video, clips, settings)


def _task(
    video: dict[str, Any], clips: list[dict[str, Any]], settings: KeyframeSettings
) -> tuple[tuple[str, str, str, dict[str, float]], dict[str, Any]]:
    fps = video["fps"] or 30.0
    targets = []
    for clip in clips:
        # keep samples inside the clip's last frame
        end = max(clip["start_s"], clip["end_s"] - 1.0 / fps)
        times = sample_times(
            clip["start_s"], end + 1.0 / fps, settings.interval_s, settings.max_per_clip
        )
        targets.extend((clip["clip_id"], i, min(t, end)) for i, t in enumerate(times))
    payload = frame_task(
        video,
        targets,
        seek_overhead_frames=settings.seek_overhead_frames,
        short_side=settings.short_side,
        jpeg_quality=settings.jpeg_quality,
    )
    starts = {c["clip_id"]: c["start_s"] for c in clips}
    return (video["video_id"], video["relpath"], video["uri"], starts), payload
