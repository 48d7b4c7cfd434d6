"""The lakehouse at 1M-10M clips: corpus write, SQL against DuckDB-on-Parquet, filtered ANN
search against exact, the cost of adding 1% new videos, and peak memory of each.

Phases (each its own process, so its peak RSS is its own; ``all`` runs them in order):

  generate     write the synthetic corpus (``bench/corpus.py``) through ``Lakehouse.upsert``,
               build the indexes (``refresh_indexes``: scalar + IVF_RQ), write the SQL copy
               of clips a publication writes (``lakehouse/mirror.py``), copy clips, videos
               and annotations to Parquet for the baseline
  sql          typical subset queries through ``lh.sql`` (the locked-down session over the
               lakehouse tables and the ``clip_facts`` view) against the same SQL in a plain
               DuckDB over the baseline's Parquet (same threads, same memory limit), and
               through ``lh.sql`` reading Lance only (``sql.mirror`` off), with and without
               ``sql.pushdown`` (``lakehouse/pushdown.py``), interleaved, median of ``--repeat``
  search       ``lakehouse.search`` over the 512-d ``clip_embeddings`` with prefilters:
               recall@10 against the exact top 10 (computed by streaming the vectors from the
               table in chunks, never all in memory), p50/p95
  incremental  1% more clips as new videos (a new source partition): write them the same way,
               refresh the indexes and the SQL copy; time as a fraction of the full ``generate``

    python bench/bench_scale.py all --clips 1000000 --root /tmp/scale
    python bench/bench_scale.py sql --root /tmp/scale          # on a kept corpus

Nothing here asserts; the numbers go in bench/README.md.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import CorpusSpec, write_corpus

from lakehouse.api import Lakehouse
from lakehouse.core import schemas
from lakehouse.core.config import Config
from lakehouse.core.schemas import CLIP_TABLE
from lakehouse.models.resolve import RANDOM_TAG, resolve_clip
from lakehouse.query.session import read_views

PARQUET_TABLES = ("clips", "videos", "annotations")
QUERIES = {
    "viewpoint + duration + taxonomy": (
        "select clip_id, duration_s, taxonomy_l3, short_caption from clip_facts "
        "where viewpoint = 'exo' and duration_s > 10 and taxonomy_l1 = 'Dance'"
    ),
    "caption LIKE": (
        "select clip_id, short_caption from clip_facts where short_caption like '%soldering iron%'"
    ),
    "caption LIKE, rare phrase": (
        "select clip_id, short_caption from clip_facts "
        "where short_caption like '%catches a bottle of water%'"
    ),
    "group by video": (
        "select video_id, count(*) as clips, sum(duration_s) as seconds from clip_facts "
        "where viewpoint = 'ego' group by video_id having count(*) >= 20"
    ),
    "subset file third_person_dance.sql": None,  # read from sql/subsets
}
SEARCH_FILTERS = {
    "none": None,
    "viewpoint = 'ego' (45%)": "viewpoint = 'ego'",
    "taxonomy_l1 = 'Dance' (~8%)": "taxonomy_l1 = 'Dance'",
    "taxonomy_l3 leaf + duration (~0.1%)": (
        "taxonomy_l3 = 'Sports / Outdoor / freestyle' AND duration_s > 3"
    ),
}
PROJECT = Path(__file__).resolve().parent.parent
TARGET_SQL_RATIO = 1.2
TARGET_SQL_S = 1.0
TARGET_INCREMENTAL = 0.05


def config_for(root: str) -> Config:
    config = Config.load(root=root, env={})
    models = dataclasses.replace(config.models, clip_arch="ViT-B-32", clip_pretrained=RANDOM_TAG)
    return dataclasses.replace(config, models=models)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def emit(result: dict) -> None:
    """Phases print one JSON line last; ``all`` collects them."""
    result["peak_rss_mb"] = round(peak_rss_mb())
    result["load_after"] = load()
    print("RESULT " + json.dumps(result), flush=True)


def du_gb(path: str) -> float:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total / 1e9


# -- phases -----------------------------------------------------------------------------------


def generate(args: argparse.Namespace) -> None:
    import lancedb  # noqa: F401  # imported before the clock, as in the incremental phase

    from lakehouse.search.indexes import refresh_indexes

    shutil.rmtree(args.root, ignore_errors=True)
    config = config_for(args.root)
    lh = Lakehouse(config)
    model_id = resolve_clip(config.models, check_online=False).model_id
    spec = CorpusSpec(clips=args.clips, model_id=model_id, batch_clips=args.batch)
    start = time.perf_counter()
    stats = write_corpus(lh, spec, embeddings=not args.no_embeddings)
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    report = refresh_indexes(lh)
    index_s = time.perf_counter() - start
    print(json.dumps(report, indent=1))
    start = time.perf_counter()
    copied = sql_copy(lh)
    copy_s = time.perf_counter() - start
    start = time.perf_counter()
    parquet = parquet_copy(lh, args.root + "_parquet")
    emit(
        {
            "phase": "generate",
            "clips": stats.clips,
            "videos": stats.videos,
            "write_s": round(write_s, 1),
            "upsert_s": {k: round(v, 1) for k, v in stats.seconds.items()},
            "index_s": round(index_s, 1),
            "sql_copy_s": round(copy_s, 1),
            "sql_copy_files": copied,
            "parquet_s": round(time.perf_counter() - start, 1),
            "lance_gb": round(du_gb(args.root), 2),
            "parquet_gb": round(du_gb(parquet), 2),
        }
    )


def sql_copy(lh: Lakehouse) -> int:
    """What a publication writes for SQL at the tables' latest versions (lakehouse.storage.mirror):
    the Parquet files of the fragments that have none yet. The benchmark does not publish (the
    blocking checks would read the 20 GB of vectors), so readers see the latest versions."""
    from lakehouse.storage import mirror

    return sum(mirror.publish(lh, lh.versions()).values())


def parquet_copy(lh: Lakehouse, folder: str) -> str:
    """The baseline's data: each SQL table as one Parquet file, streamed batch by batch."""
    import pyarrow.parquet as pq

    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name in PARQUET_TABLES:
        ds = lh.dataset(name)
        with pq.ParquetWriter(os.path.join(folder, f"{name}.parquet"), ds.schema) as writer:
            for batch in ds.to_batches(batch_size=65536):
                writer.write_batch(batch)
    return folder


