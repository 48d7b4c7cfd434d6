"""Embedding stages: one vector per clip and model, incremental, model versions kept apart."""

import json
import shutil

import numpy as np
import pytest
from conftest import with_models

from lakehouse.api import Lakehouse
from lakehouse.enrich.embeddings import embed_captions, embed_clips
from lakehouse.ingest.sources import register_source
from lakehouse.models.resolve import RANDOM_TAG
from lakehouse.pipeline import run_stages


@pytest.fixture
def folder(tmp_path, synthetic_videos):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(synthetic_videos["ego"], folder / "a.mp4")
    shutil.copy(synthetic_videos["exo"], folder / "b.mp4")
    (folder / "labels.jsonl").write_text(
        json.dumps(
            {
                "file": "a.mp4",
                "caption": "hands reach for a cup",
                "motion": "reaching",
                "viewpoint": "ego",
            }
        )
        + "\n"
        + json.dumps({"file": "b.mp4", "caption": "a person dances", "viewpoint": "exo"})
        + "\n"
    )
    return folder


def _ingest(config, folder):
    lh = Lakehouse(config)
    source = register_source(lh, folder, name="cam", annotations=[folder / "labels.jsonl"])
    return lh, source, run_stages(lh, source, run_id="r1")


def test_clip_and_caption_vectors(tiny_clip_config, folder):
    lh, _, results = _ingest(tiny_clip_config, folder)
    by_stage = {r.stage: r for r in results}
    assert by_stage["clip_embeddings"].write.inserted == 2
    assert by_stage["text_embeddings"].write.inserted == 3  # 2 captions + 1 motion
    rows = lh.read("clip_embeddings").to_pylist()
    keyframes = lh.read("keyframes").to_pylist()
    for row in rows:
        assert RANDOM_TAG in row["model_id"]
        assert abs(np.linalg.norm(row["vector"]) - 1) < 1e-5
        frames = sorted(
            (k for k in keyframes if k["clip_id"] == row["clip_id"]), key=lambda k: k["idx"]
        )
        assert row["keyframe_ids"] == [k["keyframe_id"] for k in frames]
        assert len(row["keyframe_vectors"]) == len(frames)
        pooled = np.mean(row["keyframe_vectors"], axis=0)
        assert np.allclose(pooled / np.linalg.norm(pooled), row["vector"], atol=1e-5)
        assert row["viewpoint"] in ("ego", "exo") and row["uri"].endswith(".mp4")
    texts = {(r["field"], r["text"]) for r in lh.read("text_embeddings").to_pylist()}
    assert texts == {
        ("short_caption", "hands reach for a cup"),
        ("short_caption", "a person dances"),
        ("semantic_motion", "reaching"),
    }


def test_reruns_embed_nothing_and_new_clips_only_themselves(
    tiny_clip_config, folder, synthetic_videos
):
    lh, source, _ = _ingest(tiny_clip_config, folder)
    versions = lh.versions()
    again = run_stages(lh, source, run_id="r2")
    assert all(not r.write.changed for r in again)
    assert lh.versions() == versions
    shutil.copy(synthetic_videos["cuts"], folder / "c.mp4")  # three scene-cut clips
    result = embed_clips(lh, source, run_id="r3")
    assert result.details["embedded"] == 0  # no keyframes yet for c.mp4
    results = {r.stage: r for r in run_stages(lh, source, run_id="r3")}
    assert results["clip_embeddings"].details["embedded"] == 3
    assert results["text_embeddings"].details["embedded"] == 0


def test_switching_models_keeps_old_vectors_and_backfills(
    tiny_clip_config, folder, tmp_path, capsys
):
    _, source, _ = _ingest(tiny_clip_config, folder)
    import torch

    from lakehouse.models.encoders import load_clip

    model = load_clip(tiny_clip_config.models)
    for p in model.model.parameters():
        p.data.mul_(1.01)
    checkpoint = tmp_path / "tuned.pt"
    torch.save(model.model.state_dict(), checkpoint)
    tuned = with_models(tiny_clip_config, clip_pretrained="tuned", clip_checkpoint=str(checkpoint))
    lh2 = Lakehouse(tuned)
    result = embed_clips(lh2, source, run_id="r2")
    assert result.details["embedded"] == 2
    from lakehouse.publication.publish import publish

    publish(lh2)  # a stage function writes; readers see its rows once they are published
    models = lh2.sql("select model_id, count(*) as n from clip_embeddings group by 1").to_pylist()
    assert len(models) == 2 and all(m["n"] == 2 for m in models)
    assert embed_clips(lh2, source, run_id="r3").details["embedded"] == 0

    from lakehouse.cli.main import main

    main(["models", "--root", tuned.root, "--config", _toml(tmp_path, tuned)])
    out = capsys.readouterr().out
    assert "(configured)" in out and "(stale)" in out


