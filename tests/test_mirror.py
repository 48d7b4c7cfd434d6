"""The Parquet copy of published clips that SQL scans (lakehouse/mirror.py): the same rows and
types as the Lance table, one file per fragment (an increment writes only its own), versions
without a copy read from Lance, cleanup keeps exactly the copies of kept versions, and the
files cannot be read by path from user SQL."""

from __future__ import annotations

import dataclasses
import os

import lance
import pyarrow as pa
import pytest

from lakehouse.api import Lakehouse
from lakehouse.core import schemas
from lakehouse.core.errors import QueryRefusedError
from lakehouse.publication.publish import publish
from lakehouse.query.session import Session
from lakehouse.storage import mirror
from lakehouse.storage.scan import refresh_scalar_indexes

RARE = "a welder lights a welding torch"  # 0.5% of the clips
SOMETIMES = "a man irons a shirt"  # 3% of the clips


def clip_rows(start: int, n: int, source: str = "s1") -> pa.Table:
    rows = []
    for i in range(start, start + n):
        caption = (
            RARE if i % 200 == 7 else SOMETIMES if i % 33 == 5 else f"a person does thing {i % 17}"
        )
        rows.append(
            {
                "clip_id": f"c{i:05d}",
                "video_id": f"v{i // 5:04d}",
                "source": source,
                "probe_status": "ok",
                "start_s": float(i % 7),
                "end_s": float(i % 7) + 2.5,
                "duration_s": 2.5 + (i % 11) * 0.1,
                "viewpoint": ("ego", "exo", "unknown")[i % 3],
                "segmentation": "annotation",
                "annotation_count": i % 3,
                "taxonomy_l1": None if i % 4 == 0 else f"T{i % 5}",
                "short_caption": caption,
                "long_caption": None if i % 6 == 0 else f"long text {i} with ünïcode",
                "width": 640 if i % 2 else None,
                "has_audio": bool(i % 2),
                "text_truncated": i % 9 == 0,
            }
        )
    return pa.Table.from_pylist(rows, schema=schemas.CLIPS)


def without_copy(lh: Lakehouse) -> Lakehouse:
    sql = dataclasses.replace(lh.config.sql, mirror=False)
    return Lakehouse(dataclasses.replace(lh.config, sql=sql))


def copy_files(lh: Lakehouse) -> set[str]:
    base = mirror.folder(lh, "clips")
    return {e for e in os.listdir(base) if e.endswith(".parquet")} if os.path.isdir(base) else set()


@pytest.fixture
def published(lh: Lakehouse) -> Lakehouse:
    """Clips in three fragments, one with deleted rows, published (so copied)."""
    lh.upsert("clips", clip_rows(0, 600))
    lh.upsert("clips", clip_rows(600, 600))
    lh.upsert("clips", clip_rows(1200, 200, source="s2"))
    lh.delete("clips", "clip_id IN ('c00010', 'c00011', 'c00650')")
    publish(lh, ["clips"])
    return lh


