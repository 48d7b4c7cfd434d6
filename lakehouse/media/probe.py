"""Probe one video file with PyAV: identity, stream metadata, GOP layout, scene cuts, integrity.

Runs inside a supervised worker (``lakehouse.media.workers``), which enforces the per-file time and
memory limits. Once the container is open, the probe asks for a time limit that fits the
video's length (see :func:`time_limit`), since reading every frame of a long video takes long.
With ``verify_decode`` every frame is decoded once: that pass counts frames
exactly, records keyframe times and a tiny colour signature per frame for scene-cut detection, and
catches corruption that only shows while decoding. PyAV decodes some damaged streams without
raising, so FFmpeg's error log is captured during the pass and counted as decode errors too.
"""

from __future__ import annotations

import math
import statistics
from fractions import Fraction
from itertools import pairwise
from typing import Any

from lakehouse.core import quarantine as q
from lakehouse.core.ids import hash_file, video_id_from_sha256

PROBE_VERSION = "probe-1"
SIGNATURE_SIZE = (32, 18)


def probe_file(payload: dict[str, Any]) -> dict[str, Any]:
    """Probe ``payload['path']``; returns ``{'ok': True, 'video': {...}}`` or an error dict."""
    import av
    import av.logging

    path = payload["path"]
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=False) as logs:
            result = _probe(path, payload, logs)
    finally:
        # logging off again for whatever this worker process decodes next (see keyframes)
        av.logging.set_level(None)
    if not result["ok"] and _out_of_memory(result["message"], _log_lines(logs)):
        # an allocation that failed under the per-file memory limit, not a broken file: a
        # transient reason, so raising ingest.worker_memory_mb and re-ingesting reads it again
        result["reason_code"] = q.MEMORY_LIMIT
        result["message"] = (
            "decoding needs more memory than the per-file limit (ingest.worker_memory_mb); "
            f"raise it to ingest this file ({result['message']})"
        )
    return result


def _probe(path: str, payload: dict[str, Any], logs: list) -> dict[str, Any]:
    import av

    from lakehouse.media.workers import request_time_limit

    try:
        container = _open(path)
    except av.error.FFmpegError as exc:
        return _fail(_identity(path), q.UNREADABLE_CONTAINER, _ffmpeg_message(exc, logs))
    base: dict[str, str] = {}
    try:
        # before hashing: reading the whole file is part of the work the length pays for
        limit = time_limit(payload, _header_duration(container))
        if limit is not None:
            request_time_limit(limit)
        base = _identity(path)
        return _probe_open(container, payload, base, logs)
    except av.error.FFmpegError as exc:
        return _fail(base or _identity(path), q.DECODE_ERROR, _ffmpeg_message(exc, logs))
    finally:
        container.close()


def _open(path: str) -> Any:
    """Open a video container: local files only, so a container cannot make FFmpeg fetch a
    URL or open other protocols."""
    import av

    return av.open(path, metadata_errors="ignore", options={"protocol_whitelist": "file"})


def _identity(path: str) -> dict[str, str]:
    sha = hash_file(path)
    return {"sha256": sha, "video_id": video_id_from_sha256(sha)}


def time_limit(payload: dict[str, Any], duration_s: float | None) -> float | None:
    """The time limit for probing a video of ``duration_s`` seconds (by its header):
    ``seconds_per_video_second`` for each second of video, never less than the base
    ``timeout_s`` and never more than ``max_timeout_s``, however long the header claims the
    video is. None when the base limit stands (no duration, no scaling configured)."""
    per_second = payload.get("seconds_per_video_second") or 0.0
    base = payload.get("timeout_s") or 0.0
    ceiling = payload.get("max_timeout_s") or 0.0
    if not duration_s or not per_second or not math.isfinite(duration_s) or ceiling <= base:
        return None
    return min(ceiling, max(base, per_second * duration_s))


def header_time_limit(payload: dict[str, Any]) -> float | None:
    """The time limit :func:`time_limit` gives the video at ``payload["path"]``, read from its
    header alone (a few milliseconds), for backends whose tasks cannot ask for more time once
    running (Ray).
    None when the header cannot be read: the base limit stands and the probe reports why."""
    import av

    try:
        with _open(payload["path"]) as container:
            return time_limit(payload, _header_duration(container))
    except (av.error.FFmpegError, OSError, UnicodeError):
        return None