def sql(args: argparse.Namespace) -> None:
    import duckdb

    lh = Lakehouse(config_for(args.root))
    config = lh.config
    # the same lakehouse reading Lance only (no Parquet copy; lakehouse.storage.mirror), and that
    # with lakehouse.query.pushdown off too: the before/after of both in the same run
    lance_only = Lakehouse(
        dataclasses.replace(config, sql=dataclasses.replace(config.sql, mirror=False))
    )
    plain = Lakehouse(
        dataclasses.replace(
            config, sql=dataclasses.replace(config.sql, mirror=False, pushdown=False)
        )
    )
    folder = args.root + "_parquet"
    settings = lh.config.sql
    con = duckdb.connect(
        config={"threads": settings.threads, "memory_limit": settings.memory_limit}
    )
    for name in PARQUET_TABLES:
        path = os.path.join(folder, f"{name}.parquet")
        con.execute(f"create view {name} as select * from read_parquet('{path}')")
    for name in schemas.TABLES:  # the tables the corpus does not fill, empty as in the lakehouse
        if name not in PARQUET_TABLES:
            con.register(name, lh.schema(name).empty_table())
    views = read_views([PROJECT / "sql" / "views"])
    for name in ("clip_signals", "clip_extras", "clip_facts"):  # each reads the one before
        con.execute(f"create view {name} as {views.pop(name).strip().rstrip(';')}")
    queries = dict(QUERIES)
    queries["subset file third_person_dance.sql"] = (
        PROJECT / "sql" / "subsets" / "third_person_dance.sql"
    ).read_text()
    rows = []
    for name, query in queries.items():
        methods = {
            "duckdb on parquet": lambda q=query: con.sql(q).to_arrow_table(),
            "lakehouse lh.sql": lambda q=query: lh.sql(q),
            "lakehouse, Lance only": lambda q=query: lance_only.sql(q),
            "lakehouse, Lance only, no pushdown": lambda q=query: plain.sql(q),
        }
        counts = {m: fn().num_rows for m, fn in methods.items()}  # warm-up, and same rows
        times: dict[str, list[float]] = {m: [] for m in methods}
        for i in range(args.repeat):
            for j in range(len(methods)):
                m = list(methods)[(i + j) % len(methods)]
                t = time.perf_counter()
                methods[m]()
                times[m].append(time.perf_counter() - t)
        base = statistics.median(times["duckdb on parquet"])
        mine = statistics.median(times["lakehouse lh.sql"])
        uncopied = statistics.median(times["lakehouse, Lance only"])
        unpushed = statistics.median(times["lakehouse, Lance only, no pushdown"])
        rows.append(
            {
                "query": name,
                "rows": counts["lakehouse lh.sql"],
                "same_rows": len(set(counts.values())) == 1,
                "parquet_ms": round(base * 1000, 1),
                "lakehouse_ms": round(mine * 1000, 1),
                "ratio": round(mine / base, 2),
                "lance_only_ms": round(uncopied * 1000, 1),
                "lance_only_ratio": round(uncopied / base, 2),
                "no_pushdown_ms": round(unpushed * 1000, 1),
                "no_pushdown_ratio": round(unpushed / base, 2),
            }
        )
        print(rows[-1], flush=True)
    emit({"phase": "sql", "queries": rows, "clips": lh.count("clips")})


