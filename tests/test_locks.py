"""Every advisory lock (:func:`lakehouse.core.locks.lakehouse_lock`) with the race it prevents,
provoked on purpose: with the lock the outcome is right; with that lock made a no-op in the
module that takes it, the same interleaving breaks in the way asserted. The two steps that used
to take a lock and need none are raced without one, to show what keeps them safe instead.

How a race is provoked (:class:`Race`): two actors run in threads, each with its own lakehouse
handle on one root (``flock`` locks taken through separate file descriptors exclude each other
within a process as across processes). A hook (:func:`hold_at`) wraps a real function at the
critical point and holds the first actor there on an event. The second actor then runs until it
has finished, or until it arrives at the lock under test while the first actor holds it (a probe
of the lock file says so: it must wait), and only then does the first actor go on. Nothing
depends on timing: every wait ends on an event (the timeout only turns a deadlock into a
failure), and Lance, DuckDB and the files are the real ones. With every lock a no-op in
``lakehouse.core.locks``, each test that asserts the locked outcome fails.

``create-<table>`` (``Store.ensure``)
    Lance reads the first batch of what it writes, checks that no table exists, writes and
    commits. The first creator is held after that check (its data is a stream that stops after
    the first batch); the second creates the table and merges a row into it. Without the lock the
    first creator's commit lands as an Overwrite (version 3) and the row is gone.
``publish`` (``publish``)
    The first publication is held after it read the record, before it replaces it; a row is
    committed and a second publication publishes it. Without the lock the first writes its older
    snapshot over the second's record: the record moves backwards (the tag does not), and
    readers lose the row.
``cleanup`` (exclusive in ``Store.cleanup``, shared in ``ReaderLease.registering`` and in
``publish`` from its snapshot to its tags)
    A SQL session is held after it opened a table's latest version, before it writes its lease;
    the table is rewritten and a cleanup runs. Without the lock (in either module) the cleanup
    deletes the version the session reads, and its query fails on a missing data file. A
    publication is held after its checks (their lease has ended), before the record switch, or
    while writing the Parquet copy of ``clips``; a row is committed past the snapshot (not for
    the copy) and a cleanup runs. Without the lock (in either module) the cleanup deletes the
    version being published, which the record then names (readers fail, moving the tag fails),
    or the copy's new file, which no manifest lists yet (the copy is lost). The first of these
    broke with the lock too, which ``publish`` took only after its checks: it now takes it
    before the snapshot.
``index-<table>`` (``refresh_indexes``)
    The first refresh is held after it read which indexes exist, before it builds the first one;
    the second refreshes the table. Without the lock the first builds (replaces) every index the
    second has just built; with it the second waits and finds them up to date. The indexes are
    right either way: the lock saves the work (at scale, an ANN index trained twice).

No lock, and why none is needed:

``schema-<table>`` (removed from ``Store._evolve``)
    The first writer is held just before it adds the missing column to the version it read; the
    second adds it. Lance refuses the first writer's stale schema change with a retryable
    conflict, and its retry re-reads the schema and adds nothing: one column, both rows.
``subsets`` (removed from ``materialize_subset``)
    The first materialization is held inside its claim (its merge built from a version without
    the other's claim) or between its claim and its members; the second materializes a newer
    evaluation. The claim's insert-only merge on the key gives the two distinct versions, and
    each version keeps its own members and pins.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import lance
import pyarrow as pa
import pytest

import lakehouse.publication.publish as publish_module
import lakehouse.search.indexes as indexes_module
import lakehouse.storage.cleanup as cleanup_module
import lakehouse.storage.leases as leases_module
import lakehouse.storage.mirror as mirror_module
import lakehouse.storage.store as store_module
from lakehouse.api import Lakehouse
from lakehouse.core import schemas
from lakehouse.core.config import Config
from lakehouse.core.errors import QueryError
from lakehouse.core.locks import lakehouse_lock
from lakehouse.query.session import Session
from lakehouse.search.indexes import refresh_indexes
from lakehouse.storage.commits import conflict_kind
from lakehouse.storage.leases import ReaderLease
from lakehouse.subsets.versions import get_version, materialize_subset

WAIT_S = 120  # a deadlock guard only: every wait below ends on an event


@dataclass
class Outcome:
    first: Any  # what each actor returned, or the exception it raised
    second: Any
    second_waited: bool  # the second actor found the first holding the lock under test


def lock_is_held(lh: Any, name: str) -> bool:
    """Whether some holder has the lock ``name`` now: a probe of its file, released at once."""
    folder = os.path.join(lh.root, ".locks")
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, f"{name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class Race:
    """Run ``first`` until a hook calls :meth:`hold`, then ``second`` until it finishes or arrives
    at the lock ``lock`` while the first holds it (so it must wait), then let ``first`` go on.
    The lock is wrapped in each of ``modules``; in ``disabled`` it is a no-op."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        lock: str | None = None,
        modules: Sequence[ModuleType] = (),
        disabled: ModuleType | None = None,
    ):
        self.lock = lock
        self.held = self.arrived = False
        self.reached = threading.Event()  # the first actor is held (or has finished)
        self.blocked = threading.Event()  # the second actor waits for the first (or finished)
        self.go = threading.Event()
        for module in modules:
            monkeypatch.setattr(module, "lakehouse_lock", self._lock(off=module is disabled))

    def _lock(self, *, off: bool) -> Callable[..., Any]:
        @contextlib.contextmanager
        def lock(lh: Any, name: str, *, shared: bool = False) -> Iterator[None]:
            if name == self.lock and off:
                yield
                return
            if (
                name == self.lock
                and threading.current_thread().name == "second"
                and lock_is_held(lh, name)  # by the first actor, held: a working lock waits
            ):
                self.arrived = True
                self.blocked.set()
            with lakehouse_lock(lh, name, shared=shared):
                yield

        return lock

    def hold(self, actor: str | None = None) -> None:
        """Hold the first actor here, once: a hook calls it at the critical point, in the first
        actor's thread (or names the actor it works for, from a thread Lance started)."""
        if (actor or threading.current_thread().name) != "first" or self.held:
            return
        self.held = True
        self.reached.set()
        assert self.go.wait(WAIT_S), "the first actor was never let go"

    def run(
        self,
        first: Callable[[], Any],
        second: Callable[[], Any],
        between: Callable[[], Any] | None = None,
    ) -> Outcome:
        results: dict[str, Any] = {}

        def actor(name: str, work: Callable[[], Any], done: threading.Event) -> None:
            try:
                results[name] = work()
            except Exception as exc:  # the outcome a test asserts
                results[name] = exc
            finally:
                done.set()

        one = threading.Thread(target=actor, args=("first", first, self.reached), name="first")
        one.start()
        assert self.reached.wait(WAIT_S), "the first actor hangs"
        assert self.held, f"the first actor never reached its hold point: {results.get('first')!r}"
        if between is not None:
            between()
        two = threading.Thread(target=actor, args=("second", second, self.blocked), name="second")
        two.start()
        assert self.blocked.wait(WAIT_S), "the second actor hangs"
        self.go.set()
        for thread in (one, two):
            thread.join(WAIT_S)
            assert not thread.is_alive(), f"{thread.name} deadlocked"
        return Outcome(results["first"], results["second"], self.arrived)