def _header_duration(container: Any) -> float | None:
    """The length the container says it has (FFmpeg estimates it from the bit rate where the
    container does not say), else the first video stream's; untrusted, so only used capped."""
    if container.duration and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    for vs in container.streams.video:
        if vs.duration and vs.time_base and vs.duration > 0:
            return float(vs.duration * vs.time_base)
    return None


# A decoder holds up to 16 reference frames plus the frames its threads work on; 3 bytes a
# pixel covers 4:4:4 8-bit and 4:2:0 10-bit. The interpreter itself needs a few hundred MB.
FRAMES_IN_FLIGHT = 16
BASE_MB = 300


def _exceeds_memory(width: int, height: int, memory_mb: int | None) -> str | None:
    """Why frames this large cannot be decoded under the per-file memory limit, if they can't."""
    if not memory_mb or not width or not height:
        return None
    need = width * height * 3 * FRAMES_IN_FLIGHT / 2**20 + BASE_MB
    if need <= memory_mb:
        return None
    return (
        f"{width}x{height} frames need about {need:,.0f} MB to decode, more than the per-file "
        f"limit of {memory_mb} MB (ingest.worker_memory_mb); raise it to ingest this file"
    )


MEMORY_SIGNS = ("cannot allocate memory", "get_buffer() failed", "out of memory", "enomem")


def _out_of_memory(message: str, log_lines: list[str]) -> bool:
    text = " ".join([message, *log_lines]).lower()
    return any(sign in text for sign in MEMORY_SIGNS)


def _probe_open(container: Any, payload: dict[str, Any], base: dict, logs: list) -> dict:
    streams = [
        s
        for s in container.streams.video
        if not (s.disposition and "attached_pic" in str(s.disposition).lower())
    ]
    if not streams:
        kinds = sorted({s.type for s in container.streams})
        return _fail(base, q.NO_VIDEO_STREAM, f"no video stream (streams: {kinds or 'none'})")
    vs = streams[0]
    ctx = vs.codec_context
    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    audio = container.streams.audio
    info: dict[str, Any] = {
        "container": container.format.name,
        "codec": ctx.name,
        "pix_fmt": ctx.pix_fmt,
        "width": ctx.width,
        "height": ctx.height,
        "fps": float(rate) if rate else None,
        "has_audio": bool(audio),
        "audio_codec": audio[0].codec_context.name if audio else None,
        "bit_rate": container.bit_rate or None,
        "rotation": 0,
        "probe_version": PROBE_VERSION,
    }
    too_big = _exceeds_memory(ctx.width, ctx.height, payload.get("memory_mb"))
    if too_big:
        return _fail(base, q.MEMORY_LIMIT, too_big)
    header_frames = vs.frames or 0
    if payload.get("verify_decode", True):
        scan = _decode_scan(container, vs, payload)
    else:
        scan = _packet_scan(container, vs)
    errors = [m for m in _log_lines(logs) if m]
    if scan["error"]:
        return _fail(base, q.DECODE_ERROR, scan["error"])
    if scan["count"] == 0:
        detail = f"; FFmpeg said: {errors[0]}" if errors else ""
        return _fail(base, q.NO_FRAMES, "no frame could be decoded" + detail)
    if len(errors) + scan["corrupt"] > payload.get("max_decode_errors", 0):
        first = errors[0] if errors else f"{scan['corrupt']} frame(s) flagged corrupt"
        return _fail(
            base,
            q.DECODE_ERROR,
            f"{len(errors) + scan['corrupt']} decode error(s) while reading frames; first: {first}",
        )
    if header_frames and scan["count"] < header_frames - 1 and payload.get("verify_decode", True):
        return _fail(
            base,
            q.DECODE_ERROR,
            f"truncated: decoded {scan['count']} of the {header_frames} frames the header lists",
        )
    info.update(scan["info"])
    if not info["fps"] and info["duration_s"]:
        info["fps"] = scan["count"] / info["duration_s"]
    return {"ok": True, "video": {**base, **info}}


