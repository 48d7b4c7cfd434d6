"""The real HumanNet preview clips (../shared/data/humannet-preview) through the whole ingest."""

import json

import av
import pytest

from lakehouse.core.schemas import ANNOTATION_TEXT_FIELDS


def test_every_clip_is_ingested_with_every_annotation_field(preview_lakehouse, preview_records):
    lh = preview_lakehouse
    assert lh.count("videos") == len(preview_records) == 36
    assert lh.count("quarantine") == 0
    clips = {c["external_id"]: c for c in lh.read("clips").to_pylist()}
    assert set(clips) == set(preview_records)
    anns = {a["external_id"]: a for a in lh.read("annotations").to_pylist()}
    assert set(anns) == set(preview_records)
    for clip_key, record in preview_records.items():
        ann = anns[clip_key]
        assert json.loads(ann["fields_json"]) == record  # every field, verbatim
        for name in ANNOTATION_TEXT_FIELDS:
            if name in record:
                value = record[name]  # typed text columns hold ids such as subject_id as text
                expected = value if value is None or isinstance(value, str) else str(value)
                assert ann[name] == expected, (clip_key, name)
        assert ann["viewpoint"] == record["viewpoint"]
        assert ann["quality_score"] == record["quality_score"]
        assert ann["text_truncated"] == record["text_truncated"]
        assert ann["video_found"] is True
        clip = clips[clip_key]
        assert clip["viewpoint"] == record["viewpoint"]
        assert clip["segmentation"] == "annotation"
        assert (clip["taxonomy_l1"], clip["taxonomy_l2"]) == (
            record["taxonomy_l1"],
            record["taxonomy_l2"],
        )
        assert clip["uri"].endswith(record["file"])


def test_durations_agree_with_decoding_within_one_frame(preview_lakehouse, preview_dir):
    rows = preview_lakehouse.sql(
        "select v.uri, v.num_frames, v.fps, v.duration_s, v.width, v.height, c.duration_s as clip_s"
        " from videos v join clips c using (video_id)"
    ).to_pylist()
    assert len(rows) == 36
    for row in rows:
        with av.open(row["uri"]) as container:
            stream = container.streams.video[0]
            frames = [f.time for f in container.decode(stream)]
            width, height = stream.codec_context.width, stream.codec_context.height
        decoded_duration = frames[-1] - frames[0] + 1 / row["fps"]
        assert row["num_frames"] == len(frames)
        assert abs(row["duration_s"] - decoded_duration) <= 1 / row["fps"]
        assert abs(row["clip_s"] - decoded_duration) <= 1 / row["fps"]
        assert (row["width"], row["height"]) == (width, height)


def test_metadata_matches_the_annotation_file(preview_lakehouse, preview_records):
    rows = preview_lakehouse.sql(
        "select external_id, fps, width, height, video_duration_s from clip_facts"
    ).to_pylist()
    for row in rows:
        record = preview_records[row["external_id"]]
        assert row["fps"] == pytest.approx(record["fps"], abs=0.01)
        assert (row["width"], row["height"]) == (record["width"], record["height"])
        assert row["video_duration_s"] == pytest.approx(record["duration_s"], abs=1 / record["fps"])


def test_a_query_for_ego_clips_returns_exactly_the_ego_clips(preview_lakehouse, preview_records):
    got = (
        preview_lakehouse.sql("select external_id from clip_facts where viewpoint = ?", ["ego"])
        .column("external_id")
        .to_pylist()
    )
    expected = {k for k, r in preview_records.items() if r["viewpoint"] == "ego"}
    assert sorted(got) == sorted(expected) and len(expected) == 17


def test_every_clip_has_keyframes_within_its_span(preview_lakehouse):
    rows = preview_lakehouse.sql(
        "select c.clip_id, c.start_s, c.end_s, count(k.keyframe_id) as n,"
        " min(k.time_s) as first, max(k.time_s) as last"
        " from clips c left join keyframes k using (clip_id) group by all"
    ).to_pylist()
    for row in rows:
        expected = min(max(1, -(-(row["end_s"] - row["start_s"]) // 2.0)), 8)
        assert row["n"] == expected, row
        assert row["start_s"] <= row["first"] and row["last"] < row["end_s"]


def test_reingest_adds_nothing(preview_lakehouse, preview_dir):
    before = preview_lakehouse.versions()
    results = preview_lakehouse.ingest(preview_dir, source="humannet")
    assert all(not r.write.changed for r in results)
    assert preview_lakehouse.versions() == before
