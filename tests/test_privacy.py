"""privacy_status from per-frame face detections (every branch), the refusal reasons of
``privacy="refuse"``, and what a ``privacy="blur"`` export records for a clip whose faces the
blurrer does not find."""

import dataclasses
import json
import shutil
import tarfile

import numpy as np
import pytest

from lakehouse.core.config import Config, SignalSettings
from lakehouse.core.errors import InputError
from lakehouse.enrich.signals import PRIVACY_STATUSES, privacy_status, summarize
from lakehouse.media.detectors import FrameResult
from lakehouse.subsets.privacy import check_mode, refusal

SETTINGS = SignalSettings()  # face_review_score 0.8


def frame(*scores: float) -> FrameResult:
    """A 640x360 frame with one face box per score."""
    result = FrameResult(640, 360)
    result.faces = [{"score": s, "box": [0.4, 0.2, 0.5, 0.4]} for s in scores]
    result.small_gray = np.zeros((90, 160), np.float32)
    return result


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([], "needs_review"),  # nothing analysed: nobody has looked
        ([frame()], "clear"),
        ([frame(), frame(), frame()], "clear"),
        ([frame(), frame(0.93), frame()], "faces_visible"),  # one confident face
        ([frame(0.8)], "faces_visible"),  # the review score itself is confident
        ([frame(), frame(0.62), frame()], "needs_review"),  # one weak face
        ([frame(0.55, 0.6)], "needs_review"),  # two weak faces, but in one frame
        ([frame(0.55), frame(), frame(0.51)], "faces_visible"),  # weak faces in two frames
    ],
)
def test_privacy_status_rules(frames, expected):
    assert privacy_status(frames, SETTINGS) == expected


def test_privacy_status_follows_the_review_score():
    strict = dataclasses.replace(SETTINGS, face_review_score=0.95)
    assert privacy_status([frame(0.93)], SETTINGS) == "faces_visible"
    assert privacy_status([frame(0.93)], strict) == "needs_review"
    assert privacy_status([frame(0.96)], strict) == "faces_visible"


def test_the_clip_summary_carries_the_status_and_the_faces():
    analysed = [({"time_s": 2.0 * i}, f) for i, f in enumerate([frame(), frame(0.7), frame()])]
    summary = summarize(analysed, SETTINGS)
    assert summary["privacy_status"] == "needs_review"
    assert summary["face_frac"] == pytest.approx(1 / 3)
    assert summary["max_faces"] == summary["max_persons"] == 1
    assert summary["max_face_score"] == pytest.approx(0.7)
    assert summary["max_face_area"] == pytest.approx(0.1 * 0.2)
    none = summarize([({"time_s": 0.0}, frame())], SETTINGS)
    assert none["privacy_status"] == "clear" and none["max_face_score"] is None
    assert none["max_persons"] == 0


def test_only_clear_clips_pass_a_refusing_export():
    assert refusal("clear") is None
    for status in set(PRIVACY_STATUSES) - {"clear"}:
        assert status in refusal(status)
    assert "no signals" in refusal(None)
    check_mode(None, "parquet")
    check_mode("refuse", "jsonl")
    check_mode("blur", "webdataset")
    with pytest.raises(InputError, match="WebDataset"):
        check_mode("blur", "parquet")
    with pytest.raises(InputError, match="Unknown privacy option"):
        check_mode("hide", "webdataset")


@pytest.fixture
def flagged_lh(config, synthetic_videos, tmp_path):
    """Two generated clips with signals: a tabletop left ``clear`` and a stick figure whose row
    is set to ``faces_visible``, as if the keyframe detector had seen a face there."""
    pytest.importorskip("mediapipe", reason="the signals extra (mediapipe) is not installed")
    from lakehouse.api import Lakehouse
    from lakehouse.enrich.signals import compute_signals
    from lakehouse.ingest.sources import register_source
    from lakehouse.pipeline import run_stages

    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(synthetic_videos["ego"], folder / "a.mp4")
    shutil.copy(synthetic_videos["exo"], folder / "b.mp4")
    subsets = tmp_path / "subsets"
    subsets.mkdir()
    (subsets / "everything.sql").write_text("select clip_id from clip_facts\n")
    (subsets / "flagged.sql").write_text(
        "select clip_id from clip_facts where privacy_status = 'faces_visible'\n"
    )
    lh = Lakehouse(Config.from_dict({**config.to_dict(), "subset_dirs": [str(subsets)]}))
    source = register_source(lh, folder, name="cam")
    run_stages(lh, source, run_id="r1", embed=False)
    compute_signals(lh, source, run_id="s1")
    rows = {r["uri"].rsplit("/", 1)[-1]: r for r in lh.sql("select * from clip_facts").to_pylist()}
    assert {r["privacy_status"] for r in rows.values()} == {"clear"}  # no face anywhere
    flagged = lh.read("signals", filter=f"clip_id = '{rows['b.mp4']['clip_id']}'").to_pylist()[0]
    lh.upsert("signals", [{**flagged, "privacy_status": "faces_visible", "max_faces": 1}])
    statuses = {
        r["clip_id"]: r["privacy_status"]
        for r in lh.sql("select clip_id, privacy_status from clip_facts").to_pylist()
    }
    assert statuses == {rows["a.mp4"]["clip_id"]: "clear", flagged["clip_id"]: "faces_visible"}
    return lh, rows["a.mp4"]["clip_id"], flagged["clip_id"]


