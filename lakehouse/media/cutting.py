"""Cut one clip out of its source video, frame-accurately, re-encoding only that span.

The decoder seeks to the keyframe before the clip and drops frames until the clip's first frame;
frames ``start_frame`` (inclusive) to ``end_frame`` (exclusive) are re-encoded as H.264 MP4 at the
source frame rate, upright (a rotated source is turned, as keyframes are). A frame's number is
its presentation time times the frame rate, so the output has exactly ``end_frame - start_frame``
frames for a constant-rate source; a variable-rate one keeps the frames whose time falls in the
span. Audio is not carried over. An optional ``transform`` rewrites each frame's pixels on the way
(the export's face blurring).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from lakehouse.core.errors import LakehouseError


class CutError(LakehouseError, RuntimeError):
    """A clip could not be cut from its source video."""


def cut_clip(
    path: str,
    *,
    start_frame: int,
    end_frame: int,
    fps: float,
    rotation: int = 0,
    crf: int = 20,
    preset: str = "veryfast",
    transform: Callable[[Any], Any] | None = None,
) -> tuple[bytes, int]:
    """Return ``(mp4 bytes, frame count)`` of frames ``[start_frame, end_frame)`` of ``path``.

    ``transform``, when given, maps each upright frame (an RGB ``numpy`` array) to the frame to
    encode, of the same size."""
    import av

    if not fps or fps <= 0:
        raise CutError(f"{path}: the clip has no frame rate; probe the video first.")
    if end_frame <= start_frame:
        raise CutError(f"{path}: empty span {start_frame}..{end_frame}.")
    out = io.BytesIO()
    count = 0
    try:
        with av.open(path) as source:
            stream = source.streams.video[0]
            stream.thread_type = "AUTO"
            offset = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
            if start_frame > 0:
                target = (start_frame / fps + offset) / stream.time_base
                source.seek(max(0, int(target)), stream=stream, backward=True)
            with av.open(out, "w", format="mp4") as sink:
                encoder = None
                for frame in source.decode(stream):
                    if frame.pts is None:
                        continue
                    index = round((float(frame.pts * stream.time_base) - offset) * fps)
                    if index < start_frame:
                        continue
                    if index >= end_frame:
                        break
                    frame = _upright(frame, rotation)
                    if transform is not None:
                        pixels = transform(frame.to_ndarray(format="rgb24"))
                        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                    if encoder is None:
                        encoder = _encoder(sink, frame, fps, crf, preset)
                    width, height = encoder.codec_context.width, encoder.codec_context.height
                    picture = frame.reformat(width=width, height=height, format="yuv420p")
                    picture.pts = count
                    picture.time_base = encoder.codec_context.time_base
                    for packet in encoder.encode(picture):
                        sink.mux(packet)
                    count += 1
                if encoder is None:
                    raise CutError(f"{path}: no frame decodes in {start_frame}..{end_frame}.")
                for packet in encoder.encode(None):
                    sink.mux(packet)
    except CutError:
        raise
    except (av.FFmpegError, OSError) as exc:
        raise CutError(f"{path}: {exc}") from None
    return out.getvalue(), count


def _encoder(sink: Any, frame: Any, fps: float, crf: int, preset: str) -> Any:
    rate = Fraction(fps).limit_denominator(1001)
    stream = sink.add_stream("libx264", rate=rate)
    stream.width = frame.width - frame.width % 2  # yuv420p needs even sides
    stream.height = frame.height - frame.height % 2
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = 1 / rate
    stream.options = {"crf": str(crf), "preset": preset}
    return stream


def _upright(frame: Any, rotation: int) -> Any:
    if not rotation % 360:
        return frame
    import av

    image = frame.to_image().rotate(rotation, expand=True)
    return av.VideoFrame.from_image(image)


def count_frames(data: bytes) -> int:
    """Frames in an encoded video (used to check a cut)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))
