"""The Dagster definitions load, and materialize in-process against a real lakehouse."""

import shutil

import dagster as dg
import pytest

from dagster_defs.definitions import build_defs
from dagster_defs.runner import open_instance, run_ingest
from lakehouse.api import Lakehouse
from lakehouse.core.errors import PipelineError
from lakehouse.ingest.sources import register_source

INGEST_ASSETS = [
    "annotations",
    "clip_embeddings",
    "clips",
    "keyframes",
    "published_versions",
    "quarantine",
    "search_index",
    "text_embeddings",
    "videos",
]
ASSET_KEYS = [
    "annotations",
    "clip_embeddings",
    "clip_extras",
    "clip_facts",
    "clip_signals",
    "clips",
    "egocentric_hands_on_objects",
    "egocentric_tool_use_over_30s",
    "food_preparation",
    "keyframes",
    "near_duplicates",
    "object_pick_and_place",
    "published_curation",
    "published_signals",
    "published_versions",
    "quarantine",
    "search_index",
    "signals",
    "text_embeddings",
    "third_person_dance",
    "videos",
    "viewpoint_predictions",
]
CHECK_KEYS = [
    "clip_embeddings:clip_embedding_coverage",
    "clip_embeddings:clip_vectors_have_model_width_and_unit_norm",
    "clips:annotation_coverage",
    "clips:clip_spans_within_video",
    "clips:unique_clip_id",
    "near_duplicates:one_representative_per_cluster",
    "quarantine:quarantine_counts",
    "signals:privacy_review_queue",
    "signals:signal_coverage",
    "signals:signal_values_in_range",
    "text_embeddings:text_embedding_coverage",
    "text_embeddings:text_vectors_have_model_width_and_unit_norm",
    "viewpoint_predictions:viewpoint_held_out_accuracy",
]


def test_definitions_load_with_the_expected_assets_and_checks(config):
    defs = build_defs(config)
    repo = defs.get_repository_def()
    keys = sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys())
    assert keys == ASSET_KEYS
    checks = sorted(
        f"{k.asset_key.to_user_string()}:{k.name}" for k in repo.asset_graph.asset_check_keys
    )
    assert checks == CHECK_KEYS
    graph = repo.asset_graph
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("clips")).parent_keys} == {
        "videos",
        "annotations",
    }
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("search_index")).parent_keys} == {
        "clip_embeddings",
        "text_embeddings",
    }
    assert defs.resolve_job_def("ingest") is not None
    assert defs.resolve_job_def("embed") is not None


def test_module_level_defs_load():
    import dagster_defs

    assert isinstance(dagster_defs.defs, dg.Definitions)


@pytest.fixture
def source_folder(tmp_path, synthetic_videos):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(synthetic_videos["cuts"], folder / "three_scenes.mp4")
    shutil.copy(synthetic_videos["exo"], folder / "dance.mp4")
    (folder / "labels.csv").write_text(
        "video,start,end,caption,view\n"
        "dance.mp4,00:00:00.50,00:00:03.00,a dancer spins,exo\n"
        "dance.mp4,00:00:03.00,00:00:01.00,inverted,exo\n"
    )
    (folder / "broken.mp4").write_text("not a video")
    return folder


def test_ingest_job_materializes_every_asset_and_passes_checks(tiny_clip_config, source_folder):
    config = tiny_clip_config
    lh = Lakehouse(config)
    register_source(lh, source_folder, name="cam-a", annotations=[source_folder / "labels.csv"])
    report = run_ingest(config, "cam-a")
    assert report.success
    by_asset = {a.asset: a.metadata for a in report.assets}
    assert sorted(by_asset) == INGEST_ASSETS
    assert by_asset["videos"]["rows_in_source"] == 2
    assert by_asset["clips"]["rows_in_source"] == 4  # 3 scene cuts + 1 annotated span
    assert by_asset["quarantine"]["rows_in_source"] == 2
    assert by_asset["clips"]["table_version"] >= 2
    assert "clip_id" in by_asset["clips"]["preview"]
    assert by_asset["clip_embeddings"]["rows_in_source"] == 4
    assert by_asset["text_embeddings"]["rows_in_source"] == 1
    ingest_checks = [k for k in CHECK_KEYS if k.split(":")[0] in INGEST_ASSETS]
    assert all(c.passed for c in report.checks) and len(report.checks) == len(ingest_checks)

    # the run is in the instance the UI reads, with its materializations per partition
    instance = open_instance(config)
    try:
        assert instance.get_run_by_id(report.run_id) is not None
        event = instance.get_latest_materialization_event(dg.AssetKey("clips"))
        assert event.asset_materialization.partition == "cam-a"
        assert "cam-a" in instance.get_dynamic_partitions("sources")
    finally:
        instance.dispose()

    again = run_ingest(config, "cam-a")
    inserted = {a.asset: a.metadata.get("inserted", 0) for a in again.assets}
    assert inserted == dict.fromkeys(INGEST_ASSETS, 0)


def test_a_failing_step_is_a_clear_pipeline_error(config, lh, source_folder):
    register_source(lh, source_folder, name="cam-b")
    shutil.rmtree(source_folder)
    with pytest.raises(PipelineError, match="step videos: .*does not exist"):
        run_ingest(config, "cam-b")