def test_a_blur_export_of_a_clip_whose_faces_the_blurrer_misses(flagged_lh, tmp_path):
    """The keyframe detector (``signals.face_min_confidence``, 480 px frames) and the blurrer
    (0.3, every frame at the video's size) can disagree: here the signals row says
    ``faces_visible`` and the blurrer finds nothing to blur in the generated video. Nothing
    would be hidden, so the clip is left out with a privacy reason; the clear clip goes out."""
    from lakehouse.subsets.export import export_subset

    lh, clear, flagged = flagged_lh
    lh.materialize_subset("everything")
    refused = export_subset(lh, "everything", fmt="jsonl", out=tmp_path / "a", privacy="refuse")
    exported = [json.loads(x) for x in (tmp_path / "a" / "everything-v1.jsonl").open()]
    assert [r["clip_id"] for r in exported] == [clear]
    assert [s["clip_id"] for s in refused.skipped] == [flagged]

    blurred = export_subset(lh, "everything", fmt="webdataset", out=tmp_path / "b", privacy="blur")
    assert blurred.samples == 1
    assert [s["clip_id"] for s in blurred.skipped] == [flagged]
    assert "found no face to blur" in blurred.skipped[0]["reason"]
    with tarfile.open(blurred.files[0]) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert set(members) == {f"{clear.replace('.', '_')}.{ext}" for ext in ("mp4", "json")}
    meta = json.loads(members[f"{clear.replace('.', '_')}.json"])
    assert meta["faces_blurred"] == 0 and meta["privacy_status"] == "clear"
    index = json.loads((tmp_path / "b" / "everything-v1.json").read_text())
    assert index["privacy"] == "blur" and index["samples"] == 1
    assert [s["clip_id"] for s in index["skipped"]] == [flagged]


def test_a_refusing_export_with_no_cleared_clip_writes_an_empty_manifest(flagged_lh, tmp_path):
    from lakehouse.subsets.export import export_subset

    lh, _, flagged = flagged_lh
    lh.materialize_subset("flagged")
    refused = export_subset(lh, "flagged", fmt="jsonl", out=tmp_path / "a", privacy="refuse")
    assert [s["clip_id"] for s in refused.skipped] == [flagged]
    assert (tmp_path / "a" / "flagged-v1.jsonl").read_text() == ""


# -- each gate alone: the export's refusal, and the publication check upstream of it ----------


@pytest.mark.parametrize(
    "status", ["faces_visible", "needs_review", "blurred", None, "whatever", "", "CLEAR", "clear "]
)
def test_a_refusing_export_lets_through_nothing_but_the_exact_status_clear(status):
    reason = refusal(status)
    assert reason is not None and reason.startswith("privacy: "), status
    assert ("no signals" in reason) if status is None else (f"privacy: {status};" in reason)


def signal_row(clip: dict, privacy_status: str | None) -> dict:
    """A signals row for ``clip`` whose values are all in range, but the status is the test's."""
    import datetime as dt

    from lakehouse.core import schemas

    row = dict.fromkeys(schemas.SIGNALS.names)
    row.update(
        signal_id=f"{clip['clip_id']}:test",
        clip_id=clip["clip_id"],
        video_id=clip["video_id"],
        source=clip["source"],
        model_id="test-writer",
        frames=2,
        hands_frac=0.5,
        hands_0_frac=0.5,
        hands_1_frac=0.5,
        hands_2_frac=0.0,
        privacy_status=privacy_status,
        computed_at=dt.datetime.now(dt.UTC),
    )
    return row


def manifest_statuses(path) -> dict[str, str | None]:
    return {r["clip_id"]: r["privacy_status"] for r in map(json.loads, path.open())}


@pytest.fixture
def unsigned_lh(config, synthetic_videos, tmp_path):
    """Three generated clips ingested (no embeddings), no signals yet, and a subset file
    ``everything``; returns the lakehouse and its clip rows, sorted by clip id."""
    from lakehouse.api import Lakehouse
    from lakehouse.ingest.sources import register_source
    from lakehouse.pipeline import run_stages

    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(synthetic_videos["cuts"], folder / "three_scenes.mp4")
    subsets = tmp_path / "subsets"
    subsets.mkdir()
    (subsets / "everything.sql").write_text("select clip_id from clip_facts\n")
    lh = Lakehouse(Config.from_dict({**config.to_dict(), "subset_dirs": [str(subsets)]}))
    run_stages(lh, register_source(lh, folder, name="cam"), run_id="r1", embed=False)
    clips = sorted(lh.read("clips").to_pylist(), key=lambda c: c["clip_id"])
    assert len(clips) == 3  # one per scene
    return lh, clips


