"""Substring filters pushed into the Lance scan of clips (lakehouse/pushdown.py): every query
returns the same rows with and without the pushdown, on a real Lance lakehouse, and the cases
it can prove safe really hand Lance a filter (observed at ``LanceDataset.scanner``)."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakehouse.api import Lakehouse
from lakehouse.core import schemas
from lakehouse.query.pushdown import like_runs
from lakehouse.storage.scan import refresh_scalar_indexes

CAPTIONS = (
    "a person solders a circuit board with a soldering iron",
    "a woman dances in a kitchen",
    "A Soldering Iron rests on a bench",
    None,
    "a shirt of 100% cotton_blend is folded",
    "a sign reads 100\\% off near an iron gate",
    "a man irons a shirt in a kitchen",
)
RARE = "a welder lights a welding torch"  # 2% of the clips


def clip_rows(n: int) -> pa.Table:
    rows = [
        {
            "clip_id": f"c{i:04d}",
            "video_id": f"v{i // 4:03d}",
            "source": "synthetic",
            "probe_status": "ok",
            "start_s": 0.0,
            "end_s": 2.0,
            "duration_s": 1.0 + i % 5,
            "viewpoint": ("ego", "exo")[i % 2],
            "segmentation": "annotation",
            "annotation_count": 1,
            "short_caption": RARE if i % 50 == 3 else CAPTIONS[i % len(CAPTIONS)],
            "long_caption": None if i % 3 == 0 else f"in a kitchen, take {i}",
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=schemas.CLIPS)


@pytest.fixture
def lakehouses(lh: Lakehouse) -> tuple[Lakehouse, Lakehouse]:
    """The same lakehouse twice: pushdown on (the default) and off."""
    lh.upsert("clips", clip_rows(280))
    # videos for half of the clips only: the outer joins below have a null-supplying side
    videos = [{"video_id": f"v{i:03d}", "codec": "h264"} for i in range(0, 70, 2)]
    lh.upsert("videos", pa.Table.from_pylist(videos, schema=schemas.VIDEOS))
    sql = dataclasses.replace(lh.config.sql, pushdown=False)
    return lh, Lakehouse(dataclasses.replace(lh.config, sql=sql))


def both(lakehouses, filters, sql, params=None):
    """Rows with and without the pushdown, and what the pushed run handed Lance."""
    on, off = lakehouses
    filters.clear()
    pushed_rows = on.sql(sql, params).to_pylist()
    pushed = [f for f in filters if "match_substring" in f]
    filters.clear()
    plain_rows = off.sql(sql, params).to_pylist()
    assert not any("match_substring" in f for f in filters)  # sql.pushdown = false
    key = lambda row: tuple(str(v) for v in row.values())  # noqa: E731
    assert sorted(pushed_rows, key=key) == sorted(plain_rows, key=key)
    return pushed_rows, pushed


PUSHED = {
    "clip_facts": (
        "select clip_id, short_caption from clip_facts where short_caption like '%soldering iron%'",
        None,
        ['pattern="soldering iron"'],
    ),
    "and with a pushed comparison": (
        "select clip_id from clips where viewpoint = 'exo' and short_caption like '%iron%'",
        None,
        ['pattern="iron"', "viewpoint"],
    ),
    "contains": (
        "select clip_id from clip_facts where contains(long_caption, 'kitchen')",
        None,
        ['long_caption, {pattern="kitchen"'],
    ),
    "parameters": (
        "select clip_id from clip_facts where short_caption like ? and viewpoint = ?",
        ["%soldering%", "exo"],
        ['pattern="soldering"'],
    ),
    "named parameter": (
        "select clip_id from clip_facts where short_caption like $p",
        {"p": "%kitchen%"},
        ['pattern="kitchen"'],
    ),
    "pattern runs": (
        "select clip_id from clip_facts where short_caption like 'a%solder_ a%iron'",
        None,
        ['pattern="solder"', 'pattern=" a"', 'pattern="iron"'],
    ),
    "backslash is literal": (
        "select clip_id from clips where short_caption like '%100\\%%'",
        None,
        ['pattern="100\\"'],
    ),
    "inner join": (
        "select c.clip_id, v.codec from clip_facts c join videos v on v.video_id = c.video_id "
        "where c.short_caption like '%iron%'",
        None,
        ['pattern="iron"'],
    ),
    "preserved side of a left join": (
        "select c.clip_id, v.codec from clips c left join videos v on v.video_id = c.video_id "
        "where c.short_caption like '%iron%'",
        None,
        ['pattern="iron"'],
    ),
    "inside a CTE, then aggregated": (
        "with hits as (select clip_id, viewpoint from clip_facts "
        "where short_caption like '%kitchen%') "
        "select viewpoint, count(*) as n from hits group by viewpoint",
        None,
        ['pattern="kitchen"'],
    ),
    "one arm of a union": (
        "select clip_id as id from clips where short_caption like '%iron%' "
        "union all select video_id from videos",
        None,
        ['pattern="iron"'],
    ),
}

NOT_PUSHED = {
    "or": ("select clip_id from clip_facts where short_caption like '%iron%' or viewpoint = 'ego'"),
    "not": "select clip_id from clip_facts where not (short_caption like '%iron%')",
    "not like": "select clip_id from clip_facts where short_caption not like '%iron%'",
    "ilike": "select clip_id from clip_facts where short_caption ilike '%soldering iron%'",
    "null-supplying side of a left join": (
        "select v.video_id, c.clip_id from videos v left join clips c "
        "on c.video_id = v.video_id where c.short_caption like '%iron%'"
    ),
    "in a join condition": (
        "select v.video_id, c.clip_id from videos v left join clips c "
        "on c.video_id = v.video_id and c.short_caption like '%iron%'"
    ),
    "self-join": (
        "select a.clip_id, b.clip_id as other from clips a join clips b "
        "on a.video_id = b.video_id where a.short_caption like '%iron%'"
    ),
    "a CTE read twice": (
        "with c as (select * from clips) select a.clip_id from c a join c b "
        "on a.video_id = b.video_id where a.short_caption like '%iron%'"
    ),
    "a CTE shadowing clips": (
        "with clips as (select * from clips where viewpoint = 'ego') "
        "select clip_id from clips where short_caption like '%iron%'"
    ),
    "a CTE shadowing clip_facts": (
        "with clip_facts as (select clip_id, lower(short_caption) as short_caption from clips) "
        "select clip_id from clip_facts where short_caption like '%soldering iron%'"
    ),
    "a subquery reading clips again": (
        "select clip_id from clip_facts where short_caption like '%iron%' "
        "and clip_id in (select clip_id from clips where viewpoint = 'exo')"
    ),
    "below a LIMIT": (
        "select clip_id from (select * from clips order by clip_id limit 50) "
        "where short_caption like '%iron%'"
    ),
    "below an aggregate": (
        "select * from (select max(short_caption) as short_caption from clips) "
        "where short_caption like '%soldering%'"
    ),
    "below a window": (
        "select clip_id, n from (select clip_id, short_caption, "
        "row_number() over (order by clip_id) as n from clips) where short_caption like '%iron%'"
    ),
    "a computed column": (
        "select clip_id from (select clip_id, lower(short_caption) as short_caption from clips) "
        "where short_caption like '%soldering iron%'"
    ),
    "a pattern that is not a constant": (
        "select clip_id from clip_facts where short_caption like '%' || 'iron' || '%'"
    ),
    "a sample": (
        "select clip_id from clips where short_caption like '%iron%' "
        "using sample reservoir(1000 rows) repeatable (7)"
    ),
}


@pytest.mark.parametrize("name", list(PUSHED))
def test_pushed_queries_hand_lance_the_filter_and_return_the_same_rows(lakehouses, filters, name):
    sql, params, expected = PUSHED[name]
    rows, pushed = both(lakehouses, filters, sql, params)
    assert rows  # the filter passes some rows
    assert len(pushed) == 1  # one scan of clips carried it
    for part in expected:
        assert part in pushed[0]


@pytest.mark.parametrize("name", list(NOT_PUSHED))
def test_queries_it_cannot_prove_safe_are_left_alone(lakehouses, filters, name):
    _, pushed = both(lakehouses, filters, NOT_PUSHED[name])
    assert pushed == []


def test_a_parameter_that_is_not_a_string_is_not_pushed(lakehouses, filters):
    sql = "select clip_id from clip_facts where short_caption like ?"
    _, pushed = both(lakehouses, filters, sql, [None])
    assert pushed == []


def test_with_an_ngram_index_only_selective_filters_are_pushed(lakehouses, filters):
    on, _ = lakehouses
    refresh_scalar_indexes(on, min_rows=0)
    indexes = {i.name: i.index_type for i in on.dataset("clips").describe_indices()}
    assert indexes["short_caption_idx"] == "NGram"
    rare = "select clip_id from clip_facts where short_caption like '%welding torch%'"
    rows, pushed = both(lakehouses, filters, rare)
    assert len(rows) == 6 and len(pushed) == 1
    # a substring most rows contain: Lance's index-driven fetch would be slower than a scan
    broad = "select clip_id from clip_facts where short_caption like '%kitchen%'"
    rows, pushed = both(lakehouses, filters, broad)
    assert len(rows) > 28 and pushed == []


def test_like_runs():
    assert like_runs("%soldering iron%") == ["soldering iron"]
    assert like_runs("a_b%%c") == ["a", "b", "c"]
    assert like_runs("%") == []
    assert like_runs("100\\%") == ["100\\"]  # DuckDB's LIKE has no default escape


@pytest.mark.parametrize(
    "name",
    [
        "or",
        "ilike",
        "self-join",
        "a CTE read twice",
        "below a LIMIT",
        "below a window",
        "below an aggregate",
        "a computed column",
        "a CTE shadowing clip_facts",
    ],
)
def test_the_refused_cases_would_change_the_result_if_pushed(lakehouses, name):
    """Why the guards exist: forcing the filter into the scan changes these results."""
    from lakehouse.query.session import Session

    sql = NOT_PUSHED[name]
    needle = next(n for n in ("soldering iron", "soldering", "iron") if f"%{n}%" in sql)
    with Session(lakehouses[0]) as session:
        plain = session.query(sql).to_pylist()
        clips = session.datasets["clips"]
        clips.extra_filter = pc.match_substring(pc.field("short_caption"), needle)
        forced = session.query(sql).to_pylist()
    key = lambda row: tuple(str(v) for v in row.values())  # noqa: E731
    assert sorted(forced, key=key) != sorted(plain, key=key)
