"""Scenarios 4 and 5: checks gate what readers see; cleanup keeps what readers and subsets use.

Bad data is written the way a buggy writer or an outside tool would: appended straight to the
Lance dataset, bypassing the merge on the key."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import lance
import pyarrow as pa
import pytest

from lakehouse.api import Lakehouse
from lakehouse.core import schemas
from lakehouse.core.errors import PipelineError, PublicationError, TableNotFoundError
from lakehouse.core.schemas import CURATION_TABLES, SIGNAL_TABLES
from lakehouse.ingest.sources import register_source
from lakehouse.publication.publish import publish
from lakehouse.query.session import Session

PROCS = Path(__file__).resolve().parent / "procs.py"


@pytest.fixture
def source(tmp_path, synthetic_videos):
    folder = tmp_path / "cam"
    folder.mkdir()
    shutil.copy(synthetic_videos["cuts"], folder / "three_scenes.mp4")
    (folder / "labels.csv").write_text(
        "video,start,end,caption,view\nthree_scenes.mp4,0,2,someone walks to the door,exo\n"
    )
    return folder


def append_raw(lh: Lakehouse, table: str, rows: list[dict]) -> None:
    """What a buggy writer does: append without merging on the key."""
    ds = lh.dataset(table)
    data = pa.Table.from_pylist(rows, schema=ds.schema)
    lance.write_dataset(data, lh.table_uri(table), mode="append")


def facts(lh: Lakehouse) -> tuple[int, int]:
    row = lh.sql("select count(*) as n, count(distinct clip_id) as d from clips").to_pylist()[0]
    return row["n"], row["d"]


# -- 4. checks gate publication ------------------------------------------------------------


def test_a_failing_check_keeps_readers_on_the_last_good_versions(lh, source):
    lh.ingest(source, source="cam", annotations=[source / "labels.csv"])
    good = {t: lh.published_version(t) for t in ("clips", "text_embeddings")}
    assert all(good.values())
    clips_before = facts(lh)
    hits_before = lh.search("walks to the door", mode="text", k=5).column("clip_id").to_pylist()
    assert hits_before

    # a duplicate clip and a vector that is not unit norm reach the tables' latest versions
    clip = lh.read("clips").to_pylist()[0]
    append_raw(lh, "clips", [clip])
    text = lh.read("text_embeddings").to_pylist()[0]
    bad = {**text, "embedding_id": "bad", "clip_id": "ghost", "text": "zebra xylophone"}
    bad["vector"] = [v * 3 for v in text["vector"]]
    append_raw(lh, "text_embeddings", [bad])

    with pytest.raises(PublicationError) as info:
        publish(lh)
    message = str(info.value)
    assert "unique_clip_id" in message and "text_embeddings_unit_norm" in message
    assert "readers still see" in message and "\n" not in message
    assert {t: lh.published_version(t) for t in good} == good  # nothing moved
    # readers: SQL, search and subsets see the last good versions
    assert facts(lh) == clips_before
    assert lh.count("clips") == clips_before[0] + 1  # the writers' view has the bad row
    assert lh.search("zebra xylophone", mode="text", k=5).num_rows == 0

    # fixed: the vector normalized, the duplicate removed; publication goes through
    norm = sum(v * v for v in text["vector"]) ** 0.5
    lh.upsert(
        "text_embeddings", [{**bad, "vector": [v / norm for v in text["vector"]]}]
    )  # merge on the key: the bad row is replaced
    ds = lh.dataset("clips")
    keep = ds.to_table(with_row_id=True).column("_rowid").to_pylist()[-1]
    ds.delete(f"_rowid = {keep}")
    publish(lh)
    assert facts(lh) == clips_before
    assert lh.search("zebra xylophone", mode="text", k=5).column("clip_id").to_pylist() == ["ghost"]


def test_a_failed_blocking_check_stops_the_dagster_run_before_publication(
    config, source, synthetic_videos
):
    from dagster_defs.runner import open_instance, run_ingest
    from lakehouse.ingest.sources import register_source

    lh = Lakehouse(config)
    register_source(lh, source, name="cam", annotations=[source / "labels.csv"])
    first = run_ingest(config, "cam")
    published = lh.published_version("clips")
    clips_before = facts(lh)

    # another source's buggy writer appends a duplicate clip id; then new data arrives here
    clip = lh.read("clips").to_pylist()[0]
    append_raw(lh, "clips", [{**clip, "source": "other"}])
    shutil.copy(synthetic_videos["exo"], source / "dance.mp4")
    with pytest.raises(PipelineError):
        run_ingest(config, "cam")

    instance = open_instance(config)
    try:
        runs = instance.get_runs()
        failed = next(r for r in runs if r.run_id != first.run_id)
        records = instance.get_records_for_run(failed.run_id).records
        done = {
            r.event_log_entry.dagster_event.asset_key.to_user_string()
            for r in records
            if r.event_log_entry.dagster_event is not None
            and r.event_log_entry.dagster_event.is_step_materialization
        }
        evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("clips"), "unique_clip_id")]
        )
    finally:
        instance.dispose()
    assert {"videos", "annotations", "clips"} <= done  # upstream of the check ran
    assert not done & {"keyframes", "quarantine", "published_versions"}  # downstream did not
    check = evaluation[dg.AssetCheckKey(dg.AssetKey("clips"), "unique_clip_id")]
    assert check.run_id == failed.run_id
    assert lh.published_version("clips") == published
    assert facts(lh) == clips_before  # readers: no new clips, no duplicate
    assert lh.count("clips", "uri LIKE '%dance.mp4'") > 0  # the writers' view has them


def test_publication_is_per_snapshot_and_never_moves_back(lh):
    rows = [{"source": "a", "uri": "/a", "annotation_files": []}]
    lh.upsert("sources", rows)
    assert publish(lh, ["sources"]) == {"sources": lh.dataset("sources").version}
    lh.upsert("sources", [{"source": "b", "uri": "/b", "annotation_files": []}])
    latest = publish(lh, ["sources"])["sources"]
    from lakehouse.storage.published import move_tag

    move_tag(lh, "sources", latest - 1)  # a slower publisher of an older snapshot
    assert lh.published_version("sources") == latest
    assert lh.info()[0].published == latest


def test_an_unpublished_table_reads_at_its_latest_version(lh):
    lh.upsert("sources", [{"source": "a", "uri": "/a", "annotation_files": []}])
    assert lh.published_version("sources") is None
    assert lh.sql("select count(*) as n from sources").to_pylist() == [{"n": 1}]


def signal_row(clip: dict, **values) -> dict:
    """A signals row for ``clip`` (as compute_signals writes one; the values are the test's)."""
    import datetime as dt

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
        privacy_status="faces_visible",
        computed_at=dt.datetime.now(dt.UTC),
    )
    row.update(values)
    return row