def test_the_export_gate_alone_leaves_out_statuses_the_publication_check_let_through(
    unsigned_lh, monkeypatch, tmp_path
):
    """The range check refuses an unknown or missing privacy_status; here it is switched off
    and such statuses reach the subset's pinned view. The export's own gate still keeps every
    clip whose status is not exactly ``clear`` out of a ``privacy="refuse"`` export."""
    from lakehouse.core import schemas
    from lakehouse.core.schemas import SIGNAL_TABLES
    from lakehouse.publication import checks
    from lakehouse.publication.publish import publish
    from lakehouse.subsets.export import export_subset

    lh, clips = unsigned_lh
    ids = [c["clip_id"] for c in clips]
    statuses = {ids[0]: "clear", ids[1]: "whatever", ids[2]: None}  # None: written as null
    rows = [signal_row(c, statuses[c["clip_id"]]) for c in clips]
    lh.upsert("signals", rows, schema=schemas.SIGNALS)
    passing = checks.CheckOutcome("signal_values_in_range", True)
    monkeypatch.setattr(checks, "signal_values_in_range", lambda session, source=None: passing)
    published = publish(lh, SIGNAL_TABLES)  # the upstream gate off: readers see the bad statuses
    record = lh.materialize_subset("everything")
    assert record.table_versions["signals"] == published["signals"]

    unchecked = export_subset(lh, "everything", fmt="jsonl", out=tmp_path / "all")
    assert manifest_statuses(tmp_path / "all" / "everything-v1.jsonl") == statuses
    assert unchecked.skipped == []

    refused = export_subset(lh, "everything", fmt="jsonl", out=tmp_path / "a", privacy="refuse")
    cleared = [cid for cid, status in statuses.items() if status == "clear"]
    assert list(manifest_statuses(tmp_path / "a" / "everything-v1.jsonl")) == cleared
    reasons = {s["clip_id"]: s["reason"] for s in refused.skipped}
    assert set(reasons) == set(statuses) - set(cleared)
    assert "privacy: whatever;" in reasons[ids[1]]
    assert "not cleared" in reasons[ids[2]]


def test_the_publication_gate_alone_keeps_an_unknown_status_from_the_export(
    unsigned_lh, monkeypatch, tmp_path
):
    """With the export's own gate switched off (``refusal`` lets every clip through), a
    signals row whose privacy_status no detector produces is refused by the blocking range
    check: nothing is published, readers and the subset's pinned view keep the last good
    status, and the export never sees the bad one."""
    from lakehouse.core import schemas
    from lakehouse.core.errors import PublicationError
    from lakehouse.core.schemas import SIGNAL_TABLES
    from lakehouse.publication.publish import publish
    from lakehouse.query.session import Session
    from lakehouse.subsets import privacy
    from lakehouse.subsets.export import export_subset

    lh, clips = unsigned_lh
    monkeypatch.setattr(privacy, "refusal", lambda status: None)  # the export gate, off
    ids = [c["clip_id"] for c in clips]
    lh.upsert("signals", [signal_row(c, "clear") for c in clips[:2]], schema=schemas.SIGNALS)
    good = publish(lh, SIGNAL_TABLES)["signals"]

    # a writer (a bug, an outside tool) gives one clip an unknown status and another none
    rows = {r["clip_id"]: r for r in lh.read("signals").to_pylist()}
    bad = {ids[0]: None, ids[1]: "whatever"}
    lh.upsert("signals", [{**rows[cid], "privacy_status": s} for cid, s in bad.items()])
    with Session(lh, latest=True) as session:  # the writers' view has them
        latest = session.query("select clip_id, privacy_status from signals").to_pylist()
    assert {r["clip_id"]: r["privacy_status"] for r in latest} == bad
    with pytest.raises(PublicationError, match="unknown_privacy_status=2"):
        publish(lh, SIGNAL_TABLES)
    assert lh.published_version("signals") == good
    assert lh.dataset("signals").version > good

    record = lh.materialize_subset("everything")
    assert record.table_versions["signals"] == good
    result = export_subset(lh, "everything", fmt="jsonl", out=tmp_path / "a", privacy="refuse")
    assert result.skipped == []  # the export gate is off: even the unsigned clips go out
    exported = manifest_statuses(tmp_path / "a" / "everything-v1.jsonl")
    assert exported == {cid: ("clear" if cid in ids[:2] else None) for cid in ids}
    readers = lh.sql("select clip_id, privacy_status from clip_facts").to_pylist()
    assert {r["clip_id"]: r["privacy_status"] for r in readers} == exported  # the last good ones