def hold_at(
    monkeypatch: pytest.MonkeyPatch,
    race: Race,
    owner: Any,
    name: str,
    *,
    when: Callable[..., bool] | None = None,
    after: bool = False,
    conflicts: list | None = None,
) -> None:
    """Wrap the real ``owner.name`` so that the first actor is held just before it runs (or just
    after it returned, with ``after``), where ``when(*args)`` says so; the conflicts it raises
    are noted in ``conflicts`` as (actor, kind)."""
    real = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not after and (when is None or when(*args, **kwargs)):
            race.hold()
        try:
            result = real(*args, **kwargs)
        except Exception as exc:
            if conflicts is not None:
                conflicts.append((threading.current_thread().name, conflict_kind(exc)))
            raise
        if after:
            race.hold()
        return result

    monkeypatch.setattr(owner, name, wrapper)


def source(key: str, **values: Any) -> dict[str, Any]:
    return {"source": key, "uri": f"/{key}", "annotation_files": [], **values}


def write_source(lh: Lakehouse, key: str) -> int:
    return lh.upsert("sources", [source(key)]).version


def write_clips(lh: Lakehouse, count: int) -> int:
    rows = [{"clip_id": f"c{i}", "video_id": "v", "source": "s"} for i in range(count)]
    return lh.upsert("clips", rows).version


