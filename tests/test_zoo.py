"""A zoo of bad inputs beside good files: each bad one quarantined with its reason, the good ones
ingested, nothing hangs, and re-running changes nothing."""

import os
import shutil
import time
from pathlib import Path

import pytest

from lakehouse.api import Lakehouse
from lakehouse.core import quarantine as q
from lakehouse.core.paths import local_path
from lakehouse.media import synth
from lakehouse.media.synth import Scene


@pytest.fixture
def zoo(tmp_path, synthetic_videos):
    folder = tmp_path / "zoo"
    (folder / "good").mkdir(parents=True)
    shutil.copy(synthetic_videos["ego"], folder / "good" / "ego.mp4")
    shutil.copy(synthetic_videos["exo"], folder / "good" / "exo_named_wrong.avi")
    shutil.copy(synthetic_videos["ego"], folder / "good" / "ego_copy.mp4")  # same content
    synth.write_video(folder / "good" / "rotated.mov", [Scene("exo", 2, 1)], seed=9, rotation=270)
    (folder / "empty.mp4").write_bytes(b"")
    synth.write_truncated(synthetic_videos["exo"], folder / "truncated.mp4")
    synth.write_damaged(synthetic_videos["exo"], folder / "damaged.mp4")
    synth.write_text_as_video(folder / "notes.mp4")
    synth.write_audio_only(folder / "voice_memo.m4a")
    # a name that is not UTF-8: ingested like any other file, its name kept losslessly
    synth.write_video(folder / "latin1.mp4", [Scene("ego", 2, 2)], seed=11)
    os.rename(folder / "latin1.mp4", os.path.join(os.fsencode(folder), b"caf\xe9.mp4"))
    os.symlink(folder / "loop.mp4", folder / "loop.mp4")
    os.symlink(folder, folder / "good" / "back_to_top")
    os.symlink(folder / "nowhere.mp4", folder / "dangling.mp4")
    os.mkfifo(folder / "pipe.mp4")
    return folder


EXPECTED = {
    "empty.mp4": q.EMPTY_FILE,
    "truncated.mp4": (q.UNREADABLE_CONTAINER, q.DECODE_ERROR),
    "damaged.mp4": q.DECODE_ERROR,
    "notes.mp4": q.NOT_A_VIDEO,
    "voice_memo.m4a": q.NO_VIDEO_STREAM,
    "loop.mp4": q.SYMLINK_LOOP,
    "dangling.mp4": q.DANGLING_SYMLINK,
    "pipe.mp4": q.NOT_REGULAR_FILE,
}


def test_zoo_is_quarantined_and_good_files_are_ingested(lh, zoo):
    lh.ingest(zoo, source="zoo")
    quarantined = {os.path.basename(r["input_uri"]): r for r in lh.read("quarantine").to_pylist()}
    assert set(quarantined) == set(EXPECTED)
    for name, reason in EXPECTED.items():
        allowed = reason if isinstance(reason, tuple) else (reason,)
        assert quarantined[name]["reason_code"] in allowed, (name, quarantined[name])
        assert quarantined[name]["message"]
    videos = lh.read("videos").to_pylist()
    assert sorted(v["relpath"] for v in videos) == [
        "caf%E9.mp4",
        "good/ego.mp4",
        "good/exo_named_wrong.avi",
        "good/rotated.mov",
    ]
    latin1 = next(v for v in videos if v["relpath"] == "caf%E9.mp4")
    assert os.fsencode(local_path(latin1["uri"])) == os.path.join(os.fsencode(zoo), b"caf\xe9.mp4")
    ego = next(v for v in videos if v["relpath"] == "good/ego.mp4")
    assert ego["aliases"] == ["good/ego_copy.mp4"]
    rotated = next(v for v in videos if v["relpath"] == "good/rotated.mov")
    assert rotated["rotation"] == 270
    assert lh.count("clips") == 4 and lh.count("keyframes") >= 4
    latin1_clip = lh.read("clips", filter=f"video_id = '{latin1['video_id']}'").to_pylist()
    assert lh.count("keyframes", f"clip_id = '{latin1_clip[0]['clip_id']}'") >= 1  # decoded

    before = lh.versions()
    results = lh.ingest(zoo, source="zoo")
    assert all(not r.write.changed for r in results)
    assert lh.versions() == before