def exact_truth(
    lh: Lakehouse, queries: np.ndarray, filters: dict[str, str | None], k: int
) -> dict[str, list[set[str]]]:
    """Exact top-k clip ids per query under each filter, in one pass that streams the vectors
    from the table in chunks of 64k rows (128 MB; the table is never held). Each filter is
    evaluated on the chunk by DuckDB over its metadata columns."""
    import duckdb

    ds = lh.dataset(CLIP_TABLE)
    con = duckdb.connect(config={"threads": 2})
    best = {
        f: (np.full((len(queries), k), -np.inf), np.full((len(queries), k), "", object))
        for f in filters
    }
    columns = ["clip_id", "viewpoint", "taxonomy_l1", "taxonomy_l3", "duration_s", "vector"]
    for batch in ds.to_batches(columns=columns, batch_size=65536):
        vectors = batch.column("vector")
        matrix = vectors.values.to_numpy(zero_copy_only=False).reshape(-1, vectors.type.list_size)
        scores = queries @ matrix.T
        ids = np.asarray(batch.column("clip_id").to_pylist(), dtype=object)
        meta = batch.drop_columns(["vector"])  # noqa: F841 - read by DuckDB below
        for f, where in filters.items():
            if where is None:
                rows = np.arange(len(ids))
            else:
                mask = con.sql(f"select ({where}) as keep from meta").fetchnumpy()["keep"]
                rows = np.flatnonzero(np.asarray(mask, dtype=bool))
            if len(rows) == 0:
                continue
            sub = scores[:, rows]
            kk = min(k, sub.shape[1])
            top = np.argpartition(-sub, kk - 1, axis=1)[:, :kk]
            cand_s = np.concatenate([best[f][0], np.take_along_axis(sub, top, 1)], axis=1)
            cand_i = np.concatenate([best[f][1], ids[rows][top]], axis=1)
            keep = np.argsort(-cand_s, axis=1)[:, :k]
            best[f] = (np.take_along_axis(cand_s, keep, 1), np.take_along_axis(cand_i, keep, 1))
    return {f: [set(row) - {""} for row in best[f][1]] for f in filters}


