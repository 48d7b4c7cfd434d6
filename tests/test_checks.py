"""The ingest checks fail on the data they guard against, and pass on a clean lakehouse.

One lakehouse is ingested per module; each test corrupts a copy of it the way a buggy writer or
an outside tool would (a merge that writes a bad value, a raw append, a delete), then runs the
library checks (:mod:`lakehouse.publication.checks`) and the Dagster asset checks that wire them
(:mod:`dagster_defs.ingest.checks`) on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import lance
import pyarrow as pa
import pytest

from lakehouse.api import Lakehouse
from lakehouse.core.config import Config
from lakehouse.ingest.sources import register_source
from lakehouse.pipeline import run_stages
from lakehouse.publication import checks
from lakehouse.query.session import Session


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory: pytest.TempPathFactory, synthetic_videos) -> Path:
    """Source ``cam``: one annotated video, one cut into scenes. Source ``junk``: one good video,
    one file that is not a video (refused at discovery) and one cut off halfway (refused by the
    probe): two thirds of its files unusable."""
    base = tmp_path_factory.mktemp("checks")
    cam, junk = base / "cam", base / "junk"
    cam.mkdir()
    junk.mkdir()
    shutil.copy(synthetic_videos["ego"], cam / "a.mp4")
    shutil.copy(synthetic_videos["cuts"], cam / "b.mp4")
    label = {"file": "a.mp4", "start": 0.5, "end": 2.0, "caption": "hands on a table"}
    (cam / "labels.jsonl").write_text(json.dumps(label) + "\n")
    shutil.copy(synthetic_videos["exo"], junk / "good.mp4")
    (junk / "broken.mp4").write_text("not a video")
    whole = synthetic_videos["exo"].read_bytes()
    (junk / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    root = base / "lakehouse"
    lh = Lakehouse(Config.load(root=root, env={}))
    for folder, labels in ((cam, [cam / "labels.jsonl"]), (junk, [])):
        source = register_source(lh, folder, name=folder.name, annotations=labels)
        run_stages(lh, source, embed=False)
    return root


@pytest.fixture
def lh(clean_root: Path, tmp_path: Path) -> Lakehouse:
    """A copy of the clean lakehouse, for this test to corrupt."""
    root = tmp_path / "lakehouse"
    shutil.copytree(clean_root, root)
    return Lakehouse(Config.load(root=root, env={}))


def library_checks(lh: Lakehouse, source: str) -> dict[str, checks.CheckOutcome]:
    """The library checks over the tables' latest versions (what a run just wrote)."""
    with Session(lh, latest=True) as session:
        outcomes = [
            checks.clip_spans_within_video(session, source),
            checks.unique_keys(session, "clips"),
            checks.annotation_coverage(session, source),
            checks.quarantine_counts(session, source),
        ]
    return {o.name: o for o in outcomes}