def test_annotations_of_broken_or_missing_files_are_kept_and_marked(lh, zoo):
    labels = zoo / "labels.csv"
    labels.write_text(
        "file,start_s,end_s,caption\n"
        "good/ego.mp4,0,1,usable\n"
        "truncated.mp4,0,1,file is here but broken\n"
        "not_here.mp4,0,1,file is elsewhere\n"
    )
    lh.ingest(zoo, source="zoo", annotations=[labels])
    rows = {
        r["short_caption"]: r
        for r in lh.sql(
            "select short_caption, probe_status, uri from clip_facts where segmentation = ?",
            ["annotation"],
        ).to_pylist()
    }
    assert rows["usable"]["probe_status"] == "ok"
    assert rows["file is here but broken"]["probe_status"] == "quarantined"
    assert rows["file is here but broken"]["uri"] == str(zoo / "truncated.mp4")
    assert rows["file is elsewhere"]["probe_status"] == "not_probed"
    assert rows["file is elsewhere"]["uri"] == str(zoo / "not_here.mp4")


def test_fixing_a_file_clears_its_quarantine_row(lh, zoo, synthetic_videos):
    lh.ingest(zoo, source="zoo")
    os.unlink(zoo / "truncated.mp4")
    shutil.copy(synthetic_videos["cuts"], zoo / "truncated.mp4")
    lh.ingest(zoo, source="zoo")
    names = {os.path.basename(u) for u in lh.read("quarantine").column("input_uri").to_pylist()}
    assert "truncated.mp4" not in names
    assert lh.count("videos", "relpath = 'truncated.mp4'") == 1


def test_adding_files_adds_only_them(lh, tmp_path, synthetic_videos):
    folder = tmp_path / "grow"
    folder.mkdir()
    shutil.copy(synthetic_videos["ego"], folder / "a.mp4")
    first = lh.ingest(folder, source="grow")
    assert first[0].details["probed"] == 1
    ids_before = set(lh.read("clips").column("clip_id").to_pylist())
    shutil.copy(synthetic_videos["cuts"], folder / "b.mp4")
    second = lh.ingest(folder, source="grow")
    assert second[0].details["probed"] == 1  # only the new file was read
    assert second[0].write.inserted == 1 and second[0].write.updated == 0
    ids_after = set(lh.read("clips").column("clip_id").to_pylist())
    assert ids_before < ids_after
    new_clips = lh.read("clips", filter="uri LIKE '%b.mp4'").to_pylist()
    assert {c["segmentation"] for c in new_clips} == {"scene_cut"} and len(new_clips) == 3


# -- the hard zoo: damage that hides, resource bombs, hostile names and file kinds ----------


