"""The annotation and clip stages stream: a source's rows pass in batches (annotation files read
record by record, annotations sorted by clip through a spilling DuckDB sort, the table sync
merging every few rows), and the tables they leave are exactly those of one big batch."""

import csv
import json

import pytest

import lakehouse.ingest.annotations as annotations
from lakehouse.api import Lakehouse
from lakehouse.core.config import Config
from lakehouse.ingest import clips
from lakehouse.ingest.sources import register_source
from lakehouse.pipeline import run_stages
from lakehouse.storage import sync

TABLES = ("annotations", "clips", "quarantine")


def _catalog(folder, *, drop=(), caption_of_7="a person waves"):
    """A HumanNet JSONL file and a CSV file over 30 missing videos. Clips 0-9 are also in the
    CSV (the same span), which adds the fields the JSONL leaves out, so a clip gathers rows of
    two files; line 12 repeats clip 11's id (quarantined)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "a.jsonl", "w") as out:
        for i in range(30):
            if i in drop:
                continue
            record = {
                "clip_id": f"clip-{i}",
                "file": f"videos/v{i % 12}.mp4",
                "start_s": float(i),
                "end_s": i + 2.5,
                "viewpoint": "ego" if i % 3 else "exo",
                "short_caption": caption_of_7 if i == 7 else (None if i < 10 else f"caption {i}"),
                "taxonomy_l1": None if i < 10 else "Cooking",
            }
            out.write(json.dumps(record) + "\n")
        out.write(json.dumps({"clip_id": "clip-11", "file": "videos/v11.mp4"}) + "\n")
        out.write("{not json\n")
    with open(folder / "b.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "file", "start", "end", "short_caption", "taxonomy_l1"])
        for i in range(10):
            writer.writerow(
                [f"b{i}", f"videos/v{i % 12}.mp4", float(i), i + 2.5, f"csv {i}", "Tools"]
            )
    return [str(folder / "a.jsonl"), str(folder / "b.csv")]


def _run(lh: Lakehouse, folder, files) -> None:
    source = register_source(lh, folder, name="cat", annotations=files)
    run_stages(lh, source, run_id="run", embed=False)


def _tables(lh: Lakehouse) -> dict[str, list[dict]]:
    out = {}
    for name in TABLES:
        table = lh.read(name)
        drop = [c for c in ("run_id", "quarantined_at", "updated_at") if c in table.column_names]
        rows = table.drop_columns(drop).to_pylist()
        out[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return out


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(annotations, "ROW_BATCH", 4)
    monkeypatch.setattr(clips, "ROW_BATCH", 3)
    monkeypatch.setattr(sync, "SYNC_FLUSH_ROWS", 5)
    monkeypatch.setattr(sync, "SYNC_DELETE_KEYS", 3)


def test_streamed_stages_leave_the_tables_of_one_batch(tmp_path, small_batches, monkeypatch):
    folder = tmp_path / "catalog"
    files = _catalog(folder)
    streamed = Lakehouse(Config.load(root=tmp_path / "streamed", env={}))
    _run(streamed, folder, files)
    # tens of commits, a sort over many batches; same result as one batch per table below
    assert streamed.dataset("clips").version > 5
    monkeypatch.setattr(annotations, "ROW_BATCH", 10**6)
    monkeypatch.setattr(clips, "ROW_BATCH", 10**6)
    monkeypatch.setattr(sync, "SYNC_FLUSH_ROWS", 10**6)
    whole = Lakehouse(Config.load(root=tmp_path / "whole", env={}))
    _run(whole, folder, files)
    assert whole.dataset("clips").version == 2  # created, then one merge
    assert _tables(streamed) == _tables(whole)

    rows = {r["clip_id"]: r for r in streamed.read("clips").to_pylist()}
    by_external = {r["external_id"]: r for r in rows.values()}
    assert len(rows) == 30
    # clip 3 has rows in both files: the JSONL's first, the CSV fills what it left out
    assert by_external["clip-3"]["annotation_count"] == 2
    assert by_external["clip-3"]["short_caption"] == "csv 3"
    assert by_external["clip-3"]["taxonomy_l1"] == "Tools"
    assert by_external["clip-7"]["short_caption"] == "a person waves"
    assert by_external["clip-20"]["annotation_count"] == 1
    reasons = [r["reason_code"] for r in streamed.read("quarantine").to_pylist()]
    assert sorted(reasons) == ["bad_json", "bad_row"]


def test_a_streamed_rerun_commits_nothing_and_an_edit_updates_and_deletes(tmp_path, small_batches):
    folder = tmp_path / "catalog"
    files = _catalog(folder)
    lh = Lakehouse(Config.load(root=tmp_path / "lh", env={}))
    _run(lh, folder, files)
    versions = {t: lh.dataset(t).version for t in ("annotations", "clips")}
    _run(lh, folder, files)
    assert {t: lh.dataset(t).version for t in versions} == versions

    _catalog(folder, drop=set(range(14, 30)), caption_of_7="a person jumps")
    _run(lh, folder, files)
    rows = {r["external_id"]: r for r in lh.read("clips").to_pylist()}
    assert len(rows) == 14  # 16 stale clips deleted through filters of 3 keys each
    assert rows["clip-7"]["short_caption"] == "a person jumps"
    assert lh.count("annotations", "external_id = 'clip-20'") == 0