def dagster_checks(lh: Lakehouse, source: str) -> tuple[bool, dict[str, dg.AssetCheckEvaluation]]:
    """The ingest asset checks of one source partition, evaluated by Dagster: whether the run
    succeeded (a failed blocking check fails it), and each check's evaluation."""
    from dagster_defs.ingest.assets import ingest_assets
    from dagster_defs.ingest.checks import ingest_checks
    from dagster_defs.ingest.partitions import sources_partitions
    from dagster_defs.resources import LakehouseResource

    # Dagster runs partitioned checks only with an asset of the same partitions in the job; the
    # quarantine asset only summarises rows already written, so it leaves the tables as they are
    job = dg.define_asset_job(
        "ingest_checks",
        selection=dg.AssetSelection.assets("quarantine") | dg.AssetSelection.checks(*ingest_checks),
    )
    defs = dg.Definitions(
        assets=ingest_assets,
        asset_checks=ingest_checks,
        jobs=[job],
        resources={"lakehouse": LakehouseResource.from_config(lh.config)},
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(sources_partitions.name, [source])
    result = defs.resolve_job_def("ingest_checks").execute_in_process(
        partition_key=source, instance=instance, raise_on_error=False
    )
    return result.success, {e.check_name: e for e in result.get_asset_check_evaluations()}


def clip_of(lh: Lakehouse, segmentation: str) -> tuple[dict, dict]:
    """A clip of source ``cam`` made by ``segmentation``, and its video."""
    clip = lh.read("clips", filter=f"source = 'cam' AND segmentation = '{segmentation}'")
    clip = clip.to_pylist()[0]
    video = lh.read("videos", filter=f"video_id = '{clip['video_id']}'").to_pylist()[0]
    return clip, video


def append_raw(lh: Lakehouse, table: str, rows: list[dict]) -> None:
    """What a buggy writer does: append without merging on the key."""
    data = pa.Table.from_pylist(rows, schema=lh.dataset(table).schema)
    lance.write_dataset(data, lh.table_uri(table), mode="append")


def test_every_check_passes_on_the_clean_lakehouse(lh):
    cam = library_checks(lh, "cam")
    assert all(o.passed for o in cam.values()), [o.describe() for o in cam.values()]
    clips = lh.count("clips", "source = 'cam'")
    assert clips >= 3  # the annotated span and at least two scenes
    assert cam["clip_spans_within_video"].metadata == {
        "clips_checked": clips,
        "clips_outside_video": 0,
    }
    assert cam["unique_clip_id"].metadata["duplicates"] == 0
    assert cam["annotation_coverage"].metadata == {
        "coverage": round(1 / clips, 4),
        "annotated_clips": 1,
        "orphan_annotations": 0,
        "annotations_without_local_video": 0,
    }
    assert cam["quarantine_counts"].metadata["bad_video_files"] == 0
    success, evaluations = dagster_checks(lh, "cam")
    assert success and all(e.passed for e in evaluations.values())
    assert set(evaluations) == {
        "clip_spans_within_video",
        "unique_clip_id",
        "annotation_coverage",
        "quarantine_counts",
    }
    assert evaluations["annotation_coverage"].metadata["coverage"].value == round(1 / clips, 4)


@pytest.mark.parametrize(
    ("change", "passes"),
    [
        (lambda clip, video: {"end_s": video["duration_s"] + 1.0}, False),
        (lambda clip, video: {"start_s": -0.5}, False),
        (lambda clip, video: {"end_s": clip["start_s"]}, False),
        # one frame past the end is the slack probing allows
        (lambda clip, video: {"end_s": video["duration_s"] + 1.0 / video["fps"]}, True),
        (lambda clip, video: {"end_s": video["duration_s"] + 1.0 / video["fps"] + 0.01}, False),
    ],
    ids=["end-past-video", "negative-start", "empty-span", "one-frame-slack", "past-slack"],
)
def test_a_clip_outside_its_video_fails_the_span_check(lh, change, passes):
    clip, video = clip_of(lh, "scene_cut")
    lh.upsert("clips", [{**clip, **change(clip, video)}])
    outcome = library_checks(lh, "cam")["clip_spans_within_video"]
    assert outcome.passed is passes
    assert outcome.metadata["clips_outside_video"] == (0 if passes else 1)
    with Session(lh, latest=True) as session:
        assert checks.clip_spans_within_video(session, "junk").passed  # another source's
        assert checks.clip_spans_within_video(session).passed is passes  # every source


def test_an_annotation_without_its_clip_fails_the_coverage_check(lh):
    annotated, _ = clip_of(lh, "annotation")
    assert lh.delete("clips", f"clip_id = '{annotated['clip_id']}'") == 1
    outcome = library_checks(lh, "cam")["annotation_coverage"]
    assert not outcome.passed
    assert outcome.metadata["orphan_annotations"] == 1
    assert outcome.metadata["annotated_clips"] == 0 and outcome.metadata["coverage"] == 0.0


def test_an_annotation_pointing_at_no_clip_fails_the_coverage_check(lh):
    annotation = lh.read("annotations", filter="source = 'cam'").to_pylist()[0]
    ghost = {**annotation, "annotation_id": "ghost-annotation", "clip_id": "ghost-clip"}
    lh.upsert("annotations", [ghost])
    outcome = library_checks(lh, "cam")["annotation_coverage"]
    assert not outcome.passed and outcome.metadata["orphan_annotations"] == 1
    assert outcome.metadata["annotated_clips"] == 1  # the real annotation still has its clip
    assert library_checks(lh, "junk")["annotation_coverage"].passed


def test_a_source_of_mostly_broken_files_fails_the_quarantine_check(lh):
    outcome = library_checks(lh, "junk")["quarantine_counts"]
    assert not outcome.passed
    assert outcome.metadata["bad_video_files"] == 2
    assert outcome.metadata["bad_file_share"] == round(2 / 3, 4)
    assert outcome.metadata["quarantined_rows"] >= 2
    stages = lh.sql("select distinct stage from quarantine where source = 'junk'").to_pylist()
    assert {r["stage"] for r in stages} == {"discover", "videos"}
    # half the files broken is still a usable source
    bad = lh.read("quarantine", filter="source = 'junk'").to_pylist()
    assert lh.delete("quarantine", f"quarantine_id = '{bad[0]['quarantine_id']}'") == 1
    outcome = library_checks(lh, "junk")["quarantine_counts"]
    assert outcome.passed and outcome.metadata["bad_file_share"] == 0.5


def test_dagster_reports_each_failure_with_its_severity(lh):
    # a warning does not fail the run
    success, junk = dagster_checks(lh, "junk")
    assert success
    assert not junk["quarantine_counts"].passed
    assert junk["quarantine_counts"].severity == dg.AssetCheckSeverity.WARN
    assert junk["quarantine_counts"].metadata["bad_file_share"].value == round(2 / 3, 4)
    assert all(e.passed for name, e in junk.items() if name != "quarantine_counts")

    clip, video = clip_of(lh, "scene_cut")
    lh.upsert("clips", [{**clip, "end_s": video["duration_s"] + 1.0}])
    annotated, _ = clip_of(lh, "annotation")
    lh.delete("clips", f"clip_id = '{annotated['clip_id']}'")
    append_raw(lh, "clips", [clip])  # the same clip_id twice

    success, cam = dagster_checks(lh, "cam")
    assert not success  # blocking checks failed
    for name, (key, value) in {
        "clip_spans_within_video": ("clips_outside_video", 1),
        "unique_clip_id": ("duplicates", 1),
        "annotation_coverage": ("orphan_annotations", 1),
    }.items():
        assert not cam[name].passed, name
        assert cam[name].severity == dg.AssetCheckSeverity.ERROR
        assert cam[name].metadata[key].value == value
    # the quarantine summary is downstream of the clips the blocking checks stopped
    assert "quarantine_counts" not in cam
