"""The locked-down DuckDB session: views over Lance tables, bound parameters, and refusals."""

import dataclasses
import time

import pytest

from lakehouse.api import Lakehouse
from lakehouse.core.errors import QueryError, QueryRefusedError, QueryTimeoutError
from lakehouse.query.session import Session

ESCAPES = [
    "select * from read_csv('/etc/passwd')",
    "select * from read_text('/etc/passwd')",
    "select * from '/etc/passwd'",
    "select * from glob('/*')",
    "select * from read_parquet('/tmp/anything.parquet')",
    "COPY (select 1) TO '/tmp/lakehouse_escape.csv'",
    "COPY clips TO '/tmp/lakehouse_escape.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '/tmp/lakehouse_escape_db'",
    "ATTACH '/tmp/lakehouse_escape.db' AS x",
    "ATTACH ':memory:' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET memory_limit = '100GB'",
    "RESET lock_configuration",
    "select 1; SET enable_external_access = true",
    "select 1; COPY (select 1) TO '/tmp/lakehouse_escape.csv'",
    "CREATE TABLE t AS select 1",
    "DROP VIEW clip_facts",
    "DELETE FROM clips",
    "UPDATE clips SET viewpoint = 'ego'",
    "PRAGMA enable_profiling",
    "CALL pragma_version()",
]


@pytest.fixture
def session(lh):
    with Session(lh) as s:
        yield s


@pytest.mark.parametrize("sql", ESCAPES)
def test_escape_attempts_are_refused(session, sql, tmp_path):
    with pytest.raises((QueryRefusedError, QueryError)) as info:
        session.query(sql)
    message = str(info.value)
    assert message and "\n" not in message
    assert session.query("select count(*) as n from clip_facts").to_pylist() == [{"n": 0}]


def test_no_escape_left_a_file_behind():
    import glob

    assert not glob.glob("/tmp/lakehouse_escape*")


def test_refusals_name_what_is_allowed(session):
    with pytest.raises(QueryRefusedError, match="only read-only SELECT"):
        session.query("CREATE TABLE t AS select 1")
    with pytest.raises(QueryRefusedError, match="exactly one statement"):
        session.query("select 1; select 2")
    with pytest.raises(QueryRefusedError, match=r"table function read_csv\(\) is not available"):
        session.query("select * from read_csv('/etc/passwd')")
    # a file named as a table (DuckDB's replacement scan) is refused before DuckDB sees it
    with pytest.raises(QueryRefusedError, match="names a file"):
        session.query("select * from '/etc/passwd.csv'")


def test_pivot_needs_its_values_spelled_out(session):
    # DuckDB runs a PIVOT without an IN list as two statements; the refusal says what works
    with pytest.raises(QueryRefusedError, match=r"PIVOT needs the values .* IN \("):
        session.query("PIVOT clips ON viewpoint USING count(*)")
    rows = session.query(
        "PIVOT clips ON viewpoint IN ('ego', 'exo') USING count(*) GROUP BY source"
    ).to_pylist()
    assert rows == []  # an empty lakehouse: no group, but the statement runs


def test_syntax_errors_are_query_errors(session):
    with pytest.raises(QueryError, match="does not parse|Parser"):
        session.query("selec 1")
    with pytest.raises(QueryError, match="no_such_table|does not exist"):
        session.query("select * from no_such_table")


def test_values_are_bound_not_interpolated(session):
    hostile = "x'; drop view clip_facts; --"
    assert session.query("select ? as v", [hostile]).to_pylist() == [{"v": hostile}]
    assert session.query(
        "select count(*) as n from clips where viewpoint = ?", [hostile]
    ).to_pylist() == [{"n": 0}]
    named = session.query("select $a + $b as s", {"a": 1, "b": 2})
    assert named.to_pylist() == [{"s": 3}]


def test_runaway_query_is_stopped_by_the_time_limit(session):
    start = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="time limit"):
        session.query(
            "select sum(a.range * b.range) from range(200000000) a, range(1000) b", timeout_s=1.0
        )
    assert time.monotonic() - start < 15
    assert session.query("select 42 as x").to_pylist() == [{"x": 42}]


def test_memory_bomb_is_stopped_by_the_memory_limit(config):
    small = dataclasses.replace(config, sql=dataclasses.replace(config.sql, memory_limit="200MB"))
    with Session(Lakehouse(small)) as session, pytest.raises(QueryError, match="memory"):
        session.query("select list(repeat('x', 1000)) from range(5000000)")


def test_tables_and_views_exist_on_an_empty_lakehouse(session):
    names = {
        r["name"]
        for r in session.query(
            "select view_name as name from duckdb_views() where not internal"
        ).to_pylist()
    }
    assert "clip_facts" in names
    for table in ("videos", "clips", "annotations", "keyframes", "quarantine", "sources"):
        assert session.query(f"select count(*) as n from {table}").to_pylist() == [{"n": 0}]


def test_pinned_versions_read_the_past(lh):
    lh.upsert("sources", [{"source": "a", "uri": "/x", "annotation_files": []}])
    v1 = lh.dataset("sources").version
    lh.upsert("sources", [{"source": "b", "uri": "/y", "annotation_files": []}])
    with Session(lh, versions={"sources": v1}) as s:
        assert s.query("select source from sources").to_pylist() == [{"source": "a"}]
        assert s.versions["sources"] == v1
    assert lh.sql("select count(*) as n from sources").to_pylist() == [{"n": 2}]


def test_clip_facts_joins_videos_annotations_and_keyframes(preview_lakehouse):
    row = preview_lakehouse.sql(
        "select * from clip_facts where external_id = ?", ["ego_12147_56_154"]
    ).to_pylist()[0]
    assert row["semantic_motion"] == "Placing a covered dish on the shelf"
    assert row["codec"] == "h264" and row["width"] == 640
    assert row["annotation_count"] == 1 and row["keyframe_count"] == 2
    assert row["source_video_id"] == "12147"


def test_a_kept_session_reads_a_lakehouse_rebuilt_under_the_same_versions(lh):
    # lh.sql keeps its session while the table versions stay the same; a lakehouse folder
    # deleted and written anew reaches the same version numbers with other files
    import shutil

    lh.upsert("sources", [{"source": "old", "uri": "/old", "annotation_files": []}])
    assert lh.sql("select source from sources").column(0).to_pylist() == ["old"]
    before = lh.versions()
    shutil.rmtree(lh.root)
    lh.upsert("sources", [{"source": "new", "uri": "/new", "annotation_files": []}])
    assert lh.versions() == before
    assert lh.sql("select source from sources").column(0).to_pylist() == ["new"]


def test_a_table_written_before_new_columns_still_reads_through_the_views(lh):
    """A lakehouse made by an older release lacks the newer clips columns (the video metadata)
    until its next ingest run; its published version still answers clip_facts queries, with
    the new columns null."""
    import lance
    import pyarrow as pa

    from lakehouse.core import schemas

    old = pa.schema([f for f in schemas.CLIPS if f.name not in schemas.CLIP_VIDEO_FIELDS])
    row = {n: None for n in old.names} | {"clip_id": "c1", "video_id": "v1", "source": "s"}
    lance.write_dataset(pa.Table.from_pylist([row], schema=old), lh.table_uri("clips"))
    out = lh.sql("select clip_id, codec, video_duration_s, keyframe_count from clip_facts")
    assert out.to_pylist() == [
        {"clip_id": "c1", "codec": None, "video_duration_s": None, "keyframe_count": 0}
    ]
    assert out.schema.field("video_duration_s").type == pa.float64()