def _toml(tmp_path, config):
    path = tmp_path / "lakehouse.toml"
    m = config.models
    path.write_text(
        f'[models]\nclip_arch = "{m.clip_arch}"\nclip_pretrained = "{m.clip_pretrained}"\n'
        f'clip_checkpoint = "{m.clip_checkpoint}"\n'
    )
    return str(path)


def test_edited_captions_and_metadata_are_refreshed(tiny_clip_config, folder):
    lh, source, _ = _ingest(tiny_clip_config, folder)
    (folder / "labels.jsonl").write_text(
        json.dumps(
            {
                "file": "a.mp4",
                "caption": "hands grab a mug",
                "motion": "reaching",
                "viewpoint": "exo",
            }
        )
        + "\n"
        + json.dumps({"file": "b.mp4", "caption": "a person dances", "viewpoint": "exo"})
        + "\n"
    )
    results = {r.stage: r for r in run_stages(lh, source, run_id="r2")}
    assert results["text_embeddings"].details["embedded"] == 1  # only the edited caption
    assert results["clip_embeddings"].details["embedded"] == 0
    assert results["clip_embeddings"].write.updated == 1  # its viewpoint changed
    rows = lh.sql(
        "select viewpoint, short_caption from clip_embeddings order by short_caption"
    ).to_pylist()
    assert rows == [
        {"viewpoint": "exo", "short_caption": "a person dances"},
        {"viewpoint": "exo", "short_caption": "hands grab a mug"},
    ]


def test_unavailable_clip_model_skips_with_the_message(config, folder, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    lh, source, results = _ingest(config, folder)
    clip = next(r for r in results if r.stage == "clip_embeddings")
    assert clip.details["status"] == "skipped: model unavailable"
    assert "models.clip_checkpoint" in clip.details["message"]
    text = next(r for r in results if r.stage == "text_embeddings")
    assert text.write.inserted == 3  # the other assets still materialize
    assert embed_captions(lh, source, run_id="x").details["embedded"] == 0


def test_the_model_starts_before_the_chunk_is_decoded(tiny_clip_config, folder, monkeypatch):
    """Decoding runs one model batch ahead in a thread: the first forward call comes before the
    last batch of the chunk is decoded (not after the whole chunk, as a per-chunk prefetch did)."""
    from lakehouse.enrich import embeddings
    from lakehouse.models.encoders import ClipModel

    config = with_models(tiny_clip_config, batch_size=1)
    lh = Lakehouse(config)
    source = register_source(lh, folder, name="cam", annotations=[folder / "labels.jsonl"])
    run_stages(lh, source, run_id="r1", embed=False)
    events = []
    preprocess, encode = embeddings._preprocess, ClipModel.encode_images

    def recorded_preprocess(model, jpegs):
        events.append("decode")
        return preprocess(model, jpegs)

    def recorded_encode(self, images):
        events.append("forward")
        return encode(self, images)

    monkeypatch.setattr(embeddings, "_preprocess", recorded_preprocess)
    monkeypatch.setattr(ClipModel, "encode_images", recorded_encode)
    result = embed_clips(lh, source, run_id="r1")
    keyframes = lh.count("keyframes")
    assert result.write.inserted == 2 and keyframes >= 4
    assert events.count("decode") == keyframes and events.count("forward") == keyframes
    last_decode = len(events) - 1 - events[::-1].index("decode")
    assert events.index("forward") < last_decode
    rows = lh.read("clip_embeddings").to_pylist()
    assert all(len(r["keyframe_vectors"]) == len(r["keyframe_ids"]) > 0 for r in rows)


@pytest.mark.parametrize("depth", [0, 2])
def test_ahead_works_depth_items_ahead_and_keeps_order(depth):
    """The one prefetch helper (lakehouse.core.concurrency.ahead): in order; with depth 0 an item
    is produced only when asked for, with depth N the thread holds N produced items (and one in
    hand) while the consumer works, never more."""
    import time

    from lakehouse.core.concurrency import ahead

    pulled = []

    def items():
        for i in range(6):
            pulled.append(i)
            yield i * 10

    seen = []
    for value in ahead(items(), depth=depth):
        if not seen:  # the consumer works on the first item: the thread fills its buffer
            deadline = time.monotonic() + 5
            while len(pulled) < depth + 2 and depth and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.05)
            assert len(pulled) == (depth + 2 if depth else 1)
        seen.append(value)
    assert seen == [0, 10, 20, 30, 40, 50]


def test_ahead_raises_the_producers_error_at_its_item_and_stops_when_closed():
    from lakehouse.core.concurrency import ahead

    def failing():
        yield 1
        raise ValueError("bad item")

    got = []
    with pytest.raises(ValueError, match="bad item"):
        for value in ahead(failing()):
            got.append(value)
    assert got == [1]
    closed = []

    def endless():
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            closed.append(True)

    stream = ahead(endless())
    assert next(stream) == 1
    stream.close()  # the thread stops and closes the generator it was reading
    assert closed == [True]
