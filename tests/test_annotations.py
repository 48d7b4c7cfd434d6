"""Annotation import: time formats, column mapping, per-row quarantine, no unpickling."""

import json
import math
import pickle
import shutil

import pytest

from lakehouse.core import quarantine as q
from lakehouse.core.errors import ConfigError
from lakehouse.core.timecode import TimeParseError, parse_time
from lakehouse.ingest.annotation_files import ColumnMapping
from lakehouse.ingest.sources import register_source


@pytest.mark.parametrize(
    ("value", "unit", "fps", "seconds"),
    [
        (12.5, "seconds", None, 12.5),
        ("12.5", "seconds", None, 12.5),
        (90, "frames", 30.0, 3.0),
        ("00:01:02.50", "seconds", None, 62.5),
        ("01:02.25", "seconds", None, 62.25),
        ("1:00:00.00", "seconds", None, 3600.0),
        ("00:00:01:15", "seconds", 30.0, 1.5),
        ("00:00:01;15", "seconds", 30.0, 1.5),
    ],
)
def test_parse_time(value, unit, fps, seconds):
    assert parse_time(value, unit, fps) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "unit", "fps"),
    [
        ("soon", "seconds", None),
        ("00:61:00.0", "seconds", None),
        (10, "frames", None),
        ("00:00:01:40", "seconds", 30.0),
        ("00:00:01:05", "seconds", None),
        ("", "seconds", None),
    ],
)
def test_parse_time_errors(value, unit, fps):
    with pytest.raises(TimeParseError):
        parse_time(value, unit, fps)


def test_nan_passes_through_for_validation():
    assert math.isnan(parse_time(float("nan")))


def _folder(tmp_path, synthetic_videos):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(synthetic_videos["exo"], videos / "dance.mp4")  # 4.0 s at 25 fps
    shutil.copy(synthetic_videos["ego"], videos / "table.mp4")  # 3.0 s at 15 fps
    return videos


def _run(lh, folder, files, mapping=None):
    source = register_source(lh, folder, name="t", annotations=files, mapping=mapping)
    from lakehouse.pipeline import run_stages

    run_stages(lh, source)
    return source


def _clips(lh):
    return {
        (r["external_id"] or r["uri"].rsplit("/", 1)[-1], r["start_s"], r["end_s"]): r
        for r in lh.read("clips").to_pylist()
    }


def test_csv_with_seconds_frames_and_timestamps(lh, tmp_path, synthetic_videos):
    folder = _folder(tmp_path, synthetic_videos)
    (folder / "seconds.csv").write_text(
        "video,start_s,end_s,caption,level1\n"
        "dance.mp4,0.5,2.5,a dancer spins,Dance\n"
        "dance.mp4,3,2,inverted,Dance\n"
        "dance.mp4,-1,2,negative,Dance\n"
        "dance.mp4,nan,2,not a number,Dance\n"
        "dance.mp4,1,9,past the end,Dance\n"
    )
    (folder / "frames.csv").write_text(
        "file,start_frame,end_frame,fps,short_caption\n"
        "table.mp4,15,30,15,hand reaches\n"
        "dance.mp4,25,50,,uses the video's fps\n"
    )
    (folder / "stamps.csv").write_text(
        "path,start,end,description,view\n"
        "videos/table.mp4,00:00:00.00,00:00:01.50,whole scene,first-person\n"
        "missing/elsewhere.mp4,00:00:10.00,00:00:20.00,not here,third-person\n"
    )
    _run(lh, folder, [folder / "seconds.csv", folder / "frames.csv", folder / "stamps.csv"])
    clips = _clips(lh)
    assert clips[("dance.mp4", 0.5, 2.5)]["taxonomy_l1"] == "Dance"
    assert clips[("table.mp4", 1.0, 2.0)]["start_frame"] == 15
    assert ("dance.mp4", 1.0, 2.0) in clips
    assert clips[("table.mp4", 0.0, 1.5)]["viewpoint"] == "ego"
    missing = clips[("elsewhere.mp4", 10.0, 20.0)]
    assert missing["probe_status"] == "not_probed" and missing["viewpoint"] == "exo"
    assert missing["uri"].endswith("missing/elsewhere.mp4") and missing["video_id"].startswith("u")
    assert len(clips) == 5
    reasons = {
        (r["input_uri"].rsplit("/", 1)[-1], r["locator"]): r["reason_code"]
        for r in lh.read("quarantine").to_pylist()
    }
    assert reasons == {
        ("seconds.csv", "line 3"): q.INVERTED_SPAN,
        ("seconds.csv", "line 4"): q.NEGATIVE_SPAN,
        ("seconds.csv", "line 5"): q.NAN_SPAN,
        ("seconds.csv", "line 6"): q.SPAN_OUT_OF_RANGE,
    }
    texts = {r["short_caption"] for r in lh.read("annotations").to_pylist()}
    assert {"a dancer spins", "hand reaches"} <= texts


