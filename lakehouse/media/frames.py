"""Frame sampling from a video file, with no table access: which times to sample in a clip, how to
reach them by the file's GOP layout, and the worker task that decodes them into JPEG thumbnails.

Decoding dominates the cost of a large corpus, so frames are sampled by the file's GOP layout
(keyframe times recorded while probing). Reading sample times in order, the decoder seeks to the
keyframe before the next sample only when that keyframe lies ahead of where decoding already is
(by more than a small seek overhead); otherwise it keeps decoding and drops frames. On long-GOP
sources that means decode-and-drop, on short-GOP sources one seek per sample: each is the cheap
choice where it applies (``bench/bench_keyframes.py`` measures both against a full decode).
The keyframes stage (:mod:`lakehouse.ingest.keyframes`) and the signals stage
(:mod:`lakehouse.enrich.signals`) run :func:`extract_video_keyframes` in worker processes.
"""

from __future__ import annotations

import bisect
import io
import math
from typing import Any

from lakehouse.core.paths import local_path


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


def frame_task(
    video: dict[str, Any],
    targets: list[tuple[str, int, float]],
    *,
    seek_overhead_frames: int,
    short_side: int,
    jpeg_quality: int,
) -> dict[str, Any]:
    """The payload of :func:`extract_video_keyframes` for one local video (a ``videos`` row):
    ``targets`` are ``(clip_id, idx, time_s)``."""
    fps = video["fps"] or 30.0
    return {
        "path": local_path(video["uri"] or ""),
        "fps": video["fps"],
        "start_time_s": video.get("start_time_s") or 0.0,
        "rotation": video.get("rotation") or 0,
        "keyframe_times_s": list(video.get("keyframe_times_s") or []),
        "targets": targets,
        "seek_overhead_s": seek_overhead_frames / fps,
        "short_side": short_side,
        "jpeg_quality": jpeg_quality,
    }
