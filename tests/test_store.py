"""Merge semantics of the table layer."""

from lakehouse.storage.filters import in_list, sql_literal


def _src(name, uri="/x"):
    return {"source": name, "uri": uri, "annotation_files": []}


def test_upsert_is_idempotent_and_updates(lh):
    first = lh.upsert("sources", [_src("a"), _src("b")])
    assert (first.inserted, first.updated) == (2, 0)
    again = lh.upsert("sources", [_src("a"), _src("b")], update=False)
    assert (again.inserted, again.updated) == (0, 0)
    assert lh.count("sources") == 2
    changed = lh.upsert("sources", [_src("a", "/new")])
    assert changed.updated == 1
    assert lh.read("sources", filter="source = 'a'").column("uri").to_pylist() == ["/new"]


def test_sync_inserts_updates_and_deletes_within_scope_only(lh):
    lh.upsert("sources", [_src("a", "/1"), _src("b", "/1"), _src("keep", "/2")])
    version = lh.dataset("sources").version
    result = lh.sync("sources", [_src("a", "/1"), _src("c", "/1")], scope="uri = '/1'")
    assert (result.inserted, result.updated, result.deleted) == (1, 0, 1)
    assert sorted(lh.read("sources").column("source").to_pylist()) == ["a", "c", "keep"]
    # nothing changed → no new version
    after = lh.dataset("sources").version
    assert after == version + 1
    noop = lh.sync("sources", [_src("a", "/1"), _src("c", "/1")], scope="uri = '/1'")
    assert not noop.changed and lh.dataset("sources").version == after


def test_filter_literals_are_quoted():
    assert sql_literal("it's") == "'it''s'"
    assert in_list("k", ["b", "a'"]) == "k IN ('a''', 'b')"
    assert in_list("k", []) == "FALSE"


def test_tables_written_by_older_code_gain_new_columns(lh):
    import lance

    from lakehouse.core import schemas

    old = schemas.SOURCES.remove(schemas.SOURCES.get_field_index("viewpoint"))
    lance.write_dataset(
        old.empty_table(), lh.table_uri("sources"), mode="create"
    )  # as an older release wrote it
    lh.upsert("sources", [{**_src("a"), "viewpoint": "ego"}])
    assert lh.read("sources").column("viewpoint").to_pylist() == ["ego"]


def test_a_failure_found_again_in_other_words_commits_nothing(lh):
    """FFmpeg words one damage differently between runs (frames out before the error depend on
    its threads); the quarantine keeps the recorded message, so the re-run commits nothing, while
    a new reason for the same input is recorded."""
    from types import SimpleNamespace

    from lakehouse.core import quarantine as q
    from lakehouse.ingest.stage import record_issues

    source = SimpleNamespace(name="cam", scope="source = 'cam'")

    def issue(reason: str, message: str) -> q.Issue:
        return q.Issue("videos", "/data/cam/bad.mp4", reason, message)

    record_issues(lh, source, ["videos"], [issue(q.DECODE_ERROR, "failed after 57 frames")], "r1")
    version = lh.dataset("quarantine").version
    record_issues(lh, source, ["videos"], [issue(q.DECODE_ERROR, "failed after 58 frames")], "r2")
    assert lh.dataset("quarantine").version == version
    assert lh.read("quarantine").column("message").to_pylist() == ["failed after 57 frames"]
    record_issues(lh, source, ["videos"], [issue(q.TIMEOUT, "took longer than 120 s")], "r3")
    rows = lh.read("quarantine").to_pylist()
    assert [(r["reason_code"], r["message"]) for r in rows] == [
        (q.TIMEOUT, "took longer than 120 s")
    ]


def _ann(i, source="s", caption="a caption", score=0.5):
    return {
        "annotation_id": f"{source}-{i:05d}",
        "clip_id": f"c{i}",
        "source": source,
        "start_s": float(i),
        "end_s": float(i) + 1.5,
        "quality_score": score,
        "short_caption": caption,
        "run_id": "run-1",
    }


def test_sync_batches_streams_many_flushes_to_the_same_rows_as_one_sync(lh, monkeypatch):
    """A sync larger than one flush commits several times and keeps only keys and hashes of the
    scope; its outcome is that of one sync: inserts, updates of changed rows only (NaN equal to
    NaN; the run_id alone is no change), a key given twice keeps its last row, stale keys
    (more than one delete filter's worth) deleted, rows outside the scope untouched."""
    from lakehouse.storage import sync

    monkeypatch.setattr(sync, "SYNC_FLUSH_ROWS", 7)
    monkeypatch.setattr(sync, "SYNC_DELETE_KEYS", 4)
    lh.upsert("annotations", [_ann(i, score=float("nan")) for i in range(40)])
    lh.upsert("annotations", [_ann(i, source="other") for i in range(5)])
    before = lh.dataset("annotations").version

    def batches():
        for start in range(0, 30, 6):
            rows = [_ann(i, score=float("nan")) for i in range(start, start + 6)]
            for row in rows:
                row["run_id"] = "run-2"
                if row["clip_id"] in ("c3", "c17"):
                    row["short_caption"] = "changed"
            yield rows
        yield [_ann(i, caption="new") for i in range(100, 112)]
        yield [_ann(100, caption="given twice, last wins")]

    result = lh.sync_batches("annotations", batches(), scope="source = 's'")
    # s-00100 was inserted by one flush and replaced by the next: an update
    assert (result.inserted, result.updated, result.deleted) == (12, 3, 10)
    assert lh.dataset("annotations").version > before + 2  # several commits
    rows = {r["annotation_id"]: r for r in lh.read("annotations").to_pylist()}
    assert len(rows) == 30 + 12 + 5
    assert rows["s-00003"]["short_caption"] == "changed"
    assert rows["s-00004"]["run_id"] == "run-1"  # unchanged rows are not rewritten
    assert rows["s-00100"]["short_caption"] == "given twice, last wins"
    assert not any(f"s-{i:05d}" in rows for i in range(30, 40))
    assert sum(1 for k in rows if k.startswith("other-")) == 5
    version = lh.dataset("annotations").version

    def again():
        yield [_ann(i, score=float("nan")) | {"short_caption": "changed"} for i in (3, 17)]
        yield [_ann(i, score=float("nan")) for i in range(30) if i not in (3, 17)]
        yield [_ann(i, caption="new") for i in range(101, 112)]
        yield [_ann(100, caption="given twice, last wins")]

    noop = lh.sync_batches("annotations", again(), scope="source = 's'")
    assert not noop.changed and lh.dataset("annotations").version == version
    one = lh.sync("annotations", [_ann(1, score=float("nan"))], scope="source = 's'")
    assert (one.inserted, one.updated, one.deleted) == (0, 0, 41)
    assert lh.count("annotations", "source = 's'") == 1
