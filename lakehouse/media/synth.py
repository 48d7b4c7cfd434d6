"""Synthetic human-centric videos and deliberately broken files, for the demo, tests and benchmarks.

The videos are drawn with numpy and encoded with PyAV (libx264), deterministically from a seed:
first-person-like tabletop scenes (two skin-toned hands reaching for objects, with head-motion
jitter) and third-person-like scenes (a stick figure walking or dancing in a room). Scenes can be
concatenated to make hard cuts for the scene-cut detector.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Frame = np.ndarray
SKIN = (224, 172, 140)


@dataclass(frozen=True)
class Scene:
    """``kind`` is ``ego``, ``exo`` or ``static``; ``palette`` picks the background colours."""

    kind: str
    seconds: float
    palette: int = 0
    motion: str = "reach"


def _box(img: Frame, y0: float, y1: float, x0: float, x1: float):
    """The clamped pixel box [y0, y1] x [x0, x1] and open grids over it (draw only there)."""
    h, w = img.shape[:2]
    top, bottom = max(0, int(y0)), min(h, math.ceil(y1) + 1)
    left, right = max(0, int(x0)), min(w, math.ceil(x1) + 1)
    if top >= bottom or left >= right:
        return None
    yy, xx = np.ogrid[top:bottom, left:right]
    return (slice(top, bottom), slice(left, right)), yy.astype(np.float32), xx.astype(np.float32)


def _disc(img: Frame, cy: float, cx: float, r: float, color) -> None:
    _ellipse(img, cy, cx, r, r, color)


def _ellipse(img: Frame, cy: float, cx: float, ry: float, rx: float, color) -> None:
    box = _box(img, cy - ry, cy + ry, cx - rx, cx + rx)
    if box is not None:
        region, yy, xx = box
        img[region][((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0] = color


def _line(img: Frame, p0, p1, width: float, color) -> None:
    (y0, x0), (y1, x1) = p0, p1
    pad = width / 2 + 1
    box = _box(img, min(y0, y1) - pad, max(y0, y1) + pad, min(x0, x1) - pad, max(x0, x1) + pad)
    if box is None:
        return
    region, yy, xx = box
    dy, dx = y1 - y0, x1 - x0
    length2 = dy * dy + dx * dx or 1.0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / length2, 0, 1)
    dist2 = (yy - (y0 + t * dy)) ** 2 + (xx - (x0 + t * dx)) ** 2
    img[region][dist2 <= width * width / 4] = color


PALETTES = [
    ((150, 110, 70), (120, 85, 50)),  # wooden table
    ((200, 200, 205), (170, 170, 180)),  # steel bench
    ((90, 120, 90), (60, 90, 60)),  # green mat
    ((180, 150, 200), (140, 110, 170)),  # purple room
]


def _background(h: int, w: int, palette: int, rng: np.random.Generator) -> Frame:
    top, bottom = (np.array(c, np.float32) for c in PALETTES[palette % len(PALETTES)])
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = top * (1 - ramp) + bottom * ramp
    img = np.broadcast_to(img, (h, w, 3)).copy()
    img += rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def ego_frame(t: float, h: int, w: int, bg: Frame, scene: Scene, seed: int) -> Frame:
    """A first-person tabletop: objects on a surface, hands reaching in from below."""
    rng = np.random.default_rng(seed)
    jitter_y = int(3 * math.sin(t * 2.1 + seed)), int(4 * math.sin(t * 1.3 + seed))
    img = np.roll(bg, jitter_y, axis=(0, 1)).copy()
    objects = [
        (
            0.45 + 0.1 * rng.random(),
            0.25 + 0.5 * rng.random(),
            tuple(int(c) for c in rng.integers(30, 230, 3)),
        )
        for _ in range(3)
    ]
    phase = (t % 4.0) / 4.0
    reach = math.sin(phase * math.pi)
    target_y, target_x, _ = objects[0]
    for i, (oy, ox, color) in enumerate(objects):
        cy, cx = oy * h, ox * w
        if i == 0 and phase > 0.5:  # the grasped object follows the right hand back
            cy, cx = h * (target_y + (1 - target_y) * (1 - reach) * 0.5), w * target_x
        img[int(cy - h * 0.06) : int(cy + h * 0.06), int(cx - w * 0.05) : int(cx + w * 0.05)] = (
            color
        )
    for side, base_x in ((-1, 0.3), (1, target_x)):
        lift = reach if side == 1 else 0.3 + 0.2 * math.sin(t)
        hy = h * (1.05 - 0.55 * lift)
        hx = w * base_x
        _line(img, (h * 1.1, hx + side * w * 0.1), (hy, hx), w * 0.07, SKIN)
        _ellipse(img, hy, hx, h * 0.07, w * 0.05, SKIN)
        for f in range(4):
            fx = hx + (f - 1.5) * w * 0.018
            _line(img, (hy, fx), (hy - h * 0.09, fx + side * 2), w * 0.012, SKIN)
    return img


def exo_frame(t: float, h: int, w: int, bg: Frame, scene: Scene, seed: int) -> Frame:
    """A third-person view: a stick figure walking across a room, or dancing in place."""
    img = bg.copy()
    img[int(h * 0.78) :, :] = (110, 100, 95)  # floor
    if scene.motion == "walk":
        cx = w * (0.1 + 0.8 * ((t / max(scene.seconds, 1e-6)) % 1.0))
        swing = 0.5 * math.sin(t * 6)
        arm_lift = 0.0
    else:
        cx = w * (0.5 + 0.08 * math.sin(t * 2))
        swing = 0.8 * math.sin(t * 5)
        arm_lift = 0.6 + 0.4 * math.sin(t * 3)
    hip_y, shoulder_y, head_y = h * 0.58, h * 0.36, h * 0.26
    color = (40, 40, 160)
    _disc(img, head_y, cx, h * 0.06, SKIN)
    _line(img, (shoulder_y, cx), (hip_y, cx), w * 0.035, color)
    for s in (-1, 1):
        knee = (hip_y + h * 0.1, cx + s * swing * w * 0.05)
        _line(img, (hip_y, cx), knee, w * 0.03, (30, 30, 30))
        _line(img, knee, (h * 0.78, cx + s * swing * w * 0.08), w * 0.03, (30, 30, 30))
        hand = (shoulder_y + h * 0.16 - arm_lift * h * 0.3, cx + s * w * (0.07 + 0.04 * swing * s))
        _line(img, (shoulder_y, cx), hand, w * 0.025, color)
        _disc(img, hand[0], hand[1], h * 0.02, SKIN)
    return img


def static_frame(t: float, h: int, w: int, bg: Frame, scene: Scene, seed: int) -> Frame:
    img = bg.copy()
    x = int((t * 20) % w)
    img[:, x : x + 4] = 255
    return img


RENDERERS: dict[str, Callable[..., Frame]] = {
    "ego": ego_frame,
    "exo": exo_frame,
    "static": static_frame,
}


def write_video(
    path: str | os.PathLike[str],
    scenes: list[Scene],
    *,
    fps: int = 15,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    gop: int | None = None,
    codec: str = "libx264",
    rotation: int = 0,
    audio: bool = False,
    container_format: str | None = None,
) -> int:
    """Render ``scenes`` back to back into a video file; returns the number of frames."""
    import av

    w, h = size
    out = av.open(os.fspath(path), "w", format=container_format)
    stream = out.add_stream(codec, rate=fps)
    stream.width, stream.height = w, h
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
        stream.options = {"preset": "ultrafast", "g": str(gop or fps * 2), "threads": "1"}
    elif gop:
        stream.codec_context.gop_size = gop
    if rotation:
        stream.set_display_rotation(rotation)
    astream = out.add_stream("aac", rate=16000) if audio else None
    count = 0
    for index, scene in enumerate(scenes):
        rng = np.random.default_rng(seed * 1000 + index)
        bg = _background(h, w, scene.palette, rng)
        render = RENDERERS[scene.kind]
        for i in range(round(scene.seconds * fps)):
            t = i / fps
            frame = av.VideoFrame.from_ndarray(
                render(t, h, w, bg, scene, seed * 1000 + index), format="rgb24"
            )
            frame.pts = count
            for packet in stream.encode(frame):
                out.mux(packet)
            count += 1
    for packet in stream.encode():
        out.mux(packet)
    if astream is not None:
        _write_tone(out, astream, count / fps)
    out.close()
    return count


def write_audio_only(path: str | os.PathLike[str], seconds: float = 2.0) -> None:
    import av

    out = av.open(os.fspath(path), "w", format="mp4")
    stream = out.add_stream("aac", rate=16000)
    _write_tone(out, stream, seconds)
    out.close()


def _write_tone(out, stream, seconds: float) -> None:
    import av

    rate = 16000
    samples = np.sin(np.arange(int(rate * seconds)) * 2 * np.pi * 440 / rate).astype(np.float32)
    chunk = 1024
    for start in range(0, len(samples), chunk):
        part = samples[start : start + chunk]
        frame = av.AudioFrame.from_ndarray(part[None, :], format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


# -- broken files ---------------------------------------------------------------------------


def write_truncated(good: str | os.PathLike[str], path: str | os.PathLike[str], keep=0.5) -> None:
    """The first ``keep`` share of a good file (an mp4 loses its index: "moov atom not found")."""
    data = Path(good).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])


def write_damaged(good: str | os.PathLike[str], path: str | os.PathLike[str], seed=0) -> None:
    """A copy of a good file with bytes scrambled in the middle of its media data."""
    data = bytearray(Path(good).read_bytes())
    rng = np.random.default_rng(seed)
    mid = len(data) // 2
    span = max(64, len(data) // 20)
    data[mid : mid + span] = rng.integers(0, 256, span, dtype=np.uint8).tobytes()
    Path(path).write_bytes(bytes(data))


def write_text_as_video(path: str | os.PathLike[str]) -> None:
    Path(path).write_text("These are meeting notes, not a video.\n" * 20)


def write_without_index(good: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """A copy of a good MP4 without its index (the top-level ``moov`` box): every byte of media
    is there, but nothing says where a frame starts ("moov atom not found")."""
    data = Path(good).read_bytes()
    out, at = bytearray(), 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big") or len(data) - at
        if data[at + 4 : at + 8] != b"moov":
            out += data[at : at + size]
        at += size
    Path(path).write_bytes(bytes(out))


def write_concealed_damage(good: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """A copy of a good video with the slice data of three frames scrambled, but every header
    intact: the decoder conceals the damage and returns every frame without raising, logging
    errors ("error while decoding MB …") — only its log tells."""
    import av

    with av.open(os.fspath(good)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size and p.pos]
    data = bytearray(Path(good).read_bytes())
    rng = np.random.default_rng(0)
    for pos, size in packets[len(packets) // 3 :][:3]:
        start, end = pos + min(40, size // 3), pos + size - 8
        data[start:end] = rng.integers(0, 256, max(0, end - start), dtype=np.uint8).tobytes()
    Path(path).write_bytes(bytes(data))


def write_vfr(path: str | os.PathLike[str], seconds: float = 3.0, seed: int = 4) -> int:
    """A variable-frame-rate MP4: frames 1/30 s apart, then 1/5 s apart, alternating each
    second. Returns the number of frames."""
    import av

    rng = np.random.default_rng(seed)
    w, h = 160, 120
    bg = _background(h, w, 1, rng)
    out = av.open(os.fspath(path), "w", format="mp4")
    stream = out.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.codec_context.time_base = __import__("fractions").Fraction(1, 1000)
    stream.options = {"preset": "ultrafast", "threads": "1"}
    t, count = 0.0, 0
    while t < seconds:
        frame = av.VideoFrame.from_ndarray(
            ego_frame(t, h, w, bg, Scene("ego", seconds), seed), format="rgb24"
        )
        frame.pts = round(t * 1000)
        frame.time_base = stream.codec_context.time_base
        for packet in stream.encode(frame):
            out.mux(packet)
        count += 1
        t += 1 / 30 if int(t) % 2 == 0 else 1 / 5
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return count


def write_huge(path: str | os.PathLike[str], size: tuple[int, int] = (8192, 8192)) -> None:
    """Two black frames at a very large resolution: a few hundred KB on disk, hundreds of MB of
    decoded frames (what the per-file memory limit is for)."""
    import av

    w, h = size
    out = av.open(os.fspath(path), "w", format="mp4")
    stream = out.add_stream("libx264", rate=5)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {"preset": "ultrafast", "threads": "1"}
    frame = av.VideoFrame(w, h, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    for i in range(2):
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()


def write_long(
    good: str | os.PathLike[str], path: str | os.PathLike[str], repeats: int = 500
) -> float:
    """``good`` played ``repeats`` times in a row, by copying its packets (nothing re-encoded, so
    an hour of video is written in a second). Returns the duration in seconds."""
    import av

    with av.open(os.fspath(good)) as source:
        vs = source.streams.video[0]
        packets = [p for p in source.demux(vs) if p.size]
        step = max(p.pts + (p.duration or 1) for p in packets) - min(p.pts for p in packets)
        out = av.open(os.fspath(path), "w", format="mp4")
        stream = out.add_stream_from_template(vs)
        for n in range(repeats):
            for packet in packets:
                packet.stream = stream
                shift = n * step
                pts, dts = packet.pts, packet.dts
                packet.pts, packet.dts = pts + shift, (dts + shift if dts is not None else None)
                out.mux(packet)
                packet.pts, packet.dts = pts, dts
        out.close()
        return float(step * repeats * vs.time_base)
