"""A lakehouse folder written by the flat layout (commit e9f74b4, tests/fixtures/README.md) opens
and reads unchanged with the domain packages: tables and their versions, the SQL views, a
search, and the subset versions it recorded, reproduced on their pinned table versions."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

import lakehouse
from lakehouse.core.config import Config
from lakehouse.subsets.versions import get_version, reproduce_subset

FIXTURE = Path(__file__).parent / "fixtures" / "old_layout.tar.gz"


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> tuple[lakehouse.Lakehouse, dict]:
    folder = tmp_path_factory.mktemp("old_layout")
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(folder, filter="data")
    expected = json.loads((folder / "expected.json").read_text())
    lh = lakehouse.open(config=Config.load(root=folder / "lakehouse", env={}))
    return lh, expected


def as_json(value: object) -> object:
    return json.loads(json.dumps(value, default=str))


def test_every_table_reads_at_the_same_versions(old):
    lh, expected = old
    tables = {
        i.name: {"rows": i.rows, "version": i.version, "published": i.published} for i in lh.info()
    }
    assert tables == expected["tables"]
    assert {"clips", "clip_embeddings", "text_embeddings", "signals", "subsets"} <= set(tables)


def test_sql_views_and_quarantine_read_the_same_rows(old):
    lh, expected = old
    facts = lh.sql(
        "select clip_id, external_id, viewpoint, round(duration_s, 3) as duration_s, "
        "short_caption, keyframe_count, privacy_status is not null as has_signals "
        "from clip_facts order by clip_id"
    ).to_pylist()
    assert as_json(facts) == expected["clip_facts"] and len(facts) == 4
    quarantine = lh.sql("select stage, reason_code, input_uri from quarantine order by all")
    assert quarantine.to_pylist() == expected["quarantine"]


def test_a_search_ranks_the_same_clips(old):
    lh, expected = old
    hits = lh.search("someone dancing", mode="caption", k=3)
    assert hits.column("clip_id").to_pylist() == expected["search"]


def test_recorded_subset_versions_read_and_reproduce(old):
    lh, expected = old
    for name, recorded in expected["subsets"].items():
        record = get_version(lh, name, recorded["version"])
        assert record.clip_ids == recorded["clip_ids"]
        assert record.table_versions == recorded["table_versions"]
        again = reproduce_subset(lh, name, recorded["version"])
        assert again.identical, (name, again.missing, again.extra)
