import pytest

from lakehouse.core.ids import clip_id, video_id_from_uri
from lakehouse.ingest.clips import segment


def _spans(out):
    return [(round(a, 3), round(b, 3), how) for a, b, how in out]


def test_short_video_without_cuts_is_one_clip():
    assert _spans(segment(12.0, [], min_s=2, max_s=30, window_s=10)) == [(0, 12, "whole_video")]


def test_long_video_without_cuts_falls_back_to_fixed_windows():
    out = segment(45.0, [], min_s=2, max_s=30, window_s=10)
    assert _spans(out) == [
        (0, 9, "fixed_window"),
        (9, 18, "fixed_window"),
        (18, 27, "fixed_window"),
        (27, 36, "fixed_window"),
        (36, 45, "fixed_window"),
    ]


def test_cuts_split_and_short_scenes_merge():
    out = segment(20.0, [5.0, 5.5, 12.0, 19.5], min_s=2, max_s=30, window_s=10)
    assert _spans(out) == [(0, 5.5, "scene_cut"), (5.5, 12, "scene_cut"), (12, 20, "scene_cut")]


def test_long_scene_between_cuts_is_windowed():
    out = segment(50.0, [5.0], min_s=2, max_s=30, window_s=10)
    assert out[0] == (0.0, 5.0, "scene_cut")
    assert all(how == "fixed_window" for _, _, how in out[1:])
    assert out[-1][1] == 50.0 and len(out) == 6
    assert all(b - a <= 30 for a, b, _ in out)


def test_zero_duration():
    assert segment(0.0, [], min_s=2, max_s=30, window_s=10) == []


@pytest.mark.parametrize("start,end", [(0.0, 1.5), (1.2345, 2.0), (3.0, None)])
def test_clip_id_is_deterministic_and_readable(start, end):
    vid = "0123456789abcdef0123456789abcdef"
    assert clip_id(vid, start, end) == clip_id(vid, start, end)
    assert clip_id(vid, start, end).startswith("0123456789abcdef0123-")
    assert clip_id(vid, start, end) != clip_id(vid, start + 0.01, end)


def test_uri_video_ids_are_not_content_ids():
    assert video_id_from_uri("/a.mp4").startswith("u") and len(video_id_from_uri("/a.mp4")) == 32