def test_explicit_mapping_file(lh, tmp_path, synthetic_videos):
    folder = _folder(tmp_path, synthetic_videos)
    (folder / "odd.tsv").write_text(
        "clip\tbegin_at\tfinish_at\ttext\tkind\nc1\t00:00:01.00\t00:00:02.00\thello\tLocomotion\n"
    )
    (folder / "odd_videos.tsv").write_text("")
    mapping_file = tmp_path / "mapping.toml"
    mapping_file.write_text(
        '[mapping]\nformat = "tsv"\nclip_id = "clip"\nstart = "begin_at"\nend = "finish_at"\n'
        'time_unit = "timestamp"\nfile = "video_name"\n'
        '[mapping.fields]\nshort_caption = "text"\ntaxonomy_l2 = "kind"\n'
    )
    (folder / "odd.tsv").write_text(
        "video_name\tclip\tbegin_at\tfinish_at\ttext\tkind\n"
        "dance.mp4\tc1\t00:00:01.00\t00:00:02.00\thello\tLocomotion\n"
    )
    _run(lh, folder, [folder / "odd.tsv"], mapping=ColumnMapping.load(mapping_file))
    (ann,) = lh.read("annotations").to_pylist()
    assert (ann["external_id"], ann["start_s"], ann["end_s"]) == ("c1", 1.0, 2.0)
    assert ann["short_caption"] == "hello" and ann["taxonomy_l2"] == "Locomotion"
    assert json.loads(ann["fields_json"])["kind"] == "Locomotion"


def test_bad_mapping_is_a_clear_error(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[mapping]\nstart_column = "x"\n')
    with pytest.raises(ConfigError, match="Unknown mapping keys"):
        ColumnMapping.load(path)


def test_bad_rows_are_quarantined_one_by_one(lh, tmp_path, synthetic_videos):
    folder = _folder(tmp_path, synthetic_videos)
    good = {"clip_id": "c_ok", "file": "dance.mp4", "start_s": 0, "end_s": 1, "caption": "ok"}
    lines = [
        json.dumps(good).encode(),
        b'{"clip_id": "c_bad_json", "file": ',
        json.dumps({**good, "clip_id": "c_utf8", "caption": "X"})
        .encode()
        .replace(b"X", b"\xff\xfe"),
        b"[1, 2, 3]",
        json.dumps({**good, "clip_id": "c_nofile", "file": None}).encode(),
        json.dumps({**good, "clip_id": "c_ok2", "start_s": 2, "end_s": 3}).encode(),
        json.dumps({**good, "clip_id": "c_ok"}).encode(),
    ]
    (folder / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (folder / "b.csv").write_bytes(
        b"file,start_s,end_s,caption\n"
        b"dance.mp4,0,1,fine\n"
        b"dance.mp4,1,2,caf\xe9 latin-1\n"
        b"dance.mp4,1,2,too,many,cells\n"
        b"dance.mp4,2,3,also fine\n"
    )
    _run(lh, folder, [folder / "a.jsonl", folder / "b.csv"])
    anns = lh.read("annotations").to_pylist()
    assert sorted(a["external_id"] or a["short_caption"] for a in anns) == [
        "also fine",
        "c_ok",
        "c_ok2",
        "fine",
    ]
    reasons = sorted(
        (r["input_uri"].rsplit("/", 1)[-1], r["locator"], r["reason_code"])
        for r in lh.read("quarantine").to_pylist()
    )
    assert reasons == [
        ("a.jsonl", "line 2", q.BAD_JSON),
        ("a.jsonl", "line 3", q.BAD_UTF8),
        ("a.jsonl", "line 4", q.BAD_ROW),
        ("a.jsonl", "line 5", q.MISSING_VIDEO_REF),
        ("a.jsonl", "line 7", q.BAD_ROW),  # duplicate clip id
        ("b.csv", "line 3", q.BAD_UTF8),
        ("b.csv", "line 4", q.BAD_ROW),
    ]


class Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("name", ["labels.pkl", "labels.pt", "labels.jsonl", "labels.bin"])
def test_pickled_files_are_refused_without_loading(
    lh, tmp_path, synthetic_videos, name, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    folder = _folder(tmp_path, synthetic_videos)
    (folder / name).write_bytes(pickle.dumps([Boom()]))
    _run(lh, folder, [folder / name])
    assert not (tmp_path / "PWNED").exists()
    (row,) = lh.read("quarantine").to_pylist()
    assert row["reason_code"] == q.PICKLE_REFUSED


def test_unsupported_format(lh, tmp_path, synthetic_videos):
    folder = _folder(tmp_path, synthetic_videos)
    (folder / "labels.xml").write_text("<clips/>")
    _run(lh, folder, [folder / "labels.xml"])
    assert lh.read("quarantine").column("reason_code").to_pylist() == [q.UNSUPPORTED_FORMAT]


def test_reimport_after_editing_the_file_updates_and_removes_rows(lh, tmp_path, synthetic_videos):
    folder = _folder(tmp_path, synthetic_videos)
    path = folder / "a.csv"
    path.write_text(
        "file,start_s,end_s,clip_id,caption\ndance.mp4,0,1,c1,one\ndance.mp4,1,2,c2,two\n"
    )
    source = _run(lh, folder, [path])
    path.write_text("file,start_s,end_s,clip_id,caption\ndance.mp4,0,1,c1,ONE\n")
    from lakehouse.pipeline import run_stages

    run_stages(lh, source)
    anns = lh.read("annotations").to_pylist()
    assert [(a["external_id"], a["short_caption"]) for a in anns] == [("c1", "ONE")]
    annotated = lh.read("clips", filter="segmentation = 'annotation'")
    assert annotated.column("external_id").to_pylist() == ["c1"]