def privacy(reader: Lakehouse | Session) -> list[str]:
    sql = "select privacy_status from clip_facts where privacy_status is not null"
    run = reader.sql if isinstance(reader, Lakehouse) else reader.query
    return run(sql).column(0).to_pylist()


def test_bad_signals_and_clusters_never_reach_readers(lh, source):
    """privacy_status decides what an export lets through: a signals row out of range (or a
    broken near-duplicate cluster) must not become what readers see."""
    lh.ingest(source, source="cam", annotations=[source / "labels.csv"])
    clip = lh.read("clips").to_pylist()[0]
    lh.upsert("signals", [signal_row(clip)], schema=schemas.SIGNALS)
    published = publish(lh, SIGNAL_TABLES)
    assert set(published) == {"signals"}  # signal_frames does not exist yet
    assert privacy(lh) == ["faces_visible"]

    # a newer row claims the clip is clear, with fractions no detector can produce
    bad = signal_row(clip, signal_id=f"{clip['clip_id']}:bad", privacy_status="clear")
    bad["hands_frac"] = 1.7
    append_raw(lh, "signals", [bad])
    with pytest.raises(PublicationError, match="signal_values_in_range"):
        publish(lh, SIGNAL_TABLES)
    assert lh.published_version("signals") == published["signals"]
    assert privacy(lh) == ["faces_visible"]  # readers: the last good version
    with Session(lh, latest=True) as session:  # the writers' view has the bad row
        assert privacy(session) == ["clear"]

    # two representatives in one near-duplicate cluster
    rows = [
        {
            "clip_id": cid,
            "source": "cam",
            "cluster_id": clip["clip_id"],
            "near_duplicate_of": None,
            "similarity": 1.0,
            "threshold": 0.95,
            "cluster_size": 2,
            "is_representative": True,
        }
        for cid in (clip["clip_id"], "another-clip")
    ]
    lh.upsert("near_duplicates", rows, schema=schemas.NEAR_DUPLICATES)
    with pytest.raises(PublicationError, match="one_representative_per_cluster"):
        publish(lh, CURATION_TABLES)
    assert lh.published_version("near_duplicates") is None
    assert lh.sql("select count(*) from near_duplicates").column(0)[0].as_py() == 2  # unpublished
    lh.delete("near_duplicates", "clip_id = 'another-clip'")
    lh.upsert("near_duplicates", [{**rows[0], "cluster_size": 1}], schema=schemas.NEAR_DUPLICATES)
    assert publish(lh, CURATION_TABLES)["near_duplicates"] >= 1


def test_a_failed_signals_check_stops_the_dagster_run_before_publication(config, source):
    pytest.importorskip("mediapipe")
    from dagster_defs.runner import run_ingest

    lh = Lakehouse(config)
    register_source(lh, source, name="cam", annotations=[source / "labels.csv"])
    run_ingest(config, "cam")
    good = run_ingest(config, "cam", job_name="signals_job")
    assert [a.asset for a in good.assets] == ["signals", "published_signals"]
    published = lh.published_version("signals")
    assert published is not None
    before = privacy(lh)

    clip = lh.read("clips").to_pylist()[0]
    bad = signal_row(clip, signal_id=f"{clip['clip_id']}:bad", privacy_status="clear")
    bad["brightness"] = -3.0
    append_raw(lh, "signals", [bad])
    with pytest.raises(PipelineError):
        run_ingest(config, "cam", job_name="signals_job")
    assert lh.published_version("signals") == published
    assert privacy(lh) == before  # readers never saw the bad row


