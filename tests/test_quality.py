"""Quality signals (sharpness, brightness, contrast, frame and camera motion) on generated frames
and videos whose blur, darkness and camera motion are known: a blurred copy is less sharp, a
darkened copy darker, a panning camera moves and a still one does not."""

import dataclasses
import shutil

import numpy as np
import pytest

from lakehouse.api import Lakehouse
from lakehouse.core.config import Config, SignalSettings
from lakehouse.enrich.signals import compute_signals, summarize
from lakehouse.ingest.sources import register_source
from lakehouse.media import synth
from lakehouse.media.cutting import cut_clip
from lakehouse.media.detectors import MOTION_WIDTH, FrameResult, frame_motion, quality
from lakehouse.media.synth import Scene
from lakehouse.pipeline import run_stages

W, H, FPS = 320, 240, 15
PAN_PX_PER_FRAME = 2  # the panning video moves 2 px a frame: 30 px/s, 0.094 frame widths/s
DARKEN = 0.4


def blur(rgb, sigma=2.0):
    import cv2

    return cv2.GaussianBlur(rgb, (0, 0), sigma)


def darken(rgb):
    return (rgb * DARKEN).astype(np.uint8)


def measured(rgb) -> FrameResult:
    result = FrameResult(rgb.shape[1], rgb.shape[0])
    quality(rgb, result)
    return result


def scene_frame(kind: str, t: float = 1.0, palette: int = 0):
    """A frame of one of the generator's scenes (noisy backgrounds, like a real sensor)."""
    rng = np.random.default_rng(palette)
    background = synth._background(H, W, palette, rng)
    return synth.RENDERERS[kind](t, H, W, background, Scene(kind, 4, palette), 1)


