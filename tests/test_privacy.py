"""privacy_status from per-frame face detections (every branch), the refusal reasons of
``privacy="refuse"``, the exact errors of ``check_mode``, what a ``privacy="blur"`` export
records for a clip whose faces the blurrer does not find, and the blurrer itself: which pixels a
box covers and how they are hidden (``_blur_box``, exactly), and ``FaceBlurrer`` on a real face
(matplotlib's sample portrait): counters, the box it blurs, how long a lost face stays blurred,
``expand``, ``min_confidence``, ``reset`` and ``close``."""

import dataclasses
import inspect
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


# -- check_mode: the exact errors ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["webdataset", "jsonl", "parquet", "csv"])
def test_check_mode_accepts_no_privacy_and_refusal_for_every_format(fmt):
    assert check_mode(None, fmt) is None
    assert check_mode("refuse", fmt) is None


def test_check_mode_accepts_blur_for_webdataset_only():
    assert check_mode("blur", "webdataset") is None
    for fmt in ("jsonl", "parquet", "WebDataset", ""):
        with pytest.raises(InputError) as raised:
            check_mode("blur", fmt)
        assert str(raised.value) == (
            "privacy='blur' applies to WebDataset exports (they carry the video); "
            "use privacy='refuse' to leave uncleared clips out of a manifest."
        )


@pytest.mark.parametrize("mode", ["hide", "", "Blur", "REFUSE", "blur "])
def test_check_mode_names_the_known_options(mode):
    with pytest.raises(InputError) as raised:
        check_mode(mode, "webdataset")
    assert str(raised.value) == f"Unknown privacy option {mode!r}; use one of refuse, blur."


# -- _blur_box: which pixels a box covers, and how they are hidden ------------------------------


def import_cv2():
    return pytest.importorskip("cv2", reason="OpenCV (installed with the signals extra) is absent")


