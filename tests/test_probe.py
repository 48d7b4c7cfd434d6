"""Probing real encoded files: exact metadata, integrity checks, scene cuts."""

import av
import pytest

from lakehouse.core import quarantine as q
from lakehouse.core.ids import hash_file, video_id_from_sha256
from lakehouse.media import synth
from lakehouse.media.probe import header_time_limit, probe_file, time_limit
from lakehouse.media.synth import Scene


def _probe(path, **kw):
    return probe_file({"path": str(path), "verify_decode": True, **kw})


def _decoded_frame_count(path):
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_exact_metadata_of_a_generated_clip(synthetic_videos):
    result = _probe(synthetic_videos["exo"])
    assert result["ok"], result
    v = result["video"]
    assert v["video_id"] == video_id_from_sha256(hash_file(synthetic_videos["exo"]))
    assert (v["width"], v["height"], v["fps"]) == (320, 240, 25.0)
    assert v["num_frames"] == 100 == _decoded_frame_count(synthetic_videos["exo"])
    assert v["duration_s"] == pytest.approx(4.0, abs=1e-6)
    assert v["codec"] == "h264" and v["container"].startswith("mov,mp4")
    assert v["rotation"] == 0 and v["has_audio"] is False and v["is_vfr"] is False
    assert v["keyframe_times_s"][0] == 0.0 and v["decode_verified"] is True


def test_rotation_and_audio_are_reported(tmp_path):
    path = tmp_path / "rotated_with_audio.mp4"
    synth.write_video(path, [Scene("ego", 2, 1)], seed=5, rotation=90, audio=True)
    v = _probe(path)["video"]
    assert v["rotation"] == 90
    assert v["has_audio"] is True and v["audio_codec"] == "aac"


def test_gop_layout_is_recorded(tmp_path):
    path = tmp_path / "gop.mp4"
    synth.write_video(path, [Scene("static", 6, 0)], seed=1, fps=10, gop=20)
    v = _probe(path)["video"]
    assert v["keyframe_times_s"][:3] == pytest.approx([0.0, 2.0, 4.0])
    assert v["gop_s"] == pytest.approx(2.0)


def test_scene_cuts_are_found_where_scenes_change(synthetic_videos):
    v = _probe(synthetic_videos["cuts"])["video"]
    assert v["scene_cuts_s"] == pytest.approx([3.0, 7.0], abs=0.07)


def test_no_cuts_in_a_continuous_shot(synthetic_videos):
    assert _probe(synthetic_videos["ego"])["video"]["scene_cuts_s"] == []


def test_packet_scan_without_decoding(synthetic_videos):
    result = probe_file({"path": str(synthetic_videos["exo"]), "verify_decode": False})
    assert result["ok"]
    assert result["video"]["num_frames"] == 100
    assert result["video"]["decode_verified"] is False


def test_truncated_file_is_rejected(tmp_path, synthetic_videos):
    path = tmp_path / "truncated.mp4"
    synth.write_truncated(synthetic_videos["exo"], path, keep=0.6)
    result = _probe(path)
    assert not result["ok"]
    assert result["reason_code"] in (q.UNREADABLE_CONTAINER, q.DECODE_ERROR)
    assert result["message"]


def test_truncated_fragmented_file_is_caught_while_decoding(tmp_path):
    # moov first (fragmented mp4): the header opens fine, the damage only shows while reading
    good = tmp_path / "frag.mp4"
    synth.write_video(good, [Scene("exo", 4, 0, "walk")], seed=8)
    remux = tmp_path / "faststart.mp4"
    with (
        av.open(str(good)) as src,
        av.open(str(remux), "w", options={"movflags": "frag_keyframe+empty_moov"}) as dst,
    ):
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    cut = tmp_path / "frag_truncated.mp4"
    synth.write_truncated(remux, cut, keep=0.55)
    result = _probe(cut)
    assert not result["ok"], result
    assert result["reason_code"] == q.DECODE_ERROR


def test_bytes_damaged_mid_stream_are_detected(tmp_path, synthetic_videos):
    for seed in range(3):
        path = tmp_path / f"damaged{seed}.mp4"
        synth.write_damaged(synthetic_videos["exo"], path, seed=seed)
        result = _probe(path)
        assert not result["ok"], f"seed {seed}: {result}"
        assert result["reason_code"] == q.DECODE_ERROR
        # this damage decodes "successfully": only FFmpeg's captured error log shows it
        assert "decode error(s) while reading frames" in result["message"]


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "voice.mp4"
    synth.write_audio_only(path)
    result = _probe(path)
    assert result["reason_code"] == q.NO_VIDEO_STREAM


def test_the_time_limit_grows_with_the_length_up_to_the_cap():
    limits = {"timeout_s": 120, "seconds_per_video_second": 0.5, "max_timeout_s": 3600}
    assert time_limit(limits, 10.0) == 120  # a short video: the base limit
    assert time_limit(limits, 3 * 3600.0) == 3600  # 3 h of video: capped at 1 h
    assert time_limit(limits, 1000.0) == 500
    for unknown in (None, 0.0, float("nan"), float("inf")):
        assert time_limit(limits, unknown) is None  # no usable duration: the base stands
    assert time_limit({**limits, "max_timeout_s": 120}, 1000.0) is None  # no room to scale
    assert time_limit({"timeout_s": 120}, 1000.0) is None  # scaling not configured


def test_the_header_alone_gives_the_limit(synthetic_videos, tmp_path):
    limits = {"timeout_s": 0.5, "seconds_per_video_second": 1.0, "max_timeout_s": 3600}
    path = synthetic_videos["exo"]
    with av.open(str(path)) as container:
        duration = container.duration / 1_000_000
    assert header_time_limit({**limits, "path": str(path)}) == pytest.approx(duration)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert header_time_limit({**limits, "path": str(text)}) is None  # the probe reports why