@pytest.fixture
def hard_zoo(tmp_path, synthetic_videos):
    folder = tmp_path / "hard"
    folder.mkdir()
    ego = synthetic_videos["ego"]
    shutil.copy(ego, folder / "ego.mp4")
    os.link(folder / "ego.mp4", folder / "ego_hardlink.mp4")  # same file: an alias
    frames = synth.write_vfr(folder / "vfr.mp4")
    shutil.copy(synthetic_videos["exo"], folder / "café clip ☕.mp4")
    synth.write_video(folder / "two\nlines.mp4", [Scene("exo", 1, 2)], seed=21)
    shutil.copy(synthetic_videos["cuts"], folder / "really_a_video.txt")  # wrong extension
    (folder / "folder.mp4").mkdir()  # a folder with a video's name: walked into
    synth.write_video(folder / "folder.mp4" / "inside.mp4", [Scene("ego", 1, 1)], seed=22)
    synth.write_without_index(ego, folder / "no_moov.mp4")
    synth.write_concealed_damage(ego, folder / "concealed.mp4")
    synth.write_huge(folder / "huge_8k.mp4")
    shutil.copy(synthetic_videos["cuts"], folder / "stall.mp4")  # its probe blocks for good
    Path(folder / "header_only.mp4").write_bytes(Path(ego).read_bytes()[:64])
    Path(folder / "playlist.mp4").write_text("#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n")
    Path(folder / "pickle.mp4").write_bytes(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00")
    os.symlink("/dev/zero", folder / "zero.mp4")
    os.mkfifo(folder / "fifo.mkv")
    return folder, frames


HARD_EXPECTED = {
    "no_moov.mp4": q.UNREADABLE_CONTAINER,
    "concealed.mp4": q.DECODE_ERROR,
    "huge_8k.mp4": q.MEMORY_LIMIT,
    "stall.mp4": q.TIMEOUT,
    "header_only.mp4": q.UNREADABLE_CONTAINER,
    "playlist.mp4": q.NOT_A_VIDEO,
    "pickle.mp4": q.NOT_A_VIDEO,
    "zero.mp4": q.NOT_REGULAR_FILE,
    "fifo.mkv": q.NOT_REGULAR_FILE,
}


@pytest.mark.slow
def test_hard_zoo_hidden_damage_and_resource_bombs_are_quarantined(config, hard_zoo, monkeypatch):
    import dataclasses

    from lakehouse.ingest import videos as videos_stage

    folder, vfr_frames = hard_zoo
    # per-file limits sized for small clips: 1200 MB of memory, 10 s of time whatever the
    # length (a cap equal to the base). The time limit is met by a probe that blocks for sure
    # (worker_tasks.probe_or_stall on stall.mp4), not by a video merely long: a long one is
    # probed inside any limit on a machine fast enough
    monkeypatch.setattr(videos_stage, "PROBE_TASK", "worker_tasks:probe_or_stall")
    limits = dataclasses.replace(
        config.ingest, worker_memory_mb=1200, probe_timeout_s=10, probe_max_timeout_s=10
    )
    lh = Lakehouse(dataclasses.replace(config, ingest=limits))
    began = time.monotonic()
    lh.ingest(folder, source="hard")
    assert time.monotonic() - began < 120  # nothing hung
    rows = lh.read("quarantine").to_pylist()
    quarantined = {os.path.basename(r["input_uri"]): r for r in rows}
    assert {k: v["reason_code"] for k, v in quarantined.items()} == HARD_EXPECTED
    assert "error" in quarantined["concealed.mp4"]["message"]  # found in FFmpeg's log
    assert "worker_memory_mb" in quarantined["huge_8k.mp4"]["message"]
    assert "10 s per-file time limit" in quarantined["stall.mp4"]["message"]
    videos = {v["relpath"]: v for v in lh.read("videos").to_pylist()}
    assert sorted(videos) == [
        "café clip ☕.mp4",
        "ego.mp4",
        "folder.mp4/inside.mp4",
        "really_a_video.txt",
        "two\nlines.mp4",
        "vfr.mp4",
    ]
    assert videos["ego.mp4"]["aliases"] == ["ego_hardlink.mp4"]
    assert videos["vfr.mp4"]["is_vfr"] and videos["vfr.mp4"]["num_frames"] == vfr_frames
    assert lh.count("clips", "probe_status = 'ok'") >= len(videos)
    names = {r["uri"] for r in lh.sql("select uri from clip_facts").to_pylist()}
    assert str(folder / "two\nlines.mp4") in names and str(folder / "café clip ☕.mp4") in names
    assert lh.count("keyframes") >= len(videos)


def test_a_long_video_gets_time_for_its_length_up_to_the_cap(
    config, tmp_path, synthetic_videos, monkeypatch
):
    import dataclasses

    from lakehouse.ingest import videos as videos_stage
    from lakehouse.ingest.sources import register_source
    from lakehouse.ingest.videos import ingest_videos

    folder = tmp_path / "long"
    folder.mkdir()
    seconds = synth.write_long(synthetic_videos["ego"], folder / "stall_ten_minutes.mp4", 200)
    assert seconds == 600.0  # 9000 frames
    # a 1 s base limit, 0.1 s per second of video (60 s for this one) …
    scaled = dataclasses.replace(
        config.ingest, probe_timeout_s=1, probe_seconds_per_video_second=0.1
    )

    # … but capped at 2 s: a probe that asks for its 60 s and then blocks for good (as a probe
    # that takes too long would, on any machine) is stopped at the cap, not at 60 s
    monkeypatch.setattr(videos_stage, "PROBE_TASK", "worker_tasks:probe_or_stall")
    lh = Lakehouse(
        dataclasses.replace(config, ingest=dataclasses.replace(scaled, probe_max_timeout_s=2))
    )
    source = register_source(lh, folder, name="long")
    began = time.monotonic()
    result = ingest_videos(lh, source, run_id="capped")
    assert time.monotonic() - began < 30  # stopped at the cap, not at the 60 s scaled limit
    assert result.reasons == {q.TIMEOUT: 1} and lh.count("videos") == 0
    (row,) = lh.read("quarantine").to_pylist()
    assert row["reason_code"] == q.TIMEOUT
    assert "2 s per-file time limit" in row["message"]
    assert "probe_max_timeout_s" in row["message"]

    # the real probe, with room up to 120 s: the 60 s its length earns is enough (it needs a
    # few seconds here), so the file is ingested and no longer quarantined
    monkeypatch.setattr(videos_stage, "PROBE_TASK", "lakehouse.media.probe:probe_file")
    lh = Lakehouse(
        dataclasses.replace(config, ingest=dataclasses.replace(scaled, probe_max_timeout_s=120))
    )
    result = ingest_videos(lh, source, run_id="scaled")  # a timeout is read again
    assert result.quarantined == 0 and lh.count("quarantine") == 0
    (video,) = lh.read("videos").to_pylist()
    assert video["num_frames"] == 9000 and video["duration_s"] == pytest.approx(600.0)
    assert video["decode_verified"]


# -- the annotation zoo ----------------------------------------------------------------------


def test_annotation_zoo_quarantines_each_bad_row_and_keeps_every_good_one(
    lh, tmp_path, synthetic_videos
):
    import io
    import json
    import pickle
    import zipfile

    folder = tmp_path / "annotated"
    folder.mkdir()
    shutil.copy(synthetic_videos["exo"], folder / "dance.mp4")  # 4 s
    good = {"clip_id": "ok1", "file": "dance.mp4", "start_s": 0, "end_s": 1, "caption": "fine"}
    lines = [
        json.dumps(good),  # 1
        json.dumps({**good, "clip_id": "nan", "start_s": float("nan")}),  # 2 NaN
        '{"clip_id": "inf", "file": "dance.mp4", "start_s": 0, "end_s": Infinity}',  # 3
        '{"clip_id": "huge", "file": "dance.mp4", "start_s": 0, "end_s": 1e400}',  # 4 → inf
        json.dumps({**good, "clip_id": "neg", "start_s": -1, "end_s": 1}),  # 5
        json.dumps({**good, "clip_id": "inv", "start_s": 2, "end_s": 1}),  # 6
        json.dumps({**good, "clip_id": "empty", "start_s": 1, "end_s": 1}),  # 7
        json.dumps({**good, "clip_id": "past", "start_s": 3, "end_s": 99}),  # 8
        json.dumps({**good, "clip_id": "words", "start_s": "abc", "end_s": "1"}),  # 9
        json.dumps({**good, "clip_id": "bools", "start_s": True, "end_s": False}),  # 10
        json.dumps({**good, "clip_id": ["a", "list"]}),  # 11
        "[" * 100_000 + "]" * 100_000,  # 12 nested past Python's recursion limit
        '{"clip_id": "lone", "file": "dance.mp4", "caption": "\\ud800"}',  # 13 no UTF-8 form
        "\ufeff" + json.dumps({**good, "clip_id": "bom"}),  # 14 a BOM mid-file
        '{"clip_id": "cut off", "file": "dance.m',  # 15
        json.dumps({**good, "clip_id": "ok2", "start_s": 1, "end_s": 2, "caption": "a\x00b"}),
        json.dumps({**good, "clip_id": "elsewhere", "file": "../../etc/passwd"}),  # 17 kept
        json.dumps({**good, "clip_id": "ok1", "caption": "again"}),  # 18 duplicate id
    ]
    data = "\r\n".join(lines).encode() + b"\n" + b'{"clip_id": "bad\xff", "file": "x"}\n'  # 19
    (folder / "labels.jsonl").write_bytes(data)
    (folder / "labels.csv").write_bytes(
        b"file,start_s,end_s,caption\n"
        b"dance.mp4,2,3,fine csv\n"
        b"dance.mp4,1,2," + b"y" * 200_000 + b"\n"  # past the CSV field limit
        b"dance.mp4,3,4,also fine\n"
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("model/data.pkl", pickle.dumps({"x": 1}))
    (folder / "weights.csv").write_bytes(archive.getvalue())  # a torch file named .csv
    (folder / "labels.pt").write_bytes(pickle.dumps([1, 2]))
    files = ["labels.jsonl", "labels.csv", "weights.csv", "labels.pt"]
    lh.ingest(folder, source="ann", annotations=[folder / f for f in files])

    kept = {r["external_id"] or r["short_caption"]: r for r in lh.read("annotations").to_pylist()}
    assert set(kept) == {"ok1", "ok2", "elsewhere", "fine csv", "also fine"}
    assert kept["ok1"]["short_caption"] == "fine"  # the first of a duplicate id wins
    assert kept["ok2"]["short_caption"] == "a\x00b"
    assert not kept["elsewhere"]["video_found"]  # kept as not here; never opened
    reasons = {
        (r["input_uri"].rsplit("/", 1)[-1], r["locator"]): r["reason_code"]
        for r in lh.read("quarantine").to_pylist()
    }
    expected = {
        ("labels.jsonl", f"line {n}"): code
        for n, code in [
            (2, q.NAN_SPAN),
            (3, q.NAN_SPAN),
            (4, q.NAN_SPAN),
            (5, q.NEGATIVE_SPAN),
            (6, q.INVERTED_SPAN),
            (7, q.INVERTED_SPAN),
            (8, q.SPAN_OUT_OF_RANGE),
            (9, q.BAD_SPAN),
            (10, q.BAD_SPAN),
            (11, q.BAD_ROW),
            (12, q.BAD_JSON),
            (13, q.BAD_UTF8),
            (14, q.BAD_JSON),
            (15, q.BAD_JSON),
            (18, q.BAD_ROW),
            (19, q.BAD_UTF8),
        ]
    }
    expected[("labels.csv", "line 3")] = q.BAD_ROW
    expected[("weights.csv", "")] = q.PICKLE_REFUSED
    expected[("labels.pt", "")] = q.PICKLE_REFUSED
    assert reasons == expected
    assert lh.count("clips", "segmentation = 'annotation'") == 5