def _decode_scan(container: Any, vs: Any, payload: dict[str, Any]) -> dict[str, Any]:
    import av
    import numpy as np

    vs.thread_type = "AUTO"
    sample_every = 1.0 / max(payload.get("scene_sample_fps", 30.0), 1e-6)
    times: list[float] = []
    key_times: list[float] = []
    cuts = CutDetector(payload.get("scene_threshold", 0.1))
    corrupt = 0
    rotation = 0
    last_sample = -1e9
    try:
        for packet in container.demux(vs):
            for frame in packet.decode():
                t = frame.time
                if t is None:
                    t = times[-1] + (1.0 / float(vs.average_rate or 30)) if times else 0.0
                if not times:
                    rotation = round(frame.rotation or 0) % 360
                times.append(t)
                if frame.key_frame:
                    key_times.append(t)
                if frame.is_corrupt:
                    corrupt += 1
                if t - last_sample >= sample_every - 1e-6:
                    last_sample = t
                    small = frame.reformat(
                        width=SIGNATURE_SIZE[0], height=SIGNATURE_SIZE[1], format="rgb24"
                    )
                    cuts.push(t, small.to_ndarray().astype(np.float32))
    except av.error.FFmpegError as exc:
        return {"error": f"decoding failed after {len(times)} frames: {exc}", "count": len(times)}
    info = _timing(times, key_times, vs)
    info["rotation"] = rotation
    info["decode_verified"] = True
    start = times[0] if times else 0.0
    info["scene_cuts_s"] = [round(t - start, 6) for t in cuts.cuts]
    return {"error": None, "count": len(times), "corrupt": corrupt, "info": info}


def _packet_scan(container: Any, vs: Any) -> dict[str, Any]:
    times: list[float] = []
    key_times: list[float] = []
    for packet in container.demux(vs):
        if packet.size == 0 or packet.pts is None:
            continue
        t = float(packet.pts * packet.time_base)
        times.append(t)
        if packet.is_keyframe:
            key_times.append(t)
    times.sort()
    info = _timing(times, key_times, vs)
    info.update(decode_verified=False, scene_cuts_s=[])
    return {"error": None, "count": len(times), "corrupt": 0, "info": info}


def _timing(times: list[float], key_times: list[float], vs: Any) -> dict[str, Any]:
    if not times:
        return {"num_frames": 0, "duration_s": 0.0}
    start = times[0]
    deltas = [b - a for a, b in pairwise(times) if b > a]
    step = statistics.median(deltas) if deltas else _rate_step(vs)
    is_vfr = bool(deltas) and (max(deltas) - min(deltas)) > 0.5 * step
    key_rel = sorted({round(t - start, 6) for t in key_times})
    gaps = [b - a for a, b in pairwise(key_rel)]
    duration = (times[-1] - start) + step
    return {
        "num_frames": len(times),
        "duration_s": round(duration, 6),
        "start_time_s": round(start, 6),
        "is_vfr": is_vfr,
        "keyframe_times_s": key_rel,
        "gop_s": round(statistics.mean(gaps), 6) if gaps else round(duration, 6),
    }


def _rate_step(vs: Any) -> float:
    rate = vs.average_rate or vs.guessed_rate
    return float(1 / Fraction(rate)) if rate else 1 / 30


class CutDetector:
    """Scene cuts from per-frame colour signatures (32x18 RGB thumbnails), fed one at a time so
    that memory does not grow with the length of the video.

    A cut is a jump in mean absolute colour difference that is both above ``threshold`` (0-1)
    and well above the recent level of motion, so fast camera motion alone is not a cut.
    """

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.previous: Any = None
        self.recent: list[float] = []
        self.cuts: list[float] = []

    def push(self, t: float, signature: Any) -> None:
        import numpy as np

        if self.previous is not None:
            score = float(np.mean(np.abs(signature - self.previous))) / 255.0
            level = float(np.median(self.recent)) if self.recent else 0.0
            if score > self.threshold and score > 3.0 * level + 0.02:
                self.cuts.append(t)
                self.recent.clear()
            else:
                self.recent.append(score)
                del self.recent[:-15]
        self.previous = signature


def detect_cuts(signatures: list[tuple[float, Any]], threshold: float) -> list[float]:
    """Scene cuts of a list of ``(time, signature)`` (see :class:`CutDetector`)."""
    detector = CutDetector(threshold)
    for t, signature in signatures:
        detector.push(t, signature)
    return detector.cuts


def _log_lines(logs: list) -> list[str]:
    out = []
    for entry in logs:
        message = entry[2] if isinstance(entry, tuple) and len(entry) >= 3 else str(entry)
        out.append(str(message).strip())
    return out


def _ffmpeg_message(exc: Exception, logs: list) -> str:
    lines = _log_lines(logs)
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{text}; FFmpeg said: {lines[0]}" if lines else str(text)


def _fail(base: dict, code: str, message: str) -> dict[str, Any]:
    return {"ok": False, **base, "reason_code": code, "message": message}
