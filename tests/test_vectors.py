"""The vector query planner: exact over cached rows for selective filters, ANN with effort
scaled by selectivity otherwise, model isolation, freshness across processes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lakehouse.api import Lakehouse
from lakehouse.core.schemas import clip_embeddings_schema
from lakehouse.search.indexes import refresh_indexes
from lakehouse.search.vectors import vector_table

DIM = 32
COLUMNS = ["clip_id", "viewpoint", "duration_s"]


def rows_for(vectors: np.ndarray, model: str, first: int = 0) -> list[dict]:
    return [
        {
            "embedding_id": f"c{first + i}:{model}",
            "clip_id": f"c{first + i}",
            "model_id": model,
            "vector": v,
            "keyframe_ids": [],
            "keyframe_vectors": [],
            "source": "s",
            "viewpoint": "ego" if (first + i) % 100 == 0 else "exo",
            "duration_s": float((first + i) % 60),
        }
        for i, v in enumerate(vectors)
    ]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def table(config):
    """4,000 vectors of model m1, indexed (IVF_RQ), exact_max_rows 100."""
    rng = np.random.default_rng(0)
    vectors = unit(rng.normal(size=(4000, DIM)))
    search = dataclasses.replace(config.search, ann_min_rows=1000, exact_max_rows=100)
    lh = Lakehouse(dataclasses.replace(config, search=search))
    lh.upsert("clip_embeddings", rows_for(vectors, "m1"), schema=clip_embeddings_schema(DIM))
    refresh_indexes(lh)
    return lh, vectors


def test_an_ann_index_is_built_only_from_the_configured_row_count(config):
    search = dataclasses.replace(config.search, ann_min_rows=1000)
    lh = Lakehouse(dataclasses.replace(config, search=search))
    vectors = unit(np.random.default_rng(1).normal(size=(1000, DIM)))

    def vector_indexes() -> list:
        table = lh.lancedb_table("clip_embeddings", latest=True)
        return [i for i in table.list_indices() if i.columns == ["vector"]]

    schema = clip_embeddings_schema(DIM)
    lh.upsert("clip_embeddings", rows_for(vectors[:999], "m1"), schema=schema)
    report = refresh_indexes(lh)["clip_embeddings"]
    assert report["rows"] == 999
    assert not any("ANN" in a for a in report["actions"]) and vector_indexes() == []
    assert "scalar index on clip_id" in report["actions"]  # the other indexes do not wait

    lh.upsert("clip_embeddings", rows_for(vectors[999:], "m1", first=999), schema=schema)
    report = refresh_indexes(lh)["clip_embeddings"]
    assert report["rows"] == 1000
    assert "ANN index (IVF_RQ) on vector" in report["actions"]
    assert len(vector_indexes()) == 1


def exact_ids(vectors: np.ndarray, q: np.ndarray, mask: np.ndarray, k: int) -> list[str]:
    rows = np.flatnonzero(mask)
    return [f"c{i}" for i in rows[np.argsort(-(vectors[rows] @ q))][:k]]


def test_a_selective_filter_is_searched_exactly_from_a_cached_block(table):
    lh, vectors = table
    vt = vector_table(lh, "clip_embeddings")
    ego = np.arange(len(vectors)) % 100 == 0  # 40 rows, under exact_max_rows
    for seed in range(5):
        q = unit(np.random.default_rng(seed).normal(size=DIM))
        rows, plan = vt.nearest(
            q, model_id="m1", condition="viewpoint = 'ego'", columns=COLUMNS, limit=10
        )
        assert plan.kind == "exact" and plan.passing == 40
        assert [r["clip_id"] for r in rows] == exact_ids(vectors, q, ego, 10)
        assert rows[0]["score"] == pytest.approx(float(vectors[int(rows[0]["clip_id"][1:])] @ q))
    assert len(vt._blocks) == 1  # five queries, one read of the 40 rows


def test_ann_effort_grows_as_the_filter_gets_more_selective(table):
    lh, _ = table
    vt = vector_table(lh, "clip_embeddings")
    q = unit(np.random.default_rng(1).normal(size=DIM))
    _, everything = vt.nearest(q, model_id="m1", condition=None, columns=COLUMNS, limit=10)
    _, tenth = vt.nearest(q, model_id="m1", condition="duration_s < 6", columns=COLUMNS, limit=10)
    assert everything.kind == tenth.kind == "ann"
    settings = lh.config.search
    assert (everything.nprobes, everything.refine_factor) == (
        settings.nprobes,
        settings.refine_factor,
    )
    assert tenth.passing == sum(i % 60 < 6 for i in range(4000))  # 10%
    assert tenth.nprobes > everything.nprobes and tenth.refine_factor > everything.refine_factor


def test_rows_of_another_model_never_come_back(table):
    lh, _ = table
    other = unit(np.random.default_rng(7).normal(size=(500, DIM)))
    lh.upsert(
        "clip_embeddings", rows_for(other, "m2", first=10_000), schema=clip_embeddings_schema(DIM)
    )
    vt = vector_table(lh, "clip_embeddings")
    q = other[3]  # m2's own vector: the best m2 hit, never an m1 answer
    for condition in (None, "viewpoint = 'ego'"):
        m1, plan = vt.nearest(q, model_id="m1", condition=condition, columns=COLUMNS, limit=20)
        assert m1 and all(int(r["clip_id"][1:]) < 4000 for r in m1), plan
    m2, plan = vt.nearest(q, model_id="m2", condition=None, columns=COLUMNS, limit=1)
    assert plan.passing == 500  # the m2 rows are not indexed yet: Lance scans them exactly
    assert m2[0]["clip_id"] == "c10003" and m2[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_a_cache_budget_too_small_scans_inside_lance_with_the_same_answer(config):
    rng = np.random.default_rng(2)
    vectors = unit(rng.normal(size=(300, DIM)))
    search = dataclasses.replace(config.search, cache_mb=0)
    lh = Lakehouse(dataclasses.replace(config, search=search))
    lh.upsert("clip_embeddings", rows_for(vectors, "m1"), schema=clip_embeddings_schema(DIM))
    q = unit(rng.normal(size=DIM))
    rows, plan = vector_table(lh, "clip_embeddings").nearest(
        q, model_id="m1", condition="duration_s >= 30", columns=COLUMNS, limit=5
    )
    mask = np.arange(300) % 60 >= 30
    assert plan.kind == "scan"
    assert [r["clip_id"] for r in rows] == exact_ids(vectors, q, mask, 5)


def test_writes_by_another_process_are_seen_by_a_warm_handle(table, tmp_path):
    lh, _ = table
    vt = vector_table(lh, "clip_embeddings")
    q = unit(np.random.default_rng(3).normal(size=DIM))
    before, _ = vt.nearest(
        q, model_id="m1", condition="viewpoint = 'ego'", columns=COLUMNS, limit=1
    )
    assert before[0]["clip_id"] != "fresh"
    np.save(tmp_path / "q.npy", q)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from lakehouse.core.config import Config
        from lakehouse.core.schemas import clip_embeddings_schema
        from lakehouse.api import Lakehouse
        lh = Lakehouse(Config.load(root={lh.root!r}, env={{}}))
        q = np.load({str(tmp_path / "q.npy")!r})
        lh.upsert("clip_embeddings", [{{
            "embedding_id": "fresh:m1", "clip_id": "fresh", "model_id": "m1", "vector": q,
            "keyframe_ids": [], "keyframe_vectors": [], "viewpoint": "ego"}}],
            schema=clip_embeddings_schema({DIM}))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    after, plan = vt.nearest(
        q, model_id="m1", condition="viewpoint = 'ego'", columns=COLUMNS, limit=1
    )
    assert plan.passing == 41 and after[0]["clip_id"] == "fresh"
    unfiltered, _ = vt.nearest(q, model_id="m1", condition=None, columns=COLUMNS, limit=1)
    assert unfiltered[0]["clip_id"] == "fresh"  # new rows are searched before reindexing


def test_a_query_vector_of_the_wrong_width_is_a_clear_error(table):
    from lakehouse.core.errors import InputError

    lh, _ = table
    with pytest.raises(InputError, match="32-d vectors"):
        vector_table(lh, "clip_embeddings").nearest(
            np.ones(8, np.float32), model_id="m1", condition=None, columns=COLUMNS, limit=1
        )


def test_rows_are_read_by_row_id_in_order_without_the_private_take(table):
    from lakehouse.search.vectors import take_by_row_id

    lh, _ = table
    ds = lh.dataset("clip_embeddings")
    ids = ds.to_table(columns=["clip_id"], with_row_id=True, limit=50)
    wanted = [ids.column("_rowid")[i].as_py() for i in (40, 3, 17)]

    class PublicOnly:  # a dataset without ``_take_rows``: the public filter path
        def __init__(self, inner):
            self.to_table = inner.to_table

    expected = [ids.column("clip_id")[i].as_py() for i in (40, 3, 17)]
    for handle in (ds, PublicOnly(ds)):
        assert [r["clip_id"] for r in take_by_row_id(handle, wanted, ["clip_id"])] == expected


def test_a_filter_that_excludes_the_query_neighbourhood_still_finds_its_rows(config):
    """Ten tight ego clusters and ten exo ones (100,000 rows, about 24 partitions): under
    ``viewpoint = 'ego'`` an exo query's nearest partitions hold no passing row, and the
    filtered top 10 (far from it) lies anywhere; the planner sees that from its sample and
    reads the passing rows' vectors (they fit the cache) rather than probe every partition, or,
    with a cache too small for them, probes every partition with a deeper re-rank. An ego query
    keeps the ordinary re-rank."""
    rng = np.random.default_rng(5)
    centers = unit(rng.normal(size=(20, DIM)))
    members = np.repeat(np.arange(20), 5000)
    vectors = unit(centers[members] + rng.normal(scale=0.08, size=(len(members), DIM)))
    rows = rows_for(vectors, "m1")
    for row, cluster in zip(rows, members, strict=True):
        row["viewpoint"] = "ego" if cluster % 2 == 0 else "exo"
    search = dataclasses.replace(config.search, ann_min_rows=1000, exact_max_rows=100)
    lh = Lakehouse(dataclasses.replace(config, search=search))
    lh.upsert("clip_embeddings", rows, schema=clip_embeddings_schema(DIM))
    refresh_indexes(lh)
    small = Lakehouse(
        dataclasses.replace(lh.config, search=dataclasses.replace(search, cache_mb=1))
    )
    ego = members % 2 == 0
    partitions = vector_table(lh, "clip_embeddings").current().partitions
    assert partitions >= 16
    queries = {
        name: unit(centers[cluster] + rng.normal(scale=0.05, size=DIM))
        for name, cluster in (("exo", 1), ("ego", 2))
    }
    recalls, plans = {}, {}
    for cache, handle in (("fits", lh), ("small", small)):
        vt = vector_table(handle, "clip_embeddings")
        for name, q in queries.items():
            found, plan = vt.nearest(
                q, model_id="m1", condition="viewpoint = 'ego'", columns=COLUMNS, limit=10
            )
            assert plan.passing == int(ego.sum())
            want = set(exact_ids(vectors, q, ego, 10))
            recalls[cache, name] = len(want & {r["clip_id"] for r in found}) / 10
            plans[cache, name] = plan
    assert plans["fits", "exo"].kind == "exact" and recalls["fits", "exo"] == 1.0
    far = plans["small", "exo"]
    assert far.kind == "ann" and far.nprobes == partitions and far.refine_factor >= 100, far
    # near its own rows: the ordinary re-rank (the configured probes already cover most of
    # this small index, so only the re-ranking tells the two apart)
    assert plans["small", "ego"].refine_factor == search.refine_factor, plans
    # (the 1-bit codes of 32-d vectors rank poorly inside one tight cluster, so the ego query's
    # recall is not the point here; at 512-d it is 0.99+, bench/README.md)
    # Lance's k-means is not seeded, so the index differs between runs: the far plan measured
    # 0.8-1.0 over seven runs (the ordinary plan finds none of its rows: no passing row is in
    # its nearest partitions)
    assert recalls["small", "exo"] >= 0.7, recalls
