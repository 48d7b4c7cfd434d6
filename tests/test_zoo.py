"""A zoo of bad inputs beside good files: each bad one quarantined with its reason, the good ones
ingested, nothing hangs, and re-running changes nothing."""

import os
import shutil

import pytest

from lakehouse import quarantine as q
from lakehouse import synth
from lakehouse.synth import Scene


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
    shutil.copy(synthetic_videos["ego"], os.path.join(os.fsencode(folder), b"bad\xffname.mp4"))
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
    "bad\\xffname.mp4": q.NON_UTF8_NAME,
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
        "good/ego.mp4",
        "good/exo_named_wrong.avi",
        "good/rotated.mov",
    ]
    ego = next(v for v in videos if v["relpath"] == "good/ego.mp4")
    assert ego["aliases"] == ["good/ego_copy.mp4"]
    rotated = next(v for v in videos if v["relpath"] == "good/rotated.mov")
    assert rotated["rotation"] == 270
    assert lh.count("clips") == 3 and lh.count("keyframes") >= 3

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
