"""The ``keyframes`` stage: a few frames per clip, stored as small JPEG thumbnails.

Decoding dominates the cost of a large corpus, so frames are sampled by the file's GOP layout
(keyframe times recorded while probing). Reading sample times in order, the decoder seeks to the
keyframe before the next sample only when that keyframe lies ahead of where decoding already is
(by more than a small seek overhead); otherwise it keeps decoding and drops frames. On long-GOP
sources that means decode-and-drop, on short-GOP sources one seek per sample: each is the cheap
choice where it applies (``bench/bench_keyframes.py`` measures both against a full decode).
"""

from __future__ import annotations

import bisect
import io
import itertools
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from lakehouse import quarantine as q
from lakehouse.compute import run_tasks
from lakehouse.stage import Progress, StageResult, no_progress, record_issues
from lakehouse.store import SYNC_DELETE_KEYS, WriteResult, in_list, sql_literal

# Failures of the worker process rather than of the file keep their own reason codes.
_WORKER_CODES = {
    "timeout": q.TIMEOUT,
    "memory_limit": q.MEMORY_LIMIT,
    "worker_crashed": q.WORKER_CRASHED,
}

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.config import KeyframeSettings
    from lakehouse.sources import Source
    from lakehouse.store import Lakehouse

FLUSH_ROWS = 2000


def sample_times(start_s: float, end_s: float, interval_s: float, max_per_clip: int) -> list[float]:
    """Sample times for a clip: one per ``interval_s`` (at least 1, at most ``max_per_clip``),
    each at the middle of an equal share of the clip."""
    duration = max(end_s - start_s, 0.0)
    n = min(max(1, math.ceil(duration / interval_s - 1e-9)), max_per_clip)
    return [round(start_s + (i + 0.5) * duration / n, 6) for i in range(n)]


def plan_reads(
    targets: list[float], keyframes: list[float], seek_overhead_s: float
) -> list[tuple[float, str]]:
    """For sorted sample times, decide per sample whether to seek or keep decoding.

    Returns ``(keyframe_time_to_seek_to_or_-1, "seek"|"sequential")`` per target.
    """
    plan = []
    position = -math.inf
    for t in targets:
        i = bisect.bisect_right(keyframes, t + 1e-6) - 1
        kf = keyframes[i] if i >= 0 else 0.0
        if position == -math.inf or kf > position + seek_overhead_s or t < position:
            plan.append((kf, "seek"))
        else:
            plan.append((-1.0, "sequential"))
        position = max(t, kf)
    return plan


def extract_video_keyframes(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Worker entry point: decode the sample frames of one video and encode thumbnails."""
    import av
    import av.logging

    # No Python log callback while frame threads run: a worker process that probed before has
    # PyAV's logging on (probe reads FFmpeg's error log), and a frame thread that logs while the
    # decoder is freed mid-stream (after a seek, h264 logs errors) waits for the GIL that the
    # freeing thread holds — a deadlock, seen on Ray workers. Keyframes do not read the log.
    av.logging.set_level(None)

    targets = sorted(payload["targets"], key=lambda x: x[2])
    times = [t for _, _, t in targets]
    fps = payload["fps"] or 30.0
    half = 0.5 / fps
    offset = payload.get("start_time_s") or 0.0
    plan = plan_reads(times, payload["keyframe_times_s"] or [0.0], payload["seek_overhead_s"])
    out: list[dict[str, Any]] = []
    with av.open(payload["path"]) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        frames = None
        prev = last = None
        for (clip_id, idx, t), (kf, how) in zip(targets, plan, strict=True):
            if how == "seek" or frames is None:
                container.seek(max(0, int((kf + offset) / vs.time_base)), stream=vs, backward=True)
                frames = container.decode(vs)
                prev = last = None
            if last is None or last[0] < t - half:
                for frame in frames:
                    prev, last = last, (frame.time - offset, frame)
                    if last[0] >= t - half:
                        break
            if last is None:
                raise RuntimeError(f"no frame could be decoded near {t:.3f} s")
            best = last
            if prev is not None and abs(prev[0] - t) < abs(last[0] - t):
                best = prev
            image, width, height = _thumbnail(best[1], payload)
            out.append(
                {
                    "clip_id": clip_id,
                    "idx": idx,
                    "time_s": round(best[0], 6),
                    "width": width,
                    "height": height,
                    "jpeg": image,
                    "sampler": how,
                }
            )
    return out


def _thumbnail(frame: Any, payload: dict[str, Any]) -> tuple[bytes, int, int]:
    short = payload["short_side"]
    w, h = frame.width, frame.height
    scale = min(1.0, short / min(w, h))
    tw, th = max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)
    image = frame.reformat(width=tw, height=th, format="rgb24").to_image()
    rotation = payload.get("rotation") or 0
    if rotation:
        image = image.rotate(rotation, expand=True)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=payload["jpeg_quality"])
    return buffer.getvalue(), image.width, image.height


def extract_keyframes(
    lh: Lakehouse, source: Source, *, run_id: str, progress: Progress = no_progress
) -> StageResult:
    """Extract keyframes for the clips of ``source`` that lack them (under current settings).

    The plan streams: the clips to sample come from one DuckDB query over the tables, sorted by
    video (:meth:`Lakehouse.stream_query`, which spills to disk), and a video's task is built
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
        "lakehouse.keyframes:extract_video_keyframes",
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


def _delete_stale(lh: Lakehouse, source: Source, fingerprint: str, probed: str) -> int:
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
    payload = {
        "path": video["uri"],
        "fps": video["fps"],
        "start_time_s": video.get("start_time_s") or 0.0,
        "rotation": video.get("rotation") or 0,
        "keyframe_times_s": list(video.get("keyframe_times_s") or []),
        "targets": targets,
        "seek_overhead_s": settings.seek_overhead_frames / fps,
        "short_side": settings.short_side,
        "jpeg_quality": settings.jpeg_quality,
    }
    starts = {c["clip_id"]: c["start_s"] for c in clips}
    return (video["video_id"], video["relpath"], video["uri"], starts), payload