def panorama(width: int, seed: int = 7):
    """A textured picture ``width`` pixels wide for a camera to pan over."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (H // 8, width // 8, 3), dtype=np.uint8)
    return cv2.GaussianBlur(
        cv2.resize(coarse, (width, H), interpolation=cv2.INTER_CUBIC), (0, 0), 1.5
    )


def pan_frames(count: int, step: int = PAN_PX_PER_FRAME):
    world = panorama(W + step * count)
    return [np.ascontiguousarray(world[:, i * step : i * step + W]) for i in range(count)]


@pytest.mark.parametrize("kind", ["ego", "exo", "static"])
def test_a_blurred_copy_is_less_sharp_and_a_darkened_one_darker(kind):
    frame = scene_frame(kind)
    original, mild, strong = measured(frame), measured(blur(frame, 1.0)), measured(blur(frame))
    # measured (ego/exo/static): 272/196/297 sharp, 2.6/2.0/5.6 after a sigma-2 blur
    assert original.sharpness > mild.sharpness > strong.sharpness >= 0
    assert strong.sharpness < original.sharpness / 10
    dark = measured(darken(frame))
    # grey levels scale with the pixels (less the rounding down of uint8)
    assert dark.brightness == pytest.approx(DARKEN * original.brightness, abs=2 / 255)
    assert dark.contrast == pytest.approx(DARKEN * original.contrast, abs=2 / 255)
    assert 0 < dark.brightness < original.brightness < 1
    assert original.small_gray.shape == (H * MOTION_WIDTH // W, MOTION_WIDTH)


def test_sharpness_is_measured_at_one_scale():
    import cv2

    frame = scene_frame("ego")
    double = cv2.resize(frame, (W * 2, H * 2), interpolation=cv2.INTER_NEAREST)
    # every size is brought to a 224 px short side first, so the same picture at twice the
    # pixels reads the same (raw Laplacian variance drops threefold here: 863 to 282)
    assert measured(double).sharpness == pytest.approx(measured(frame).sharpness, rel=0.1)


def test_frame_motion_finds_a_pan_and_not_a_still_camera():
    still = measured(scene_frame("static", 1.0))
    assert frame_motion(still.small_gray, still.small_gray) == (0.0, 0.0)
    # a bar moving over a still background: pixels change, the camera does not
    later = measured(scene_frame("static", 3.0))
    difference, shift = frame_motion(still.small_gray, later.small_gray)
    assert difference > 0 and shift < 0.005
    frames = pan_frames(61)
    first = measured(frames[0]).small_gray
    for offset in (10, 30, 60):  # the camera moved offset * 2 px to the right
        difference, shift = frame_motion(first, measured(frames[offset]).small_gray)
        expected = offset * PAN_PX_PER_FRAME / W
        assert shift == pytest.approx(expected, abs=0.01), offset
        assert difference > 0.02


def test_summary_of_a_panning_and_a_still_camera():
    settings = SignalSettings()

    def summary(images, step_s=2.0):
        analysed = [({"time_s": i * step_s}, measured(img)) for i, img in enumerate(images)]
        return summarize(analysed, settings)

    frames = pan_frames(2 * 2 * FPS + 1)
    panning = summary([frames[0], frames[2 * FPS], frames[4 * FPS]])
    expected = PAN_PX_PER_FRAME * FPS / W  # frame widths per second
    assert panning["camera_motion"] == pytest.approx(expected, rel=0.1)
    assert panning["static_camera"] is False
    still = summary([scene_frame("static", t) for t in (0.0, 2.0, 4.0)])
    assert still["camera_motion"] < 0.002 and still["static_camera"] is True
    assert panning["motion_score"] > 3 * still["motion_score"] > 0
    assert panning["hand_motion"] is None and panning["privacy_status"] == "clear"
    one = summary([frames[0]])  # one frame: no motion to measure
    assert one["camera_motion"] is None and one["static_camera"] is None
    assert one["motion_score"] is None and one["sharpness"] == one["min_sharpness"] > 0
    # the threshold decides: a slow pan counts as still under a looser setting
    loose = dataclasses.replace(settings, static_camera_motion=0.2)
    analysed = [({"time_s": i * 2.0}, measured(frames[i * 2 * FPS])) for i in range(3)]
    assert summarize(analysed, loose)["static_camera"] is True


def write_frames(path, frames, fps=FPS):
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast", "threads": "1"}
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def quality_lh(tmp_path_factory):
    """Four 6 s generated videos, ingested with signals: a still camera, a blurred and a
    darkened copy of it, and a camera panning over a textured picture."""
    pytest.importorskip("mediapipe", reason="the signals extra (mediapipe) is not installed")
    base = tmp_path_factory.mktemp("quality")
    folder = base / "videos"
    folder.mkdir()
    count = synth.write_video(folder / "still.mp4", [Scene("static", 6)], fps=FPS, seed=5)
    for name, transform in (("blurred", blur), ("dark", darken)):
        data, _ = cut_clip(
            str(folder / "still.mp4"), start_frame=0, end_frame=count, fps=FPS, transform=transform
        )
        (folder / f"{name}.mp4").write_bytes(data)
    write_frames(folder / "pan.mp4", pan_frames(count))
    lh = Lakehouse(Config.load(root=base / "lakehouse", env={}))
    source = register_source(lh, folder, name="cam")
    run_stages(lh, source, run_id="r1", embed=False)
    result = compute_signals(lh, source, run_id="s1")
    assert result.details["analysed"] == 4 and result.details["failed"] == 0
    rows = lh.sql("select * from clip_facts").to_pylist()
    return lh, {r["uri"].rsplit("/", 1)[-1].removesuffix(".mp4"): r for r in rows}


def test_quality_columns_of_generated_videos(quality_lh):
    _, rows = quality_lh
    assert set(rows) == {"still", "blurred", "dark", "pan"}
    still, blurred, dark, pan = (rows[k] for k in ("still", "blurred", "dark", "pan"))
    for row in rows.values():
        assert row["signal_frames"] >= 3
        assert 0 < row["min_sharpness"] <= row["sharpness"]
    # measured: sharpness 355 (still) against 5.8 (blurred); brightness 0.409 against 0.157
    assert blurred["sharpness"] < still["sharpness"] / 10
    assert blurred["min_sharpness"] < still["min_sharpness"] / 10
    assert dark["brightness"] == pytest.approx(DARKEN * still["brightness"], abs=0.03)
    assert dark["contrast"] < still["contrast"]
    # measured: camera_motion 0.00013 (still) against 0.0932 (pan; 0.0938 set)
    for row in (still, blurred, dark):
        assert row["static_camera"] is True and row["camera_motion"] < 0.005
    assert pan["static_camera"] is False
    assert pan["camera_motion"] == pytest.approx(PAN_PX_PER_FRAME * FPS / W, rel=0.15)
    assert pan["motion_score"] > 3 * still["motion_score"] > 0


def test_the_range_check_fails_on_an_out_of_range_signal(quality_lh, tmp_path):
    from dagster_defs.runner import run_ingest
    from lakehouse.core.errors import PipelineError

    lh, _ = quality_lh
    shutil.copytree(lh.root, tmp_path / "lakehouse")
    config = Config.load(root=tmp_path / "lakehouse", env={})
    report = run_ingest(config, "cam", job_name="signals_job")
    assert {c.check: c.passed for c in report.checks}["signal_values_in_range"]
    copy = Lakehouse(config)
    row = copy.read("signals", limit=1).to_pylist()[0]
    copy.upsert("signals", [{**row, "sharpness": -1.0}])
    with pytest.raises(PipelineError, match="signal_values_in_range"):
        run_ingest(config, "cam", job_name="signals_job")
