"""Near-duplicates by pixels: ``signals.duplicate_embedding = "visual"`` clusters re-encoded copies
with their originals on CLIP vectors, and ``"auto"`` never trusts a randomly initialised model.

The CLIP here is the randomly initialised test model (its model id says TEST ONLY): its vectors
say nothing about content, but identical pictures still give identical vectors, which is what a
re-encoded copy is. It does not tell content apart either: measured on generated clips, two
different scenes on the same background colours come out 0.9995 similar, so the clips that must
stay apart here differ in their colours."""

import dataclasses

import pytest

from lakehouse.api import Lakehouse
from lakehouse.enrich.duplicates import clip_vectors, find_near_duplicates
from lakehouse.ingest.sources import register_source
from lakehouse.media.cutting import cut_clip
from lakehouse.pipeline import run_stages


def frames_and_rate(path) -> tuple[int, float]:
    import av

    with av.open(str(path)) as container:
        rate = float(container.streams.video[0].average_rate)
        return sum(1 for _ in container.decode(video=0)), rate


@pytest.fixture
def copies_lh(tiny_clip_config, synthetic_videos, tmp_path):
    """Two generated clips (a tabletop on a wooden table, a dancer in a purple room) and a
    re-encoded copy of each (CRF 26), with CLIP vectors from the random test model."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("ego", "exo"):
        original = synthetic_videos[name]
        (folder / f"{name}.mp4").write_bytes(original.read_bytes())
        count, fps = frames_and_rate(original)
        data, _ = cut_clip(str(original), start_frame=0, end_frame=count, fps=fps, crf=26)
        (folder / f"{name}_copy.mp4").write_bytes(data)
    lh = Lakehouse(tiny_clip_config)
    source = register_source(lh, folder, name="cam")
    results = {r.stage: r for r in run_stages(lh, source, run_id="r1")}
    assert results["clip_embeddings"].details["embedded"] == 4
    names = {
        r["clip_id"]: r["uri"].rsplit("/", 1)[-1].removesuffix(".mp4")
        for r in lh.sql("select clip_id, uri from clip_facts").to_pylist()
    }
    return lh, names


def with_embedding(lh: Lakehouse, kind: str) -> Lakehouse:
    lh.config = dataclasses.replace(
        lh.config, signals=dataclasses.replace(lh.config.signals, duplicate_embedding=kind)
    )
    return lh


def test_visual_near_duplicates_cluster_copies_with_their_originals(copies_lh):
    lh, names = copies_lh
    result = find_near_duplicates(with_embedding(lh, "visual"), run_id="d1")
    assert result.details["embedding"] == "visual"
    assert "random-init-test-only" in result.details["model_id"]
    assert result.details["clusters"] == 2 and result.details["near_duplicates"] == 2
    rows = {names[r["clip_id"]]: r for r in lh.read("near_duplicates").to_pylist()}
    assert set(rows) == {"ego", "ego_copy", "exo", "exo_copy"}
    for name in ("ego", "exo"):
        original, copy = rows[name], rows[f"{name}_copy"]
        assert original["cluster_id"] == copy["cluster_id"]
        assert original["cluster_size"] == copy["cluster_size"] == 2
        member = copy if copy["near_duplicate_of"] else original
        assert member["similarity"] > 0.999  # measured 0.99998 and 0.99997
        assert {r["embedding"] for r in rows.values()} == {"visual"}
    assert rows["ego"]["cluster_id"] != rows["exo"]["cluster_id"]
    # measured: the tabletop and the dancer are 0.65 apart with these random weights
    _, _, ids, matrix = clip_vectors(lh, "visual")
    index = {names[c]: i for i, c in enumerate(ids)}
    assert matrix[index["ego"]] @ matrix[index["exo"]] < lh.config.signals.duplicate_threshold
    kept = lh.sql("select clip_id from exclude_near_duplicates(clip_facts)").column(0).to_pylist()
    assert len(kept) == 2 and {names[c].removesuffix("_copy") for c in kept} == {"ego", "exo"}


def test_auto_mode_ignores_a_random_clip_model(copies_lh):
    lh, _ = copies_lh
    # no trained CLIP vectors and no captions: nothing to cluster on, and it says so
    result = find_near_duplicates(with_embedding(lh, "auto"), run_id="d1")
    assert result.details["embedding"] == "caption" and result.details["clusters"] == 0
    assert "no clip has an embedding" in result.details["message"]