def search(args: argparse.Namespace) -> None:
    from lakehouse.search.ranking import search as lakehouse_search
    from lakehouse.search.vectors import vector_table

    lh = Lakehouse(config_for(args.root))
    ds = lh.dataset(CLIP_TABLE)
    rng = np.random.default_rng(3)
    n = ds.count_rows()
    picks = np.sort(rng.choice(n, size=args.queries, replace=False))
    base = ds.take(picks.tolist(), columns=["vector"]).column("vector")
    base = base.combine_chunks().values.to_numpy().reshape(len(picks), -1)
    noise = rng.standard_normal(base.shape).astype(np.float32) * np.float32(0.4 / np.sqrt(512))
    queries = base + noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    start = time.perf_counter()
    truth = exact_truth(lh, queries, SEARCH_FILTERS, args.k)
    truth_s = time.perf_counter() - start
    truth_rss = peak_rss_mb()
    print(f"exact ground truth: {truth_s:.0f} s, peak RSS so far {truth_rss:.0f} MB", flush=True)
    rows = []
    model_id = resolve_clip(lh.config.models, check_online=False).model_id
    variants = {"defaults": lh}
    for probes, refine in args.sweep:
        tuned = dataclasses.replace(lh.config.search, nprobes=probes, refine_factor=refine)
        variants[f"nprobes={probes} refine={refine}"] = Lakehouse(
            dataclasses.replace(lh.config, search=tuned)
        )
    # no room to cache a filter's vectors: every wide filter goes through the index, as all
    # did before a filter that makes the plan probe every partition was searched exactly
    tiny = dataclasses.replace(lh.config.search, cache_mb=1)
    variants["cache_mb=1 (index only)"] = Lakehouse(dataclasses.replace(lh.config, search=tiny))
    for (name, where), (label, lhv) in itertools.product(SEARCH_FILTERS.items(), variants.items()):
        _, plan = vector_table(lhv, CLIP_TABLE).nearest(
            queries[0], model_id=model_id, condition=where, columns=["clip_id"], limit=args.k
        )
        if label != "defaults" and plan.kind != "ann":
            continue
        for q in queries[:5]:  # warm-up
            lakehouse_search(lhv, vector=q, mode="visual", k=args.k, where=where)
        times, recalls = [], []
        for i, q in enumerate(queries):
            t = time.perf_counter()
            hits = lakehouse_search(lhv, vector=q, mode="visual", k=args.k, where=where)
            times.append((time.perf_counter() - t) * 1000)
            want = truth[name][i]
            recalls.append(len(want & set(hits.column("clip_id").to_pylist())) / max(1, len(want)))
        kinds = collections.Counter(  # each query's own plan (untimed: the query runs again)
            vector_table(lhv, CLIP_TABLE)
            .nearest(q, model_id=model_id, condition=where, columns=["clip_id"], limit=args.k)[1]
            .kind
            for q in queries
        )
        rows.append(
            {
                "filter": name,
                "settings": label,
                "passing": plan.passing,
                "plan": plan.kind,
                "plans": dict(kinds),
                "nprobes": plan.nprobes,
                "refine": plan.refine_factor,
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(statistics.quantiles(times, n=20, method="inclusive")[18], 1),
                "recall_at_10": round(statistics.fmean(recalls), 3),
            }
        )
        print(rows[-1], flush=True)
    emit(
        {
            "phase": "search",
            "rows": n,
            "queries": args.queries,
            "truth_s": round(truth_s, 1),
            "truth_peak_rss_mb": round(truth_rss),
            "results": rows,
        }
    )