def noise(shape=(48, 64, 3), seed=3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def pixelated(patch: np.ndarray, small: tuple[int, int], k: int) -> np.ndarray:
    """The patch shrunk to ``small`` (width, height) by area averaging, grown back by nearest
    neighbour and smoothed with a k x k Gaussian whose sigma follows from k."""
    cv2 = import_cv2()
    height, width = patch.shape[:2]
    shrunk = cv2.resize(patch, small, interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(shrunk, (width, height), interpolation=cv2.INTER_NEAREST)
    return cv2.GaussianBlur(coarse, (k, k), 0)


# (box, expand) -> the rows and columns blurred in a 48 x 64 image, the size it is pixelated to
# (width, height: a 1/8 of the box, at least 1) and the Gaussian's kernel (a quarter of the
# box's width made odd, at least 3). The box is grown by ``expand`` times its own width and
# height on each side; its far edges are inclusive (+1 pixel); it is clipped to the image.
BLURRED_BOXES = {
    "inside": ([0.25, 0.25, 0.75, 0.5], 0.25, (9, 28), (8, 57), (6, 2), 13),
    "not expanded": ([0.25, 0.25, 0.75, 0.5], 0.0, (12, 25), (16, 49), (4, 1), 9),
    "smaller than a block": ([0.15625, 0.5, 0.328125, 0.5625], 0.0, (24, 28), (10, 22), (1, 1), 3),
    "past the top left": ([-0.5, -0.25, 0.25, 0.25], 0.25, (0, 19), (0, 29), (3, 2), 7),
    "past the bottom right": ([0.75, 0.625, 1.5, 1.25], 0.25, (22, 48), (36, 64), (3, 3), 7),
    "the whole image": ([0.0, 0.0, 1.0, 1.0], 0.1, (0, 48), (0, 64), (8, 6), 17),
    "tall": ([0.25, 0.125, 0.55, 0.84], 0.0, (6, 41), (16, 36), (2, 4), 5),
    "two columns": ([0.5, 0.25, 0.52, 0.75], 0.0, (12, 37), (32, 34), (1, 3), 3),
    "two rows": ([0.25, 0.5, 0.75, 0.53], 0.0, (24, 26), (16, 49), (4, 1), 9),
}


@pytest.mark.parametrize(
    ("box", "expand", "rows", "columns", "small", "k"),
    list(BLURRED_BOXES.values()),
    ids=list(BLURRED_BOXES),
)
def test_blur_box_pixelates_and_smooths_exactly_the_grown_box(box, expand, rows, columns, small, k):
    from lakehouse.subsets.privacy import _blur_box

    import_cv2()
    original = noise()
    image = original.copy()
    assert _blur_box(image, box, expand) is None  # in place
    (top, bottom), (left, right) = rows, columns
    expected = original.copy()
    expected[top:bottom, left:right] = pixelated(original[top:bottom, left:right], small, k)
    np.testing.assert_array_equal(image, expected)  # outside the box: untouched, exactly
    inside = image[top:bottom, left:right].astype(float)
    assert inside.std() < original[top:bottom, left:right].std() / 2  # the noise is gone
    changed = (image != original).any(axis=2)
    assert changed[top:bottom, left:right].mean() > 0.9


@pytest.mark.parametrize(
    "box",
    [
        [0.5, 0.25, 0.5, 0.75],  # no width: one column, however tall
        [0.25, 0.5, 0.75, 0.5],  # no height: one row, however wide
        [0.5, 0.5, 0.5, 0.5],  # a point
        [1.2, 0.2, 1.6, 0.8],  # right of the image
        [-0.6, 0.2, -0.2, 0.8],  # left of it
        [0.2, -0.8, 0.8, -0.3],  # above it
        [0.2, 1.3, 0.8, 1.9],  # below it
    ],
)
def test_blur_box_leaves_the_image_alone_for_a_box_without_two_pixels_each_way(box):
    from lakehouse.subsets.privacy import _blur_box

    import_cv2()
    original = noise()
    image = original.copy()
    _blur_box(image, box, 0.25)
    np.testing.assert_array_equal(image, original)


# -- FaceBlurrer on a real face -----------------------------------------------------------------


@dataclasses.dataclass
class Scenes:
    """Frames of one size with Grace Hopper's portrait (matplotlib's sample image) on the left,
    on the right, on both sides or nowhere, over a 4 px checkerboard (no face-like texture: the
    full-range model scores nothing on it even at 0.05); and where a reference detector (the
    full-range model, as the blurrer should run it) finds her face in each."""

    frames: dict[str, np.ndarray]
    boxes: dict[str, list[list[float]]]
    scores: dict[str, list[float]]

    def frame(self, name: str) -> np.ndarray:
        """A fresh, writeable copy of a frame (the blurrer marks the frames it gets read-only)."""
        return self.frames[name].copy()

    def blurred(self, name: str, boxes: list[list[float]], expand: float = 0.25) -> np.ndarray:
        from lakehouse.subsets.privacy import _blur_box

        out = self.frame(name)
        for box in boxes:
            _blur_box(out, box, expand)
        return out


@pytest.fixture(scope="module")
def scenes() -> Scenes:
    pytest.importorskip("mediapipe", reason="the signals extra (mediapipe) is not installed")
    cbook = pytest.importorskip("matplotlib.cbook", reason="matplotlib (its sample face) is absent")
    cv2 = import_cv2()
    from lakehouse.media.detectors import face_detector
    from lakehouse.subsets.privacy import FaceBlurrer

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    face = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = face.shape[:2]
    assert (h, w) == (600, 512)
    rows, columns = np.mgrid[0:h, 0 : 2 * w]
    squares = ((rows // 4 + columns // 4) % 2 * 160 + 48).astype(np.uint8)
    frames = {"blank": np.repeat(squares[..., None], 3, axis=2)}
    for name, sides in {"left": [0], "right": [w], "both": [0, w]}.items():
        frames[name] = frames["blank"].copy()
        for x in sides:
            frames[name][:, x : x + w] = face
    default = inspect.signature(FaceBlurrer).parameters["min_confidence"].default
    detector = face_detector(default)  # the blurrer's own threshold
    boxes, scores = {}, {}
    try:
        for name, frame in frames.items():
            found = detector.process(frame).detections or []
            rel = [d.location_data.relative_bounding_box for d in found]
            boxes[name] = [[b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height] for b in rel]
            scores[name] = [d.score[0] for d in found]
    finally:
        detector.close()
    # the face is where it was put, and nowhere else
    assert boxes["blank"] == []
    assert len(boxes["left"]) == len(boxes["right"]) == 1 and len(boxes["both"]) == 2
    (x0, y0, x1, y1), (u0, _, u1, _) = boxes["left"][0], boxes["right"][0]
    assert 0.1 < x0 < x1 < 0.4 and 0.15 < y0 < y1 < 0.6 and 0.6 < u0 < u1 < 0.9
    return Scenes(frames, boxes, scores)


def pixel_box(box: list[float], expand: float, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Rows and columns (top, bottom, left, right) that ``_blur_box`` covers for this box."""
    h, w = shape[:2]
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * expand, (y1 - y0) * expand
    return (
        max(0, int((y0 - dy) * h)),
        min(h, int((y1 + dy) * h) + 1),
        max(0, int((x0 - dx) * w)),
        min(w, int((x1 + dx) * w) + 1),
    )


def counts(blurrer) -> tuple[int, int, int]:
    return blurrer.frames, blurrer.faces, blurrer.frames_with_faces


@pytest.fixture
def blurrer(scenes):
    """Makes blurrers (the defaults: 0.3, 25 % on each side, 5 more frames); closes them after."""
    from lakehouse.subsets.privacy import FaceBlurrer

    made = []

    def make(**settings):
        made.append(FaceBlurrer(**settings))
        return made[-1]

    yield make
    for b in made:
        b.close()


def test_the_blurrer_changes_exactly_the_grown_box_of_the_face_it_finds(scenes, blurrer):
    b = blurrer()
    assert counts(b) == (0, 0, 0)
    frame = scenes.frame("left")
    out = b(frame)
    assert counts(b) == (1, 1, 1)
    box = scenes.boxes["left"][0]
    np.testing.assert_array_equal(out, scenes.blurred("left", [box], 0.25))
    np.testing.assert_array_equal(frame, scenes.frames["left"])  # the input is not written
    top, bottom, left, right = pixel_box(box, 0.25, frame.shape)
    changed = (out != frame).any(axis=2)
    assert changed[top:bottom, left:right].mean() > 0.9
    changed[top:bottom, left:right] = False
    assert not changed.any()  # outside the grown box: the same pixels


def test_a_frame_without_a_face_is_returned_as_it_is(scenes, blurrer):
    b = blurrer()
    frame = scenes.frame("blank")
    assert b(frame) is frame
    assert counts(b) == (1, 0, 0)


def test_every_face_of_a_frame_is_blurred_and_counted(scenes, blurrer):
    b = blurrer(persist_frames=0)
    out = b(scenes.frame("both"))
    assert counts(b) == (1, 2, 1)
    np.testing.assert_array_equal(out, scenes.blurred("both", scenes.boxes["both"]))
    b(scenes.frame("left"))
    b(scenes.frame("blank"))
    assert counts(b) == (3, 3, 2)


def test_a_read_only_or_non_contiguous_frame_is_blurred_into_a_new_array(scenes, blurrer):
    expected = scenes.blurred("left", scenes.boxes["left"])
    read_only = np.frombuffer(scenes.frames["left"].tobytes(), np.uint8)
    read_only = read_only.reshape(scenes.frames["left"].shape)  # its buffer cannot be written
    assert not read_only.flags.writeable
    np.testing.assert_array_equal(blurrer()(read_only), expected)
    fortran = np.asfortranarray(scenes.frame("left"))
    out = blurrer()(fortran)
    np.testing.assert_array_equal(out, expected)
    assert out is not fortran
    np.testing.assert_array_equal(fortran, scenes.frames["left"])


@pytest.mark.parametrize("persist", [None, 0, 2])
def test_a_lost_face_stays_blurred_for_persist_frames_frames(scenes, blurrer, persist):
    b = blurrer() if persist is None else blurrer(persist_frames=persist)
    frames = 5 if persist is None else persist
    b(scenes.frame("left"))
    kept = scenes.blurred("blank", scenes.boxes["left"])
    assert not np.array_equal(kept, scenes.frames["blank"])
    for _ in range(frames):
        np.testing.assert_array_equal(b(scenes.frame("blank")), kept)
    frame = scenes.frame("blank")
    assert b(frame) is frame
    assert b(frame) is frame
    assert counts(b) == (frames + 3, 1, 1)


def test_each_box_counts_down_its_own_frames(scenes, blurrer):
    """A face found in a new place does not cut short the blurring of the old place."""
    b = blurrer(persist_frames=2)
    left, right = scenes.boxes["left"], scenes.boxes["right"]
    b(scenes.frame("left"))
    np.testing.assert_array_equal(b(scenes.frame("right")), scenes.blurred("right", left + right))
    np.testing.assert_array_equal(b(scenes.frame("blank")), scenes.blurred("blank", left + right))
    np.testing.assert_array_equal(b(scenes.frame("blank")), scenes.blurred("blank", right))
    frame = scenes.frame("blank")
    assert b(frame) is frame
    assert counts(b) == (5, 2, 2)


def test_a_face_found_again_adds_a_fresh_box(scenes, blurrer):
    """Each detection keeps its own box: a face seen in two frames in a row is blurred under the
    box of both (the first one's last frame), and stays blurred ``persist_frames`` frames after
    the second."""
    b = blurrer(persist_frames=1)
    left = scenes.boxes["left"]
    b(scenes.frame("left"))
    np.testing.assert_array_equal(b(scenes.frame("left")), scenes.blurred("left", left + left))
    np.testing.assert_array_equal(b(scenes.frame("blank")), scenes.blurred("blank", left))
    frame = scenes.frame("blank")
    assert b(frame) is frame
    assert counts(b) == (4, 2, 2)


@pytest.mark.parametrize("expand", [0.0, 0.5])
def test_expand_grows_the_blurred_box(scenes, blurrer, expand):
    b = blurrer(expand=expand)
    frame = scenes.frame("left")
    out = b(frame)
    box = scenes.boxes["left"][0]
    np.testing.assert_array_equal(out, scenes.blurred("left", [box], expand))
    rows, columns = np.nonzero((out != frame).any(axis=2))
    top, bottom, left, right = pixel_box(box, expand, frame.shape)
    assert top <= rows.min() and rows.max() < bottom
    assert left <= columns.min() and columns.max() < right
    assert right - left == pytest.approx((1 + 2 * expand) * (box[2] - box[0]) * 1024, abs=2)
    assert bottom - top == pytest.approx((1 + 2 * expand) * (box[3] - box[1]) * 600, abs=2)


def test_the_blurrer_asks_for_the_full_range_model_at_its_threshold(scenes, blurrer, monkeypatch):
    """What the blurrer asks MediaPipe for: the full-range model at ``min_confidence``, set on
    the calculator that applies it (lakehouse.media.detectors.face_detector)."""
    from lakehouse.media import detectors
    from lakehouse.subsets import privacy

    calls = []

    def spy(min_confidence):
        calls.append(min_confidence)
        return detectors.face_detector(min_confidence)

    monkeypatch.setattr(privacy, "face_detector", spy)
    blurrer()
    blurrer(min_confidence=0.7)
    assert calls == [0.6, 0.7]
    assert detectors.FACE_GRAPH.endswith("face_detection_full_range_cpu.binarypb")


def test_the_threshold_asked_for_is_the_one_applied(scenes):
    """MediaPipe 0.10.14's own FaceDetection ignores ``min_detection_confidence`` (its graph's
    0.6 applies whatever is asked); the detector the lakehouse builds applies it: a face found
    at 0.3 is not found at a threshold above its score."""
    from lakehouse.media.detectors import face_detector, import_mediapipe

    (score,) = scenes.scores["left"]
    frame = scenes.frame("left")
    strict = face_detector(min(0.99, score + 0.01))
    stock = import_mediapipe().solutions.face_detection.FaceDetection(
        model_selection=1, min_detection_confidence=min(0.99, score + 0.01)
    )
    try:
        assert strict.process(frame).detections is None
        assert len(stock.process(frame).detections or []) == 1  # the setting did nothing
    finally:
        strict.close()
        stock.close()


def test_a_min_confidence_above_the_face_score_finds_no_face(scenes, blurrer):
    (score,) = scenes.scores["left"]
    assert score < 0.99
    b = blurrer(min_confidence=0.99)
    frame = scenes.frame("left")
    assert b(frame) is frame
    assert counts(b) == (1, 0, 0)


def test_a_weak_face_above_min_confidence_is_blurred(scenes, blurrer):
    """Grace Hopper's portrait 62 px wide on grey: the full-range model scores her face about
    0.48, above a blurrer asked for 0.3 (which MediaPipe's own FaceDetection would not honour:
    its 0.6 applies) and below the default 0.6."""
    cv2 = import_cv2()
    frame = np.full((600, 1024, 3), 128, np.uint8)
    small = cv2.resize(scenes.frames["left"][:, :512], (62, 73), interpolation=cv2.INTER_AREA)
    frame[200:273, 300:362] = small
    b = blurrer(min_confidence=0.3)
    b(frame)
    assert counts(b) == (1, 1, 1)
    default = blurrer()
    assert default(frame) is frame and counts(default) == (1, 0, 0)


def test_reset_forgets_the_boxes_but_not_the_counts(scenes, blurrer):
    b = blurrer()
    b(scenes.frame("both"))
    b.reset()
    frame = scenes.frame("blank")
    assert b(frame) is frame
    assert counts(b) == (2, 2, 1)
    # only the new face: nothing of the boxes from before the reset
    expected = scenes.blurred("left", scenes.boxes["left"])
    np.testing.assert_array_equal(b(scenes.frame("left")), expected)


def test_close_releases_the_detector(scenes):
    from lakehouse.subsets.privacy import FaceBlurrer

    b = FaceBlurrer()
    assert b.close() is None
    with pytest.raises(ValueError):
        b(scenes.frame("left"))  # MediaPipe's graph is gone
