"""Child processes for the concurrency, crash and freshness tests: ``python tests/procs.py CMD
JSON``. Each command prints one JSON line with what it did. Real Lance, DuckDB and Dagster, no
mocks; a command that starts at ``start_at`` (a wall-clock time) waits for it after its imports,
so the writers of one test really race."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lakehouse.api import Lakehouse
from lakehouse.core.config import Config


def _open(args: dict) -> Lakehouse:
    return Lakehouse(Config.load(root=args["root"], env={}, **args.get("config", {})))


def _wait(args: dict) -> None:
    delay = args.get("start_at", 0) - time.time()
    if delay > 0:
        time.sleep(delay)


def create_table(args: dict) -> dict:
    lh = _open(args)
    _wait(args)
    return {"version": lh.ensure(args["table"]).version}


def upsert_keys(args: dict) -> dict:
    """Write ``keys`` in chunks, as ``upsert`` (update or insert-only) or as a scoped ``sync``."""
    lh = _open(args)
    _wait(args)
    attempts, commits = 0, 0
    keys, size = args["keys"], args.get("chunk", 10)
    for i in range(0, len(keys), size):
        rows = [
            {"source": k, "uri": f"/writer/{args['writer']}", "annotation_files": []}
            for k in keys[i : i + size]
        ]
        if args["mode"].startswith("sync"):  # each writer owns its uri: rows only it wrote
            scope = f"uri = '/writer/{args['writer']}'"
            result = lh.sync("sources", rows, scope=scope, delete=args["mode"] == "sync_delete")
        else:
            result = lh.upsert("sources", rows, update=args["mode"] == "update")
        attempts += result.attempts
        commits += 1
    return {"attempts": attempts, "commits": commits}


def ingest_dagster(args: dict) -> dict:
    from dagster_defs.runner import run_ingest

    config = Config.load(root=args["root"], env={})
    _wait(args)
    report = run_ingest(config, args["source"])
    return {"run_id": report.run_id, "success": report.success}


def materialize_without_lock(args: dict) -> dict:
    """Materialize a subset (which takes no lock: the version claim keeps writers apart, on a
    local root as on an object store)."""
    import lakehouse.subsets.versions as subsets

    lh = Lakehouse(Config.load(root=args["root"], env={}, subset_dirs=[args["subset_dir"]]))
    _wait(args)
    record = subsets.materialize_subset(lh, args["name"], run_id=args.get("run_id"))
    return {"version": record.version, "clips": record.clip_ids}


def materialize_then_die(args: dict) -> dict:
    """Record a subset version, then die by SIGKILL before anyone hears of it."""
    from lakehouse.subsets.versions import materialize_subset

    lh = Lakehouse(Config.load(root=args["root"], env={}, subset_dirs=[args["subset_dir"]]))
    record = materialize_subset(lh, args["name"], run_id=args["run_id"])
    print(json.dumps({"version": record.version}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def videos_stage_then_die(args: dict) -> dict:
    """Commit the videos stage of a run, then die by SIGKILL."""
    from lakehouse.ingest.sources import register_source
    from lakehouse.ingest.videos import ingest_videos

    lh = _open(args)
    source = register_source(lh, args["folder"], name=args["source"])
    result = ingest_videos(lh, source, run_id=args["run_id"])
    print(json.dumps({"videos_version": result.write.version}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def ingest(args: dict) -> dict:
    """The library ingest path without the embedding stages (what the crash trials kill)."""
    from lakehouse.ingest.sources import register_source
    from lakehouse.pipeline import publication, run_stages

    lh = _open(args)
    source = register_source(lh, args["folder"], name=args["source"], annotations=args["labels"])
    results = run_stages(lh, source, embed=False)
    if results[-1].stage != "published_versions":
        results.append(publication(lh, source))
    return {"stages": [r.stage for r in results]}


def commit_loop(args: dict) -> dict:
    """Many small commits of every kind (insert, update, scoped sync with deletes, delete). The
    first commit replaces the whole table, so a complete run ends in one state whatever state an
    interrupted run left behind."""
    lh = _open(args)
    start = [{"source": f"k{i}", "uri": "/start", "annotation_files": []} for i in range(3)]
    lh.sync("sources", start, scope="true")
    for n in range(args["rounds"]):
        if args.get("announce"):  # the test kills the writer once a round begins
            print(f"round {n}", flush=True)
        keys = [f"k{(n * 7 + i) % args['keys']}" for i in range(8)]
        lh.upsert("sources", [{"source": k, "uri": f"/r{n}", "annotation_files": []} for k in keys])
        lh.sync(
            "sources",
            [{"source": k, "uri": "/synced", "annotation_files": []} for k in keys[:4]],
            scope="uri = '/synced'",
        )
        if n % 5 == 4:
            lh.delete("sources", f"source = 'k{n % args['keys']}'")
    return {"rounds": args["rounds"]}


def write_and_publish(args: dict) -> dict:
    from lakehouse.publication.publish import publish

    lh = _open(args)
    lh.upsert(
        "sources", [{"source": k, "uri": "/fresh", "annotation_files": []} for k in args["keys"]]
    )
    return {"published": publish(lh, ["sources"])}


def hold_session(args: dict) -> dict:
    """Open a SQL session, say which version it reads, wait for a line on stdin, read again."""
    from lakehouse.query.session import Session

    lh = _open(args)
    with Session(lh) as session:
        first = session.query("select count(*) as n from sources").to_pylist()[0]["n"]
        print(json.dumps({"ready": True, "version": session.versions["sources"], "rows": first}))
        sys.stdout.flush()
        sys.stdin.readline()
        rows = session.query("select * from sources").num_rows
    return {"rows": rows}


def export(args: dict) -> dict:
    lh = Lakehouse(Config.load(root=args["root"], env={}, subset_dirs=[args["subset_dir"]]))
    result = lh.export_subset(args["name"], fmt=args["fmt"], out=args["out"], shard_max_samples=1)
    return {"files": result.files}


COMMANDS = {
    f.__name__: f
    for f in (
        create_table,
        upsert_keys,
        ingest_dagster,
        materialize_without_lock,
        materialize_then_die,
        videos_stage_then_die,
        ingest,
        commit_loop,
        write_and_publish,
        hold_session,
        export,
    )
}

if __name__ == "__main__":
    print(json.dumps(COMMANDS[sys.argv[1]](json.loads(sys.argv[2]))), flush=True)