def versions_of(lh: Lakehouse, table: str) -> list[int]:
    return [v["version"] for v in lh.dataset(table).versions()]


# -- create-<table>: two writers create one table ------------------------------------------


def create_race(monkeypatch: pytest.MonkeyPatch, config: Config, *, locked: bool) -> Outcome:
    race = Race(monkeypatch, "create-sources", [store_module], None if locked else store_module)
    real = lance.write_dataset

    def write_dataset(data: Any, uri: str, *args: Any, **kwargs: Any) -> Any:
        actor = threading.current_thread().name
        if kwargs.get("mode") != "create" or actor != "first":
            return real(data, uri, *args, **kwargs)
        table = data

        def batches() -> Iterator[pa.RecordBatch]:
            # Lance reads a first batch, checks that no table exists, writes, then commits:
            # the creator waits after that check, where a real one writes its data files
            yield pa.RecordBatch.from_pylist([], schema=table.schema)
            race.hold(actor)  # Lance pulls the batches from a thread of its own
            yield from table.to_batches()

        stream = pa.RecordBatchReader.from_batches(table.schema, batches())
        return real(stream, uri, *args, **kwargs)

    monkeypatch.setattr(lance, "write_dataset", write_dataset)
    first, second = Lakehouse(config), Lakehouse(config)
    return race.run(
        lambda: first.ensure("sources").version,
        lambda: second.upsert("sources", [source("b")]).version,  # creates it, then merges
    )


def test_racing_creators_make_one_table_and_keep_what_was_merged_into_it(monkeypatch, config, lh):
    outcome = create_race(monkeypatch, config, locked=True)
    assert outcome.second_waited
    assert (outcome.first, outcome.second) == (1, 2)  # created once, then the merge
    assert lh.read("sources").column("source").to_pylist() == ["b"]
    assert versions_of(lh, "sources") == [1, 2]


def test_without_the_create_lock_a_racing_creator_overwrites_the_table(monkeypatch, config, lh):
    outcome = create_race(monkeypatch, config, locked=False)
    assert (outcome.first, outcome.second) == (3, 2)  # the first creator committed last
    assert lh.read("sources").num_rows == 0  # the row merged in between is gone
    assert versions_of(lh, "sources") == [1, 2, 3]


# -- schema-<table>: no lock; two writers add the same column ---------------------------------


def test_racing_schema_evolutions_add_each_column_once_without_a_lock(monkeypatch, config, lh):
    old = schemas.SOURCES.remove(schemas.SOURCES.get_field_index("viewpoint"))
    lance.write_dataset(old.empty_table(), lh.table_uri("sources"), mode="create")
    race = Race(monkeypatch)  # there is no lock to wait for: the second actor runs to its end
    conflicts: list = []
    # the first writer read the old schema; it is held just before it adds the column to it
    hold_at(monkeypatch, race, lance.LanceDataset, "add_columns", conflicts=conflicts)
    first, second = Lakehouse(config), Lakehouse(config)
    outcome = race.run(
        lambda: first.upsert("sources", [source("a", viewpoint="ego")]).inserted,
        lambda: second.upsert("sources", [source("b", viewpoint="exo")]).inserted,
    )
    assert (outcome.first, outcome.second) == (1, 1)
    assert conflicts == [("first", "retryable")]  # refused on the stale version, then retried
    ds = lh.dataset("sources")
    ds.validate()
    assert ds.schema.names.count("viewpoint") == 1
    rows = ds.to_table(columns=["source", "viewpoint"]).to_pylist()
    assert sorted((r["source"], r["viewpoint"]) for r in rows) == [("a", "ego"), ("b", "exo")]


