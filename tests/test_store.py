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
