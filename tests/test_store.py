"""Merge semantics of the table layer."""

from lakehouse.store import in_list, sql_literal


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

    from lakehouse import schemas

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

    from lakehouse import quarantine as q
    from lakehouse.stage import record_issues

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