# -- publish: two publications ---------------------------------------------------------------


def publish_race(monkeypatch: pytest.MonkeyPatch, config: Config, *, locked: bool) -> dict:
    race = Race(monkeypatch, "publish", [publish_module], None if locked else publish_module)
    # the first publication read the record; it is held just before it replaces it
    hold_at(monkeypatch, race, publish_module, "write_record")
    writer, first, second = Lakehouse(config), Lakehouse(config), Lakehouse(config)
    older = write_source(writer, "a")
    newer: list[int] = []
    outcome = race.run(
        lambda: publish_module.publish(first, ["sources"]),
        lambda: publish_module.publish(second, ["sources"]),
        between=lambda: newer.append(write_source(writer, "b")),
    )
    reader = Lakehouse(config)
    return {
        "waited": outcome.second_waited,
        "published": (outcome.first, outcome.second),
        "snapshots": (older, newer[0]),
        "record": reader.published_version("sources"),
        "tag": reader.dataset("sources").tags.list()["published"]["version"],
        "readers see": reader.sql("select source from sources order by 1").column(0).to_pylist(),
    }


def test_racing_publications_leave_the_newer_snapshot_published(monkeypatch, config):
    seen = publish_race(monkeypatch, config, locked=True)
    older, newer = seen["snapshots"]
    assert seen["waited"]
    assert seen["published"] == ({"sources": older}, {"sources": newer})
    assert seen["record"] == seen["tag"] == newer
    assert seen["readers see"] == ["a", "b"]


def test_without_the_publish_lock_the_record_moves_backwards(monkeypatch, config):
    seen = publish_race(monkeypatch, config, locked=False)
    older, newer = seen["snapshots"]
    assert seen["published"] == ({"sources": older}, {"sources": newer})
    assert seen["record"] == older  # written last, from a record read before the newer one
    assert seen["tag"] == newer  # the tag never moves back: record and tag disagree
    assert seen["readers see"] == ["a"]  # the row published by the second is gone for readers


# -- cleanup: a reader registering its versions ------------------------------------------------


def reader_race(
    monkeypatch: pytest.MonkeyPatch, config: Config, disabled: ModuleType | None
) -> tuple[Outcome, int]:
    modules = [leases_module, cleanup_module]
    race = Race(monkeypatch, leases_module.CLEANUP_LOCK, modules, disabled)
    # the session opened the latest version; it is held just before it writes its lease
    hold_at(monkeypatch, race, ReaderLease, "hold")
    writer, first, second = Lakehouse(config), Lakehouse(config), Lakehouse(config)
    read = write_source(writer, "a")

    def session() -> tuple[int, list[str]]:
        with Session(first) as opened:
            rows = opened.query("select source from sources").column(0).to_pylist()
            return opened.versions["sources"], rows

    def rewrite() -> None:  # the version read is no longer the latest, and its file is unused
        writer.delete("sources", "true")
        write_source(writer, "b")

    outcome = race.run(session, lambda: second.cleanup(older_than_s=0), between=rewrite)
    return outcome, read


def test_cleanup_waits_for_a_reader_registering_its_versions(monkeypatch, config, lh):
    outcome, read = reader_race(monkeypatch, config, None)
    assert outcome.second_waited
    assert outcome.first == (read, ["a"])
    assert read in versions_of(lh, "sources")  # kept for the lease


