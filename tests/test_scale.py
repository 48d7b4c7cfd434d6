"""Scale features that need no cluster: scalar indexes on the SQL tables, the scan options
DuckDB gets, the reused SQL session, and the compute backend setting."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lakehouse.core import schemas
from lakehouse.core.config import Config
from lakehouse.core.errors import ConfigError
from lakehouse.storage.scan import SCALAR_INDEXES, for_sql, refresh_scalar_indexes

QUERY = (
    "select clip_id, duration_s from clip_facts where viewpoint = ? and taxonomy_l1 = ? "
    "and duration_s > ? order by clip_id"
)


def clip_rows(start: int, n: int) -> pa.Table:
    rows = [
        {
            "clip_id": f"c{i:06d}",
            "video_id": f"v{i // 10:05d}",
            "source": "synthetic",
            "probe_status": "ok",
            "start_s": 0.0,
            "end_s": 1.0 + i % 17,
            "duration_s": 1.0 + i % 17,
            "viewpoint": ("ego", "exo")[i % 2],
            "segmentation": "annotation",
            "taxonomy_l1": ("Dance", "Sports", None)[i % 3],
            "annotation_count": 1,
            "short_caption": f"a person does thing {i}",
        }
        for i in range(start, start + n)
    ]
    return pa.Table.from_pylist(rows, schema=schemas.CLIPS)


def test_scalar_indexes_answer_the_same_and_cover_new_rows(lh):
    lh.upsert("clips", clip_rows(0, 3000))
    params = ["exo", "Dance", 8.0]
    before = lh.sql(QUERY, params).to_pylist()
    assert before  # the filter passes some rows
    report = refresh_scalar_indexes(lh, min_rows=0)
    indexed = {tuple(i.field_names) for i in lh.dataset("clips").describe_indices()}
    wanted = {(column,) for column, _ in SCALAR_INDEXES["clips"]}
    assert wanted <= indexed and report["clips"]["actions"] != ["up to date"]
    assert lh.sql(QUERY, params).to_pylist() == before

    # 100 new rows (3%) stay unindexed under sql.index_lag_fraction (5%): found by scanning
    lh.upsert("clips", clip_rows(3000, 100))
    assert refresh_scalar_indexes(lh, min_rows=0)["clips"]["actions"] == [
        "100 new rows scanned until past 5%"
    ]
    few = lh.sql(QUERY, params).to_pylist()
    assert len(few) > len(before) and few[: len(before)] == before
    phrase = "select clip_id from clip_facts where short_caption like '%does thing 3042%'"
    assert lh.sql(phrase).column("clip_id").to_pylist() == ["c003042"]  # NGRAM + the new rows
    lh.upsert("clips", clip_rows(3100, 500))  # 600 of 3,600 unindexed now: refreshed
    after = lh.sql(QUERY, params).to_pylist()
    assert len(after) > len(few) and after[: len(few)] == few
    assert refresh_scalar_indexes(lh, min_rows=0)["clips"]["actions"] == ["indexes refreshed"]
    assert lh.sql(QUERY, params).to_pylist() == after
    assert lh.sql(phrase).column("clip_id").to_pylist() == ["c003042"]
    assert refresh_scalar_indexes(lh, min_rows=0)["clips"]["actions"] == ["up to date"]


def test_duckdb_scans_late_materialize_only_wide_columns(lh):
    clips = for_sql(lh.ensure("clips"))
    keyframes = for_sql(lh.ensure("keyframes"))
    assert clips.scan_options == {"late_materialization": False}
    assert keyframes.scan_options == {"late_materialization": ["jpeg"]}
    assert clips.scanner(columns=["clip_id"]).to_table().num_rows == 0


def test_the_reused_sql_session_sees_new_writes(lh):
    lh.upsert("clips", clip_rows(0, 10))
    assert lh.sql("select count(*) as n from clip_facts").column("n")[0].as_py() == 10
    session = lh.caches["lakehouse.query.session"][1]
    assert lh.sql("select count(*) as n from clips").column("n")[0].as_py() == 10
    assert lh.caches["lakehouse.query.session"][1] is session  # nothing changed: the same session
    lh.upsert("clips", clip_rows(10, 5))
    assert lh.sql("select count(*) as n from clip_facts").column("n")[0].as_py() == 15
    assert lh.caches["lakehouse.query.session"][1] is not session


def test_compute_backend_is_checked():
    assert Config.load(env={}).compute.backend == "local"
    ray = Config.from_dict({"compute": {"backend": "ray", "ray_address": "auto"}})
    assert ray.compute.backend == "ray" and ray.compute.ray_address == "auto"
    with pytest.raises(ConfigError, match="compute.backend"):
        Config.from_dict({"compute": {"backend": "spark"}})