QUERIES = [
    "select * from clips order by clip_id",
    "select * from clip_facts order by clip_id",
    "select viewpoint, taxonomy_l1, count(*) as n, round(sum(duration_s), 6) as s "
    "from clip_facts "
    "group by all order by all",
    "select clip_id from clip_facts where short_caption like '%thing 3%' and duration_s > 3 "
    "order by clip_id",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_the_copy_answers_with_the_rows_and_types_of_the_lance_table(published, sql):
    with Session(published) as session:
        assert set(session.mirrored) == {"clips"}
        copied = session.query(sql)
    with Session(without_copy(published)) as session:
        assert session.mirrored == {}
        plain = session.query(sql)
    assert copied.num_rows > 0
    assert copied.schema == plain.schema
    assert copied.to_pylist() == plain.to_pylist()


def test_the_copy_is_what_duckdb_scans(published):
    with Session(published) as session:
        plan = "\n".join(
            r[1] for r in session.con.execute("EXPLAIN SELECT * FROM clips").fetchall()
        )
    assert "READ_PARQUET" in plan.upper() or "PARQUET_SCAN" in plan.upper()
    assert published.sql("select count(*) as n from clips").to_pylist() == [{"n": 1397}]


def test_one_file_per_fragment_and_an_increment_writes_only_its_own(published):
    lh = published
    ds = lh.dataset("clips")
    first = copy_files(lh)
    assert len(first) == len(ds.get_fragments()) == 3
    # a new source: one new fragment, one new file, the others kept as they are
    lh.upsert("clips", clip_rows(1400, 100, source="s3"))
    written = mirror.publish(lh, {"clips": lh.dataset("clips").version})
    assert written == {"clips": 1}
    assert first < copy_files(lh) and len(copy_files(lh)) == 4
    # deleting rows of one fragment rewrites that fragment's file only
    lh.delete("clips", "clip_id = 'c01450'")
    assert publish(lh, ["clips"])["clips"] == lh.dataset("clips").version
    assert first < copy_files(lh)
    assert len(copy_files(lh) - first) == 2  # s3's before and after the delete, nothing else
    assert lh.sql("select count(*) as n from clips where source = 's3'").to_pylist() == [{"n": 99}]
    # publishing the same version again writes nothing
    assert mirror.publish(lh, {"clips": lh.dataset("clips").version}) == {"clips": 0}


def test_a_version_without_a_copy_is_read_from_lance(published):
    lh = published
    lh.upsert("clips", clip_rows(5000, 10, source="late"))  # written, not published
    with Session(lh, latest=True) as session:
        assert session.mirrored == {}
        assert session.query("select count(*) as n from clips").to_pylist() == [{"n": 1407}]
    with Session(lh) as session:  # the published version, from its copy
        assert set(session.mirrored) == {"clips"}
        assert session.query("select count(*) as n from clips").to_pylist() == [{"n": 1397}]
    # a copy missing a file is not used (never a partial table)
    os.unlink(mirror.parts(lh, "clips", lh.published_version("clips"))[0])
    assert mirror.parts(lh, "clips", lh.published_version("clips")) is None
    with Session(lh) as session:
        assert session.mirrored == {}
        assert session.query("select count(*) as n from clips").to_pylist() == [{"n": 1397}]


def test_cleanup_keeps_exactly_the_copies_of_the_versions_it_keeps(published):
    lh = published
    before = mirror.parts(lh, "clips", lh.published_version("clips"))
    lh.delete("clips", "source = 's2'")  # a new version, with s2's fragment gone
    publish(lh, ["clips"])
    old_version = lh.published_version("clips") - 1
    assert lh.dataset("clips", version=old_version) is not None
    lh.cleanup(older_than_s=0)
    after = mirror.parts(lh, "clips", lh.published_version("clips"))
    assert after is not None and set(after) < set(before)  # s2's file went with its version
    assert copy_files(lh) == {os.path.basename(p) for p in after}
    assert not [
        e for e in os.listdir(mirror.folder(lh, "clips")) if e.startswith(mirror.TMP_PREFIX)
    ]
    assert lh.sql("select count(*) as n from clips").to_pylist() == [{"n": 1200 - 3}]


def test_user_sql_cannot_read_the_copy_by_path(published):
    path = mirror.parts(published, "clips", published.published_version("clips"))[0]
    with Session(published) as session:
        for sql in (
            f"select * from '{path}'",
            f"select * from read_parquet('{path}')",
            f"select * from '{os.path.dirname(path)}/*.parquet'",
        ):
            with pytest.raises(QueryRefusedError):
                session.query(sql)
        assert session.query("select count(*) as n from clips").to_pylist() == [{"n": 1397}]


def test_an_old_table_version_is_copied_with_the_new_columns_null(lh):
    old = pa.schema([f for f in schemas.CLIPS if f.name not in schemas.CLIP_VIDEO_FIELDS])
    row = {n: None for n in old.names} | {"clip_id": "c1", "video_id": "v1", "source": "s"}
    lance.write_dataset(pa.Table.from_pylist([row], schema=old), lh.table_uri("clips"))
    publish(lh, ["clips"])
    with Session(lh) as session:
        assert set(session.mirrored) == {"clips"}
        out = session.query("select clip_id, codec, video_duration_s from clip_facts")
    assert out.to_pylist() == [{"clip_id": "c1", "codec": None, "video_duration_s": None}]
    assert out.schema.field("video_duration_s").type == pa.float64()


def test_only_rare_indexed_phrases_go_to_lance_when_there_is_a_copy(lh, filters):
    lh.upsert("clips", clip_rows(0, 2000))
    refresh_scalar_indexes(lh, min_rows=0)
    publish(lh, ["clips"])
    seen = filters
    plain = without_copy(lh)
    for phrase, rows, to_lance in (("welding torch", 10, True), ("irons a shirt", 61, False)):
        sql = f"select clip_id from clip_facts where short_caption like '%{phrase}%' order by 1"
        seen.clear()
        out = lh.sql(sql).column(0).to_pylist()
        assert len(out) == rows
        assert any("match_substring" in f for f in seen) is to_lance
        assert out == plain.sql(sql).column(0).to_pylist()
        # after the query the session reads the copy again
        seen.clear()
        assert lh.sql("select count(*) as n from clips").to_pylist() == [{"n": 2000}]
        assert seen == []  # no Lance scan: the count came from the Parquet copy