@pytest.mark.parametrize("disabled", [leases_module, cleanup_module], ids=["leases", "cleanup"])
def test_without_the_cleanup_lock_a_registering_reader_loses_its_version(
    monkeypatch, config, lh, disabled
):
    outcome, read = reader_race(monkeypatch, config, disabled)
    assert isinstance(outcome.first, QueryError), outcome.first
    assert "Not found" in str(outcome.first)  # its data file was deleted under it
    assert read not in versions_of(lh, "sources")


# -- cleanup: a publication between its snapshot and its tags ---------------------------------

POINTS = ("checked", "copy", "switch")  # after the checks, writing the Parquet copy, the switch


def publication_cleanup_race(
    monkeypatch: pytest.MonkeyPatch, config: Config, point: str, disabled: ModuleType | None
) -> dict:
    modules = [publish_module, cleanup_module]
    race = Race(monkeypatch, leases_module.CLEANUP_LOCK, modules, disabled)
    if point == "checked":  # held when the checks (their session, their lease) ended
        hold_at(monkeypatch, race, publish_module, "verify", after=True)
    elif point == "copy":  # held when the copy's files are written, before its manifest

        def manifest(path: str, write: Any) -> bool:
            return path.endswith(".json")

        hold_at(monkeypatch, race, mirror_module, "write_atomic", when=manifest)
    else:  # held just before the record switches to the snapshot
        hold_at(monkeypatch, race, publish_module, "write_record")
    writer, first, second = Lakehouse(config), Lakehouse(config), Lakehouse(config)
    # the copy is made of clips (the mirrored table); the other races publish sources
    table = "clips" if point == "copy" else "sources"
    write = {
        "clips": lambda n: write_clips(writer, n),
        "sources": lambda n: write_source(writer, "abc"[n - 1]),
    }[table]
    write(1)
    publish_module.publish(writer, [table])  # published before: the record and tag name it
    snapshot = write(2)
    outcome = race.run(
        lambda: publish_module.publish(first, [table]),
        lambda: second.cleanup(older_than_s=0),
        # a writer goes on past the snapshot (not while the copy is written: that race is
        # about the copy's files alone, the version stays the latest)
        between=None if point == "copy" else lambda: write(3),
    )
    reader = Lakehouse(config)
    return {
        "table": table,
        "outcome": outcome,
        "snapshot": snapshot,
        "kept": versions_of(reader, table),
        "record": reader.published_version(table),
        "copy": mirror_module.parts(reader, "clips", snapshot),
    }


def rows_read(config: Config, table: str) -> int:
    return Lakehouse(config).sql(f"select count(*) as n from {table}").to_pylist()[0]["n"]


@pytest.mark.parametrize("point", POINTS)
def test_cleanup_waits_for_a_publication_from_its_snapshot_to_its_tags(monkeypatch, config, point):
    seen = publication_cleanup_race(monkeypatch, config, point, None)
    outcome, snapshot, table = seen["outcome"], seen["snapshot"], seen["table"]
    assert outcome.second_waited
    assert outcome.first == {table: snapshot}
    assert seen["record"] == snapshot and snapshot in seen["kept"]
    assert rows_read(config, table) == 2
    if table == "clips":
        assert seen["copy"] is not None  # SQL reads the published version from its copy