def incremental(args: argparse.Namespace) -> None:
    """``--increments`` successive increments of 1% new videos (each a new source), each
    written and its indexes refreshed; prints each one's times (an index refresh that waits for
    more new rows is paid by a later increment: the mean is the amortized cost)."""
    import lancedb  # noqa: F401  # imported before the clock: ~3 s of imports is no index work

    from lakehouse.search.indexes import refresh_indexes

    config = config_for(args.root)
    lh = Lakehouse(config)
    model_id = resolve_clip(config.models, check_online=False).model_id
    rounds = []
    for k in range(args.increments):
        before = lh.count("clips")
        seed = args.increment_seed + k
        spec = CorpusSpec(
            clips=max(1, before // 100),
            source=f"increment{seed}",
            seed=seed,
            model_id=model_id,
            batch_clips=args.batch,
            first_video=10**9 * seed,
        )
        start = time.perf_counter()
        stats = write_corpus(lh, spec, embeddings=lh.exists(CLIP_TABLE))
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        report = refresh_indexes(lh)
        index_s = time.perf_counter() - start
        print(json.dumps(report, indent=1))
        start = time.perf_counter()
        copied = sql_copy(lh)
        copy_s = time.perf_counter() - start
        rounds.append(
            {
                "clips_before": before,
                "clips_added": stats.clips,
                "write_s": round(write_s, 1),
                "upsert_s": {k: round(v, 1) for k, v in stats.seconds.items()},
                "index_s": round(index_s, 1),
                "sql_copy_s": round(copy_s, 2),
                "sql_copy_files": copied,
            }
        )
        print(rounds[-1], flush=True)
    emit(
        {
            "phase": "incremental",
            "rounds": rounds,
            "write_s": round(statistics.mean(r["write_s"] for r in rounds), 2),
            "index_s": round(statistics.mean(r["index_s"] for r in rounds), 2),
            "sql_copy_s": round(statistics.mean(r["sql_copy_s"] for r in rounds), 2),
        }
    )


def write_catalog(path: str, clips: int, seed: int, first_video: int) -> None:
    """A HumanNet-format annotation file (``annotations.jsonl``) for ``clips`` synthetic clips
    whose videos are not present: an annotation-only catalog, as at scale."""
    from corpus import batches

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fields = ["short_caption", "long_caption", "semantic_motion", "motion_sequence"]
    fields += ["environment", "subject_sex", "taxonomy_l1", "taxonomy_l2", "taxonomy_l3"]
    with open(path, "w", encoding="utf-8") as out:
        spec = CorpusSpec(clips=clips, seed=seed, first_video=first_video, batch_clips=100_000)
        for batch in batches(spec):
            table = batch.clips
            for row in table.select(
                [
                    "external_id",
                    "viewpoint",
                    "source_video_id",
                    "duration_s",
                    "fps",
                    "quality_score",
                    *fields,
                ]
            ).to_pylist():
                clip_id = row.pop("external_id")
                record = {
                    "clip_id": clip_id,
                    "file": f"clips/{clip_id}.mp4",  # one file per clip, as in HumanNet
                    "num_frames": round(row["duration_s"] * row["fps"]),
                    **row,
                }
                out.write(json.dumps(record) + "\n")


class StageMemory:
    """Samples this process's resident memory every 0.2 s and keeps the peak per stage."""

    def __init__(self) -> None:
        import threading

        self.stage = "start"
        self.peaks: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            with open("/proc/self/status") as status:
                rss = next(int(line.split()[1]) // 1024 for line in status if "VmRSS" in line)
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), rss)
            time.sleep(0.2)

    def run(self, stage: str, fn, *args, **kwargs):
        self.stage = stage
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[stage] = round(time.perf_counter() - start, 1)
            time.sleep(0.3)  # one more sample of the stage


def stages(args: argparse.Namespace) -> None:
    """The real ingest stages (``run_stages``' stages, no embeddings) on an annotation-only
    source of ``--stage-clips`` clips (``--increment``: a new source of 1% as many, on top;
    ``--rerun``: the same source again, which must commit nothing). The catalog file is written
    by a child process (its memory is not the stages'); the peak RSS of every stage is sampled."""
    from lakehouse.ingest.annotations import import_annotations
    from lakehouse.ingest.clips import build_clips
    from lakehouse.ingest.keyframes import extract_keyframes
    from lakehouse.ingest.sources import register_source
    from lakehouse.ingest.stage import quarantine_report
    from lakehouse.ingest.videos import ingest_videos
    from lakehouse.publication.publish import publish

    root = args.root + "_stages"
    name = "increment" if args.increment else "catalog"
    n = max(1, args.stage_clips // 100) if args.increment else args.stage_clips
    if not args.increment and not args.rerun:
        shutil.rmtree(root, ignore_errors=True)
    folder = os.path.join(root + "_catalog", f"{name}_{n}")
    annotations = os.path.join(folder, "annotations.jsonl")
    if not os.path.isfile(annotations):
        seed, first = (2, 2 * 10**8) if args.increment else (1, 10**8)
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); import bench_scale as b; "
            "b.write_catalog(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))"
        )
        cmd = [sys.executable, "-c", code, str(Path(__file__).parent), annotations]
        subprocess.run([*cmd, str(n), str(seed), str(first)], check=True)
    memory = StageMemory()
    lh = Lakehouse(config_for(root))
    before = {t: lh.dataset(t).version for t in ("annotations", "clips") if lh.exists(t)}
    start = time.perf_counter()
    source = register_source(lh, folder, name=name, annotations=[annotations])
    run_id = f"bench-{name}"
    results = [
        memory.run("videos", ingest_videos, lh, source, run_id=run_id),
        memory.run("annotations", import_annotations, lh, source, run_id=run_id),
        memory.run("clips", build_clips, lh, source, run_id=run_id),
        memory.run("keyframes", extract_keyframes, lh, source, run_id=run_id),
        memory.run("quarantine", quarantine_report, lh, source),
    ]
    memory.run("publish", publish, lh)
    elapsed = time.perf_counter() - start
    for r in results:
        print(r.summary(), flush=True)
    emit(
        {
            "phase": "stages_rerun" if args.rerun else name,
            "clips": n,
            "clips_in_lakehouse": lh.count("clips"),
            "stages_s": round(elapsed, 1),
            "stage_s": memory.seconds,
            "stage_peak_rss_mb": memory.peaks,
            "commits": {
                t: lh.dataset(t).version - before.get(t, 0) for t in ("annotations", "clips")
            },
        }
    )


