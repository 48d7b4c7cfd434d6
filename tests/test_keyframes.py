"""Keyframe sampling: the planner's choices, and that the frames taken are the right ones."""

import io
import math

import av
import numpy as np
import pytest
from PIL import Image

from lakehouse.media.frames import extract_video_keyframes, plan_reads, sample_times


def test_sample_times_one_per_interval_bounded():
    assert sample_times(0, 1, 2.0, 8) == [0.5]
    assert sample_times(10, 16, 2.0, 8) == [11.0, 13.0, 15.0]
    assert len(sample_times(0, 100, 2.0, 8)) == 8
    assert sample_times(5, 5, 2.0, 8) == [5.0]


def test_planner_decodes_through_long_gops_and_seeks_across_short_ones():
    targets = [1.0, 3.0, 5.0, 7.0]
    long_gop = [0.0, 10.0]
    assert [how for _, how in plan_reads(targets, long_gop, 0.4)] == [
        "seek",
        "sequential",
        "sequential",
        "sequential",
    ]
    short_gop = [i * 0.5 for i in range(20)]
    plan = plan_reads(targets, short_gop, 0.4)
    assert [how for _, how in plan] == ["seek"] * 4
    assert [kf for kf, _ in plan] == [1.0, 3.0, 5.0, 7.0]


def _indexed_video(path, frames=90, fps=30, gop=10):
    """Each frame's grey level encodes its index (2 levels per frame)."""
    out = av.open(str(path), "w")
    s = out.add_stream("libx264", rate=fps)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    s.options = {"g": str(gop), "preset": "ultrafast", "crf": "10"}
    for i in range(frames):
        img = np.full((48, 64, 3), 2 * i + 20, np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for p in s.encode(frame):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()


@pytest.mark.parametrize("gop", [3, 10, 90])
@pytest.mark.parametrize("overhead", [0.0, 10.0])
def test_the_frame_nearest_each_sample_time_is_taken(tmp_path, gop, overhead):
    path = tmp_path / f"indexed_{gop}.mp4"
    _indexed_video(path, gop=gop)
    keyframe_times = [i / 30 for i in range(0, 90, gop)]
    wanted = [0.2, 0.5, 1.0, 1.01, 2.5, 2.94]
    payload = {
        "path": str(path),
        "fps": 30.0,
        "start_time_s": 0.0,
        "rotation": 0,
        "keyframe_times_s": keyframe_times,
        "seek_overhead_s": overhead,
        "targets": [("c", i, t) for i, t in enumerate(wanted)],
        "short_side": 48,
        "jpeg_quality": 95,
    }
    rows = sorted(extract_video_keyframes(payload), key=lambda r: r["idx"])
    assert len(rows) == len(wanted)
    for row, t in zip(rows, wanted, strict=True):
        index = round(t * 30)
        assert row["time_s"] == pytest.approx(index / 30, abs=1e-3)
        grey = np.asarray(Image.open(io.BytesIO(row["jpeg"]))).mean()
        assert math.isclose(grey, 2 * index + 20, abs_tol=3), (t, grey)
    seeks = sum(r["sampler"] == "seek" for r in rows)
    if gop == 90 or overhead == 10.0:
        assert seeks == 1  # one keyframe, or seeking too dear: decode and drop
    elif gop == 3:
        assert seeks == 5  # every sample but 1.01 s (same GOP as 1.0 s) seeks


def test_thumbnails_are_small_and_upright(tmp_path):
    from lakehouse.media import synth
    from lakehouse.media.synth import Scene

    path = tmp_path / "rot.mp4"
    synth.write_video(path, [Scene("exo", 1, 0)], seed=1, size=(320, 240), rotation=90)
    payload = {
        "path": str(path),
        "fps": 15.0,
        "start_time_s": 0.0,
        "rotation": 90,
        "keyframe_times_s": [0.0],
        "seek_overhead_s": 0.8,
        "targets": [("c", 0, 0.5)],
        "short_side": 120,
        "jpeg_quality": 80,
    }
    (row,) = extract_video_keyframes(payload)
    assert (row["width"], row["height"]) == (120, 160)  # 320x240 coded, shown rotated
    assert Image.open(io.BytesIO(row["jpeg"])).size == (120, 160)