@pytest.mark.parametrize(
    ("point", "disabled"),
    [(p, publish_module) for p in POINTS] + [(p, cleanup_module) for p in POINTS],
    ids=[f"{p}-in-publish" for p in POINTS] + [f"{p}-in-cleanup" for p in POINTS],
)
def test_without_the_cleanup_lock_cleanup_breaks_a_publication(
    monkeypatch, config, point, disabled
):
    seen = publication_cleanup_race(monkeypatch, config, point, disabled)
    outcome, snapshot, table = seen["outcome"], seen["snapshot"], seen["table"]
    assert not outcome.second_waited
    if point == "copy":  # the version stays (it is the latest); the copy's new file went
        assert outcome.first == {table: snapshot} and seen["record"] == snapshot
        assert seen["copy"] is None  # its manifest lists a file cleanup deleted
        assert rows_read(config, table) == 2  # read from Lance: right, at Lance's speed
        return
    # the version being published was deleted before the record named it: the record names a
    # version no reader can open, and moving the tag there fails
    assert isinstance(outcome.first, ValueError), outcome.first
    assert f"version main:{snapshot} does not exist" in str(outcome.first)
    assert seen["record"] == snapshot and snapshot not in seen["kept"]
    with pytest.raises(OSError, match=f"{snapshot}.manifest was not found"):
        rows_read(config, table)


# -- index-<table>: two index refreshes ------------------------------------------------------

INDEXED = ["clip_id", "model_id", "viewpoint", "source", "duration_s"] + [
    f"taxonomy_l{n}" for n in (1, 2, 3)
]


def index_race(monkeypatch: pytest.MonkeyPatch, config: Config, *, locked: bool) -> dict:
    table = "clip_embeddings"
    race = Race(monkeypatch, f"index-{table}", [indexes_module], None if locked else indexes_module)
    writer, first, second = Lakehouse(config), Lakehouse(config), Lakehouse(config)
    rows = [
        {
            "embedding_id": f"c{i}:m",
            "clip_id": f"c{i}",
            "model_id": "m",
            "vector": [1.0, 0.0, 0.0, 0.0],
            "keyframe_ids": [],
            "keyframe_vectors": [],
            "source": "s",
            "viewpoint": "ego",
            "duration_s": 1.0,
        }
        for i in range(20)
    ]
    writer.upsert(table, rows, schema=schemas.clip_embeddings_schema(4))
    # the first refresh read which indexes exist (none); it is held before it builds the first
    handle = type(writer.lancedb_table(table, latest=True))  # LanceDB's table class
    hold_at(monkeypatch, race, handle, "create_index")
    outcome = race.run(
        lambda: refresh_indexes(first)[table]["actions"],
        lambda: refresh_indexes(second)[table]["actions"],
    )
    ds = writer.dataset(table)
    ds.validate()
    return {
        "waited": outcome.second_waited,
        "first": outcome.first,
        "second": outcome.second,
        "indexes": sorted(i.field_names[0] for i in ds.describe_indices()),
    }


def test_racing_index_refreshes_build_each_index_once(monkeypatch, config):
    seen = index_race(monkeypatch, config, locked=True)
    assert seen["waited"]
    assert seen["first"] == [f"scalar index on {c}" for c in INDEXED]
    assert seen["second"] == ["up to date"]  # it waited, then found them built
    assert seen["indexes"] == sorted(INDEXED)


def test_without_the_index_lock_a_racing_refresh_builds_every_index_again(monkeypatch, config):
    seen = index_race(monkeypatch, config, locked=False)
    built = [f"scalar index on {c}" for c in INDEXED]
    assert seen["second"] == built
    assert seen["first"] == built  # each one built again over the second's (create replaces)
    assert seen["indexes"] == sorted(INDEXED)  # the same indexes: only the work was doubled


# -- subsets: no lock; two materializations of one subset -------------------------------------