# -- 5. cleanup keeps what is in use ---------------------------------------------------------


def _write(lh: Lakehouse, key: str) -> int:
    lh.upsert("sources", [{"source": key, "uri": f"/{key}", "annotation_files": []}])
    return lh.dataset("sources").version


def hold(root: str) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen(
        [sys.executable, str(PROCS), "hold_session", json.dumps({"root": root})],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, json.loads(process.stdout.readline())


def test_cleanup_keeps_published_pinned_and_read_versions(lh):
    v1 = _write(lh, "a")
    v2 = _write(lh, "b")
    publish(lh, ["sources"])
    reader, ready = hold(lh.root)  # another process reads the published version (2)
    try:
        assert ready["version"] == v2 and ready["rows"] == 2
        v3 = _write(lh, "c")
        lh.dataset("sources").tags.create("subset-demo-v1", v3)  # what a subset pins
        v4 = _write(lh, "d")
        with Session(lh, versions={"sources": v4}) as session:  # this process reads version 4
            v5 = _write(lh, "e")
            publish(lh, ["sources"])  # the published tag leaves version 2 for 5
            v6 = _write(lh, "f")
            removed = lh.cleanup(older_than_s=0)
            kept = [v["version"] for v in lh.dataset("sources").versions()]
            assert kept == [v2, v3, v4, v5, v6], removed
            with pytest.raises(TableNotFoundError):
                lh.dataset("sources", version=v1)
            assert session.query("select count(*) as n from sources").to_pylist() == [{"n": 4}]
        reader.stdin.write("go\n")
        reader.stdin.flush()
        out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == {"rows": 2}
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    # both readers are gone: their versions may go now; tagged ones and the latest stay
    lh.cleanup(older_than_s=0)
    assert [v["version"] for v in lh.dataset("sources").versions()] == [v3, v5, v6]


def test_a_reader_killed_mid_read_does_not_pin_versions_forever(lh):
    _write(lh, "a")
    old = _write(lh, "b")
    reader, ready = hold(lh.root)
    assert ready["version"] == old
    _write(lh, "c")
    lh.cleanup(older_than_s=0)
    assert old in [v["version"] for v in lh.dataset("sources").versions()]
    reader.send_signal(signal.SIGKILL)
    reader.wait()
    lh.cleanup(older_than_s=0)
    assert old not in [v["version"] for v in lh.dataset("sources").versions()]
    assert not list((Path(lh.root) / ".readers").iterdir())  # its lease was removed
    assert schemas.primary_key(lh.dataset("sources").schema) == "source"


def test_readers_switch_every_table_at_once(lh):
    from lakehouse.storage.published import write_record

    for key in ("a", "b"):
        lh.upsert("sources", [{"source": key, "uri": f"/{key}", "annotation_files": []}])
        lh.upsert("quarantine", [{"quarantine_id": key, "source": key, "stage": "videos"}])
    first = publish(lh, ["sources", "quarantine"])
    lh.upsert("sources", [{"source": "c", "uri": "/c", "annotation_files": []}])
    lh.upsert("quarantine", [{"quarantine_id": "c", "source": "c", "stage": "videos"}])
    with Session(lh) as session:  # one snapshot: both tables at the first publication
        assert {t: session.versions[t] for t in first} == first
    # a publisher that died after switching the record but before moving the tags: the record
    # alone decides what readers see, and cleanup keeps what it names
    newer = {t: lh.dataset(t).version for t in first}
    write_record(lh, newer)
    assert lh.published_version("sources") == newer["sources"]
    assert lh.dataset("sources").tags.list()["published"]["version"] == first["sources"]
    _write(lh, "d")
    lh.cleanup(older_than_s=0)
    kept = [v["version"] for v in lh.dataset("sources").versions()]
    assert newer["sources"] in kept and first["sources"] in kept
    assert lh.sql("select count(*) as n from sources").to_pylist() == [{"n": 3}]
    assert "_publication" not in lh.table_names()


def test_moving_the_tag_to_a_version_that_is_gone_is_an_error_not_a_loop(lh):
    """A tag creation that fails for another reason than a racing publisher raises at once."""
    from lakehouse.storage.published import PUBLISHED_TAG, move_tag

    lh.upsert("sources", [{"source": "a", "uri": "/a", "annotation_files": []}])
    with pytest.raises((OSError, ValueError), match="(?i)version"):
        move_tag(lh, "sources", 99)
    assert PUBLISHED_TAG not in lh.dataset("sources").tags.list()
    latest = lh.dataset("sources").version
    move_tag(lh, "sources", latest)
    assert lh.dataset("sources").tags.list()[PUBLISHED_TAG]["version"] == latest