# -- driver -----------------------------------------------------------------------------------


def run_phase(phase: str, argv: list[str]) -> dict:
    """Run a phase in a fresh interpreter (its own peak RSS); return its RESULT line."""
    cmd = [sys.executable, __file__, phase, *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    result = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    if proc.wait() != 0:
        sys.exit(f"phase {phase} failed")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "phase", choices=["all", "generate", "sql", "search", "incremental", "stages"]
    )
    parser.add_argument("--stage-clips", type=int, default=200_000)
    parser.add_argument("--increment-seed", type=int, default=1, help="incremental: which 1%%")
    parser.add_argument("--increments", type=int, default=1, help="incremental: how many")
    parser.add_argument("--increment", action="store_true", help="stages: add 1%% as a new source")
    parser.add_argument("--rerun", action="store_true", help="stages: run the same source again")
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--root", default="/tmp/bench_scale")
    parser.add_argument("--batch", type=int, default=200_000, help="clips per upsert")
    parser.add_argument("--no-embeddings", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--sweep",
        type=lambda text: tuple(int(x) for x in text.split(",")),
        nargs="*",
        default=[(40, 20)],
        help="search: extra (nprobes,refine_factor) settings timed on the ANN cases",
    )
    parser.add_argument("--keep", action="store_true", help="leave the data at --root")
    args = parser.parse_args()
    if args.phase != "all":
        globals()[args.phase](args)
        return
    print(f"load average before: {load()} on {os.cpu_count()} CPUs", flush=True)
    passthrough = [
        f"--clips={args.clips}",
        f"--root={args.root}",
        f"--batch={args.batch}",
        f"--repeat={args.repeat}",
        f"--queries={args.queries}",
        f"--k={args.k}",
    ]
    if args.no_embeddings:
        passthrough.append("--no-embeddings")
    results = {"generate": run_phase("generate", passthrough)}
    results["sql"] = run_phase("sql", passthrough)
    if not args.no_embeddings:
        results["search"] = run_phase("search", passthrough)
    results["incremental"] = run_phase("incremental", passthrough)
    print(json.dumps(results, indent=1))
    full = sum(results["generate"][k] for k in ("write_s", "index_s", "sql_copy_s"))
    inc = sum(results["incremental"][k] for k in ("write_s", "index_s", "sql_copy_s"))
    print(
        f"\nincremental: {inc:.1f} s for 1% new videos vs {full:.1f} s for the full write "
        f"= {inc / full:.1%} (target < {TARGET_INCREMENTAL:.0%})"
    )
    for row in results["sql"]["queries"]:
        ok = row["ratio"] <= TARGET_SQL_RATIO and row["lakehouse_ms"] < TARGET_SQL_S * 1000
        verdict = "met" if ok else "missed"
        print(f"sql {row['query']}: {row['ratio']}x, {row['lakehouse_ms']} ms -> {verdict}")
    if not args.keep:
        shutil.rmtree(args.root, ignore_errors=True)
        shutil.rmtree(args.root + "_parquet", ignore_errors=True)


if __name__ == "__main__":
    main()