@pytest.mark.parametrize("point", ["claim", "members"])
def test_racing_materializations_get_distinct_versions_without_a_lock(monkeypatch, tmp_path, point):
    folder = tmp_path / "subsets"
    folder.mkdir()
    (folder / "every_clip.sql").write_text("-- Every clip.\nselect clip_id from clips\n")
    config = Config.load(root=tmp_path / "lakehouse", env={}, subset_dirs=[str(folder)])
    writer, first, second = Lakehouse(config), Lakehouse(config), Lakehouse(config)
    write_clips(writer, 2)
    race = Race(monkeypatch)  # there is no lock to wait for: the second actor runs to its end
    conflicts: list = []
    if point == "claim":  # held with its claim's merge built from a version without the other's

        def claim(builder: Any, data: pa.Table) -> bool:  # not the completed record
            return (
                "subset_version_id" in data.column_names and data["clips_hash"][0].as_py() is None
            )

        hold_at(monkeypatch, race, store_module, "run_merge", when=claim, conflicts=conflicts)
    else:  # held when it has claimed its version, before its members are written
        hold_at(monkeypatch, race, first, "sync")
    outcome = race.run(
        lambda: materialize_subset(first, "every_clip"),
        lambda: materialize_subset(second, "every_clip"),
        between=lambda: write_clips(writer, 3),  # the second one selects a clip more
    )
    one, two = outcome.first, outcome.second
    expected = (2, 1) if point == "claim" else (1, 2)
    assert (one.version, two.version) == expected
    if point == "claim":
        assert conflicts == [("first", "retryable")]  # its claim of 1 lost, and was retried
    assert (one.clip_ids, two.clip_ids) == (["c0", "c1"], ["c0", "c1", "c2"])
    reader = Lakehouse(config)
    for record in (one, two):
        stored = get_version(reader, "every_clip", record.version)
        assert stored.clip_ids == record.clip_ids  # nobody's members mixed into another's
        tags = reader.dataset("clips").tags.list()
        assert tags[record.pin_tag]["version"] == record.table_versions["clips"]
    assert reader.count("subset_clips") == 5
    assert reader.count("subsets") == 2


# -- the lock itself --------------------------------------------------------------------------


def probe(lh: Any, name: str, mode: int) -> bool:
    """Whether ``flock(mode)`` on the lock file, through a descriptor of its own, would succeed
    now (it is released at once)."""
    fd = os.open(os.path.join(lh.root, ".locks", f"{name}.lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_lock_is_exclusive_unless_asked_to_be_shared(lh):
    before = open_descriptors()
    with lakehouse_lock(lh, "x"):  # the default: nobody else, not even a reader
        assert not probe(lh, "x", fcntl.LOCK_SH)
    assert probe(lh, "x", fcntl.LOCK_EX)  # released
    with lakehouse_lock(lh, "x", shared=True):
        assert probe(lh, "x", fcntl.LOCK_SH)  # other readers come in
        assert not probe(lh, "x", fcntl.LOCK_EX)  # a writer waits
    assert probe(lh, "x", fcntl.LOCK_EX)
    assert open_descriptors() == before  # the lock file is closed again
    umask = os.umask(0)
    os.umask(umask)
    mode = os.stat(os.path.join(lh.root, ".locks", "x.lock")).st_mode & 0o777
    assert mode == 0o644 & ~umask  # readable by other users' readers, writable by the owner


def test_a_root_without_room_for_locks_is_read_without_them_and_never_written(lh):
    """Where the lock folder cannot be made (a read-only root; here a file in its place), a
    shared lock lets the reader through without a lock, and an exclusive one refuses the write."""
    os.makedirs(lh.root, exist_ok=True)
    with open(os.path.join(lh.root, ".locks"), "w") as in_the_way:
        in_the_way.write("a file where the lock folder goes")
    with lakehouse_lock(lh, "x", shared=True):
        pass
    with pytest.raises(FileExistsError), lakehouse_lock(lh, "x"):
        raise AssertionError("an exclusive lock was granted without a lock file")


def test_a_lock_interrupted_while_waiting_closes_its_file(lh, monkeypatch):
    before = open_descriptors()

    def interrupted(fd: int, operation: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fcntl, "flock", interrupted)
    with pytest.raises(KeyboardInterrupt), lakehouse_lock(lh, "x"):
        raise AssertionError("the lock was granted")
    assert open_descriptors() == before
