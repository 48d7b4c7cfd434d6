"""The synthetic HumanNet-like corpus of the scale benchmarks (bench/corpus.py): written through
the real tables, with the distributions its docstring promises, and the same rows for the same
spec."""

import importlib.util
import statistics
import sys
from pathlib import Path

import pytest

from lakehouse.core.schemas import CLIP_TABLE
from lakehouse.publication import checks

CORPUS = Path(__file__).resolve().parent.parent / "bench" / "corpus.py"


@pytest.fixture(scope="module")
def corpus():
    spec = importlib.util.spec_from_file_location("bench_corpus", CORPUS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_the_corpus_is_written_through_the_real_tables_with_its_distributions(corpus, lh):
    spec = corpus.CorpusSpec(clips=6_000, batch_clips=2_000)
    stats = corpus.write_corpus(lh, spec, log=False)
    assert stats.clips == lh.count("clips") == lh.count(CLIP_TABLE) == lh.count("annotations")
    assert stats.clips >= spec.clips and stats.videos == lh.count("videos")

    views = {
        r["viewpoint"]: r["n"]
        for r in lh.sql(
            "select viewpoint, count(distinct video_id) as n from clips group by 1"
        ).to_pylist()
    }
    assert set(views) == {"ego", "exo"}
    assert 0.35 < views["ego"] / stats.videos < 0.55  # 45% ego videos
    durations = lh.read("clips", columns=["duration_s"]).column("duration_s").to_pylist()
    assert 3.5 < statistics.median(durations) < 6.0 and min(durations) >= 1.0
    assert max(durations) <= 60.0
    facts = lh.sql(
        "select viewpoint, count(*) as n, count(taxonomy_l3) as leaf, "
        "count(distinct taxonomy_l1) as l1, count(short_caption) as captions "
        "from clip_facts group by viewpoint order by viewpoint"
    ).to_pylist()
    ego, exo = facts
    assert ego["leaf"] == 0 and exo["leaf"] == exo["n"]  # exo clips carry the taxonomy
    assert exo["l1"] >= 5 and ego["captions"] == ego["n"] and exo["captions"] == exo["n"]
    vectors = checks.unit_vectors(lh, CLIP_TABLE, lh.dataset(CLIP_TABLE).version)
    assert vectors.passed and vectors.metadata["vectors_checked"] == stats.clips
    assert lh.dataset(CLIP_TABLE).schema.field("vector").type.list_size == corpus.DIM


def test_the_same_spec_gives_the_same_rows(corpus):
    spec = corpus.CorpusSpec(clips=1_500, batch_clips=1_000, seed=3)
    first = [b.clips for b in corpus.batches(spec)]
    again = [b.clips for b in corpus.batches(spec)]
    assert len(first) == len(again) >= 2
    assert all(a.equals(b) for a, b in zip(first, again, strict=True))
    other = next(corpus.batches(corpus.CorpusSpec(clips=1_500, batch_clips=1_000, seed=4))).clips
    assert not other.column("clip_id").equals(first[0].column("clip_id"))
