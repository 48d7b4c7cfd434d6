"""Planning the keyframe and embedding stages at scale: peak memory and wall time of a re-run
with nothing to do, streamed plans (the current ``lakehouse`` modules) against whole-source
reads (the same modules at the baseline commit).

One source of ``--clips`` clips (20 per video, 2 keyframes each) is written once to ``--root``,
up to date in every table the three stages read (``videos``, ``clips``, ``annotations``,
``keyframes``, ``clip_embeddings``, ``text_embeddings``; 8-d vectors, no JPEG bytes): a re-run
of ``extract_keyframes``, ``embed_clips`` and ``embed_captions`` only plans, and must find
nothing to write. Each (stage, variant) runs in its own child process, so its peak RSS
(``ru_maxrss``) is its own; old and new alternate.

The baseline is ``lakehouse/keyframes.py`` and ``lakehouse/embeddings.py`` at ``BASELINE`` (the
commit before the streamed plans), read with ``git show`` and imported under other module
names; they import only from ``lakehouse.*``, which still provides what they use.

    python bench/bench_plans.py --clips 1000000 [--repeat 1] [--root /tmp/bench_plans] [--keep]

Nothing here asserts a time; the numbers go in bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import importlib
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import config_for
from corpus import ENVIRONMENTS, taxonomy, vocabulary

from lakehouse.api import Lakehouse
from lakehouse.core import schemas
from lakehouse.core.config import Config
from lakehouse.core.ids import model_key
from lakehouse.core.schemas import CLIP_TABLE, TEXT_TABLE
from lakehouse.enrich.embeddings import text_hash
from lakehouse.ingest.sources import Source
from lakehouse.models.resolve import resolve_clip, resolve_text

PROJECT = Path(__file__).resolve().parent.parent
BASELINE = "6f27973"  # the parent of the streamed plans (663ebed, 89b94a9)
SOURCE = "bench"
CLIPS_PER_VIDEO = 20
KEYFRAMES_PER_CLIP = 2
GOP_S = 2.0  # keyframe interval of the synthetic videos (their keyframe_times_s)
DIM = 8  # this measures planning, not vectors
TEXT_FIELDS = ("short_caption", "long_caption", "semantic_motion", "motion_sequence")
# stage -> (module, function)
STAGES = {
    "keyframes": ("keyframes", "extract_keyframes"),
    CLIP_TABLE: ("embeddings", "embed_clips"),
    TEXT_TABLE: ("embeddings", "embed_captions"),
}
TABLES = ("videos", "clips", "annotations", "keyframes", CLIP_TABLE, TEXT_TABLE)
WATCHED = (*TABLES, "quarantine")  # a re-run with nothing to do commits to none of them


def stage_config(args: argparse.Namespace) -> Config:
    """``bench_scale``'s config (random-init ViT-B-32, resolved offline) with the caption
    fields to embed (the text model is the configured MiniLM, installed as a package) and,
    where given, another ``ingest.sort_memory_mb``."""
    config = config_for(args.root)
    models = dataclasses.replace(config.models, text_fields=args.text_fields)
    ingest = config.ingest
    if args.sort_memory_mb:
        ingest = dataclasses.replace(ingest, sort_memory_mb=args.sort_memory_mb)
    return dataclasses.replace(config, models=models, ingest=ingest)


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the corpus -------------------------------------------------------------------------------


def _table(schema: pa.Schema, columns: dict[str, pa.Array], n: int) -> pa.Table:
    arrays = [
        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise string concatenation of arrays and constants."""
    n = next(len(p) for p in parts if not isinstance(p, str))
    arrays = [pa.array([p] * n) if isinstance(p, str) else p.cast(pa.string()) for p in parts]
    return pc.binary_join_element_wise(*arrays, "")


@dataclasses.dataclass
class Corpus:
    """What every batch shares: the caption pools (and their hashes) and the model ids."""

    config: Config
    clip_model: str
    text_model: str
    text_fields: tuple[str, ...]
    seed: int = 0

    def __post_init__(self) -> None:
        vocab = vocabulary(self.seed)
        self.pools = {
            "short_caption": vocab.short,
            "long_caption": vocab.long,
            "semantic_motion": vocab.motion,
            "motion_sequence": vocab.sequence,
        }
        self.hashes = {
            f: pa.array([text_hash(t) for t in pool.to_pylist()])
            for f, pool in self.pools.items()
            if f in self.text_fields
        }
        self.leaves = taxonomy()
        self.fingerprint = self.config.keyframes.fingerprint()

    def batch(self, lo: int, hi: int) -> dict[str, pa.Table]:
        """The rows of clips ``lo``..``hi`` (``lo`` a multiple of ``CLIPS_PER_VIDEO``) in every
        table, as the stages would have written them: a re-run finds them all up to date."""
        rng = np.random.default_rng([self.seed, lo])
        n = hi - lo
        video_of = np.arange(n) // CLIPS_PER_VIDEO
        nv = int(video_of[-1]) + 1
        first_video = lo // CLIPS_PER_VIDEO
        video_ids = [
            hashlib.sha256(f"{self.seed}:{v}".encode()).hexdigest()[:32]
            for v in range(first_video, first_video + nv)
        ]
        take = pa.array(video_of)
        # clips back to back in their video, log-normal durations (median 4.5 s)
        duration = np.clip(np.round(rng.lognormal(np.log(4.5), 0.7, size=n), 3), 1.0, 30.0)
        ends = np.cumsum(duration)
        per = np.bincount(video_of)
        first_end = np.concatenate([[0.0], ends[np.cumsum(per)[:-1] - 1]])
        start = np.round(ends - duration - first_end[video_of], 3)
        end = np.round(start + duration, 3)
        video_len = np.round(np.bincount(video_of, weights=duration) + rng.uniform(0, 5, nv), 3)
        ego = rng.random(nv) < 0.45
        is_ego = pa.array(ego[video_of])
        fps = np.where(ego, 30.0, rng.choice([24.0, 25.0, 29.97, 30.0], size=nv))
        vid = pa.array(video_ids).take(take)
        start_ms = pa.array(np.round(start * 1000).astype(np.int64))
        end_ms = pa.array(np.round(end * 1000).astype(np.int64))
        clip_ids = _join(pc.utf8_slice_codeunits(vid, 0, 20), "-", start_ms, "-", end_ms)
        uri = _join(f"/corpus/{SOURCE}/", vid, ".mp4")
        view = pc.if_else(is_ego, "ego", "exo")
        leaf = rng.integers(0, len(self.leaves), nv)[video_of]
        null = pa.nulls(n, pa.string())
        tax = [
            pc.if_else(is_ego, null, pa.array([t[i] for t in self.leaves]).take(pa.array(leaf)))
            for i in range(3)
        ]
        picks = {f: pa.array(rng.integers(0, len(p), n)) for f, p in self.pools.items()}
        text = {f: self.pools[f].take(picks[f]) for f in self.pools}
        text["long_caption"] = pc.if_else(is_ego, null, text["long_caption"])
        env = pa.array(ENVIRONMENTS).take(pa.array(rng.integers(0, len(ENVIRONMENTS), n)))
        quality = pa.array(np.round(rng.beta(5, 2, n), 4))
        now = dt.datetime.now(dt.UTC)
        stamp = pa.array([now] * n, type=pa.timestamp("us", tz="UTC"))
        gops = [np.arange(0.0, length, GOP_S) for length in video_len]
        offsets = np.concatenate([[0], np.cumsum([len(g) for g in gops])]).astype(np.int32)
        videos = {
            "video_id": pa.array(video_ids),
            "source": pa.array([SOURCE] * nv),
            "uri": _join(f"/corpus/{SOURCE}/", pa.array(video_ids), ".mp4"),
            "relpath": _join(pa.array(video_ids), ".mp4"),
            "sha256": _join(pa.array(video_ids), pa.array(video_ids)),
            "size_bytes": pa.array(np.round(video_len * 2e5).astype(np.int64)),
            "container": pa.array(["mov,mp4,m4a,3gp,3g2,mj2"] * nv),
            "codec": pa.array(["h264"] * nv),
            "pix_fmt": pa.array(["yuv420p"] * nv),
            "width": pa.array(np.where(ego, 640, 852).astype(np.int32)),
            "height": pa.array(np.where(ego, 360, 480).astype(np.int32)),
            "fps": pa.array(fps),
            "num_frames": pa.array(np.round(video_len * fps).astype(np.int64)),
            "duration_s": pa.array(video_len),
            "start_time_s": pa.array(np.zeros(nv)),
            "rotation": pa.array(np.zeros(nv, dtype=np.int32)),
            "gop_s": pa.array(np.full(nv, GOP_S)),
            "keyframe_times_s": pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(np.concatenate(gops))
            ),
            "probe_version": pa.array(["synthetic"] * nv),
            "run_id": pa.array(["bench"] * nv),
        }
        fps_c = fps[video_of]
        clips = {
            "clip_id": clip_ids,
            "video_id": vid,
            "source": pa.array([SOURCE] * n),
            "uri": uri,
            "probe_status": pa.array(["ok"] * n),
            "start_s": pa.array(start),
            "end_s": pa.array(end),
            "duration_s": pa.array(np.round(end - start, 6)),
            "start_frame": pa.array(np.round(start * fps_c).astype(np.int64)),
            "end_frame": pa.array(np.round(end * fps_c).astype(np.int64)),
            "fps": pa.array(fps_c),
            "viewpoint": view,
            "segmentation": pa.array(["annotation"] * n),
            "external_id": _join(view, "_", clip_ids),
            "source_video_id": vid,
            "taxonomy_l1": tax[0],
            "taxonomy_l2": tax[1],
            "taxonomy_l3": tax[2],
            "quality_score": quality,
            "annotation_count": pa.array(np.ones(n, dtype=np.int32)),
            **text,
            "environment": env,
            "run_id": pa.array(["bench"] * n),
        }
        annotations = {
            "annotation_id": pa.array(
                [hashlib.sha256(c.encode()).hexdigest()[:24] for c in clip_ids.to_pylist()]
            ),
            **{k: clips[k] for k in ("clip_id", "video_id", "source", "uri", "viewpoint")},
            "annotation_source": pa.array([f"/corpus/{SOURCE}/annotations.jsonl"] * n),
            "line_number": pa.array(np.arange(lo, hi, dtype=np.int64) + 1),
            "external_id": clips["external_id"],
            "video_ref": uri,
            "video_found": pa.array(np.ones(n, dtype=bool)),
            "video_status": pa.array(["ok"] * n),
            "start_s": clips["start_s"],
            "end_s": clips["end_s"],
            "span_kind": pa.array(["annotated"] * n),
            "quality_score": quality,
            **text,
            "environment": env,
            "taxonomy_l1": tax[0],
            "taxonomy_l2": tax[1],
            "taxonomy_l3": tax[2],
            "run_id": clips["run_id"],
        }
        k = KEYFRAMES_PER_CLIP
        kf_idx = np.tile(np.arange(k, dtype=np.int32), n)
        kf_clip = pa.array(np.repeat(np.arange(n), k))
        kf_offset = (kf_idx + 0.5) * np.repeat(end - start, k) / k
        kf_ids = _join(clip_ids.take(kf_clip), f":{self.fingerprint}:", pa.array(kf_idx))
        keyframes = {
            "keyframe_id": kf_ids,
            "clip_id": clip_ids.take(kf_clip),
            "video_id": vid.take(kf_clip),
            "source": pa.array([SOURCE] * (k * n)),
            "idx": pa.array(kf_idx),
            "time_s": pa.array(np.round(np.repeat(start, k) + kf_offset, 6)),
            "clip_time_s": pa.array(np.round(kf_offset, 6)),
            "width": pa.array(np.full(k * n, 398, dtype=np.int32)),
            "height": pa.array(np.full(k * n, 224, dtype=np.int32)),
            "sampler": pa.array(["sequential"] * (k * n)),
            "settings": pa.array([self.fingerprint] * (k * n)),
            "run_id": pa.array(["bench"] * (k * n)),
        }
        meta = {name: clips[name] for name in schemas.SEARCH_METADATA_NAMES}
        vectors = rng.standard_normal((n, DIM), dtype=np.float32)
        vector = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM)
        clip_vectors = {
            "embedding_id": _join(clip_ids, f":{model_key(self.clip_model)}"),
            "clip_id": clip_ids,
            "model_id": pa.array([self.clip_model] * n),
            "vector": vector,
            "keyframe_ids": pa.ListArray.from_arrays(
                pa.array(np.arange(0, k * n + 1, k, dtype=np.int32)), kf_ids
            ),
            **meta,
            "embedded_at": stamp,
            "run_id": clips["run_id"],
        }
        text_key = model_key(self.text_model)
        text_vectors = []
        for field in self.text_fields:
            rows = pc.is_valid(text[field])
            texts = {
                "embedding_id": _join(clip_ids, f":{field}:{text_key}"),
                "clip_id": clip_ids,
                "field": pa.array([field] * n),
                "text": text[field],
                "text_hash": self.hashes[field].take(picks[field]),
                "model_id": pa.array([self.text_model] * n),
                "vector": vector,
                **meta,
                "embedded_at": stamp,
                "run_id": clips["run_id"],
            }
            text_vectors.append(_table(schemas.text_embeddings_schema(DIM), texts, n).filter(rows))
        return {
            "videos": _table(schemas.VIDEOS, videos, nv),
            "clips": _table(schemas.CLIPS, clips, n),
            "annotations": _table(schemas.ANNOTATIONS, annotations, n),
            "keyframes": _table(schemas.KEYFRAMES, keyframes, k * n),
            CLIP_TABLE: _table(schemas.clip_embeddings_schema(DIM), clip_vectors, n),
            TEXT_TABLE: pa.concat_tables(text_vectors),
        }


def write_corpus(args: argparse.Namespace) -> dict:
    """Write the source batch by batch through ``Lakehouse.upsert`` (as ingest does)."""
    shutil.rmtree(args.root, ignore_errors=True)
    config = stage_config(args)
    lh = Lakehouse(config)
    corpus = Corpus(
        config,
        resolve_clip(config.models, check_online=False).model_id,
        resolve_text(config.models, check_online=False).model_id,
        args.text_fields,
    )
    lh.ensure("quarantine")  # the first run of the stages made it (empty: nothing failed)
    batch = max(CLIPS_PER_VIDEO, args.batch // CLIPS_PER_VIDEO * CLIPS_PER_VIDEO)
    seconds = dict.fromkeys(TABLES, 0.0)
    start = time.perf_counter()
    for lo in range(0, args.clips, batch):
        for name, table in corpus.batch(lo, min(args.clips, lo + batch)).items():
            t = time.perf_counter()
            lh.upsert(name, table, update=False, schema=table.schema)
            seconds[name] += time.perf_counter() - t
        done = min(args.clips, lo + batch)
        rate = done / (time.perf_counter() - start)
        print(f"  wrote {done:,} clips ({rate:,.0f} clips/s)", flush=True)
    return {
        "write_s": round(time.perf_counter() - start, 1),
        "upsert_s": {k: round(v, 1) for k, v in seconds.items()},
        "rows": {t: lh.count(t) for t in TABLES},
        "lance_gb": round(
            sum(f.stat().st_size for f in Path(args.root).rglob("*") if f.is_file()) / 1e9, 2
        ),
    }


# -- the stages -------------------------------------------------------------------------------


def write_baseline(folder: Path) -> None:
    """The baseline's stage modules, as files a child imports under other names."""
    folder.mkdir(parents=True, exist_ok=True)
    for module in {m for m, _ in STAGES.values()}:
        code = subprocess.run(
            ["git", "show", f"{BASELINE}:lakehouse/{module}.py"],
            cwd=PROJECT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (folder / f"{module}.py").write_text(code)


def baseline_module(folder: Path, module: str) -> ModuleType:
    name = f"baseline_{BASELINE}_{module}"
    spec = importlib.util.spec_from_file_location(name, folder / f"{module}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded  # before running it, as an import would (dataclasses look it up)
    spec.loader.exec_module(loaded)
    return loaded


def versions(lh: Lakehouse) -> dict[str, int | None]:
    return {t: ds.version if (ds := lh.dataset(t)) is not None else None for t in WATCHED}


def reset_peak_rss() -> None:
    """Start the process's peak RSS (``ru_maxrss``, ``VmHWM``) again from its current RSS, so
    that what importing and opening cost before the stage does not count as the stage's peak."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def child(args: argparse.Namespace) -> None:
    """One stage, one variant, over the up-to-date source: time it, check that it wrote
    nothing, print a RESULT line (the parent reads it). ``corpus``: write the source."""
    if args.child == "corpus":
        print("RESULT " + json.dumps(write_corpus(args)), flush=True)
        return
    stage, variant = args.child.split(":")
    module_name, function = STAGES[stage]
    if variant == "old":
        module = baseline_module(Path(args.root) / "baseline", module_name)
    else:
        module = importlib.import_module(f"lakehouse.{module_name}")
    config = stage_config(args)
    lh = Lakehouse(config)
    # what resolving the models imports (open_clip, torch) comes before the clock, for both
    resolve_clip(config.models, check_online=False)
    resolve_text(config.models, check_online=False)
    before = versions(lh)
    reset_peak_rss()
    rss_start = rss_mb()
    start = time.perf_counter()
    result = getattr(module, function)(lh, Source(name=SOURCE, uri="/nowhere"), run_id="again")
    seconds = time.perf_counter() - start
    embedded = result.details.get("embedded")
    after = versions(lh)
    if result.write.changed or (stage != "keyframes" and embedded != 0) or after != before:
        changed = {t: (before[t], after[t]) for t in WATCHED if before[t] != after[t]}
        sys.exit(
            f"{stage} ({variant}) wrote something: {result.write}, embedded {embedded}, "
            f"table versions {changed}"
        )
    print(
        f"{stage} ({variant}): nothing written (inserted {result.write.inserted}, updated "
        f"{result.write.updated}, deleted {result.write.deleted}"
        + (f", embedded {embedded}" if embedded is not None else "")
        + f"; table versions unchanged); {result.rows:,} rows in scope",
        flush=True,
    )
    out = {
        "stage": stage,
        "variant": variant,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb()),
        "rss_at_start_mb": round(rss_start),
        "rows": result.rows,
        "load_after": load(),
    }
    print("RESULT " + json.dumps(out), flush=True)


def run_child(what: str, args: argparse.Namespace) -> dict:
    """Run ``--child=what`` in a fresh interpreter; return its RESULT line, or ``{"error":
    the exception's line}`` where it failed (its traceback is printed). The parent stays small
    (it imports no model library): a child's ``ru_maxrss`` starts from its parent's."""
    cmd = [sys.executable, __file__, f"--child={what}", f"--root={args.root}"]
    cmd += [f"--clips={args.clips}", f"--batch={args.batch}"]
    cmd.append(f"--text-fields={','.join(args.text_fields)}")
    if args.sort_memory_mb:
        cmd.append(f"--sort-memory-mb={args.sort_memory_mb}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result, error = {}, ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            continue
        print("  " + line, end="", flush=True)
        if re.match(r"[\w.]+(Error|Exception)\b", line) or "wrote something" in line:
            error = line.strip()
    if proc.wait() != 0 or not result:
        return {"error": error or f"exit {proc.returncode}", "load_after": load()}
    return result


def summary(stage: str, old: list[dict], new: list[dict]) -> dict:
    """A stage's row: the most memory of any run and the best time, per variant; the errors
    of runs that failed."""
    row: dict = {"stage": stage}
    ok = {"old": [r for r in old if "error" not in r], "new": [r for r in new if "error" not in r]}
    for variant, all_runs in (("old", old), ("new", new)):
        if ok[variant]:
            row[f"{variant}_peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok[variant])
            row[f"{variant}_s"] = min(r["seconds"] for r in ok[variant])
        errors = [r["error"] for r in all_runs if "error" in r]
        if errors:
            row[f"{variant}_errors"] = errors
    if ok["old"] and ok["new"]:
        row["rss_ratio"] = round(row["new_peak_rss_mb"] / row["old_peak_rss_mb"], 3)
        row["time_ratio"] = round(row["new_s"] / row["old_s"], 3)
    if ok["old"] or ok["new"]:
        row["rss_at_start_mb"] = max(r["rss_at_start_mb"] for r in ok["old"] + ok["new"])
    return row


def machine() -> str:
    with open("/proc/meminfo") as info:
        mem_gb = int(info.readline().split()[1]) / 2**20
    import duckdb
    import lance

    return (
        f"{os.cpu_count()} CPUs, {mem_gb:.0f} GiB, Python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}, pylance {lance.__version__}, pyarrow {pa.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--root", default="/tmp/bench_plans")
    parser.add_argument("--batch", type=int, default=100_000, help="clips per upsert")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (stage, variant)")
    parser.add_argument(
        "--text-fields",
        type=lambda s: tuple(TEXT_FIELDS if s == "all" else s.split(",")),
        default=("short_caption",),
        help="caption fields to embed (comma-separated, or 'all'; default short_caption)",
    )
    parser.add_argument(
        "--sort-memory-mb", type=int, default=0, help="ingest.sort_memory_mb (default: config's)"
    )
    parser.add_argument(
        "--variants",
        type=lambda s: tuple(s.split(",")),
        default=("old", "new"),
        help="which to run: old,new (default) or one of them",
    )
    parser.add_argument("--reuse", action="store_true", help="plan over a kept --root")
    parser.add_argument("--keep", action="store_true", help="leave the corpus at --root")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # stage:variant, run by the parent
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"{machine()}; load average before: {load()}", flush=True)
    report: dict = {"clips": args.clips, "text_fields": list(args.text_fields)}
    report["load_before"] = load()
    if args.reuse and Path(args.root, "clips.lance").exists():
        print(f"reusing the corpus at {args.root}", flush=True)
    else:
        print(f"writing {args.clips:,} clips to {args.root}", flush=True)
        report["corpus"] = run_child("corpus", args)
        if "error" in report["corpus"]:
            sys.exit(f"writing the corpus failed: {report['corpus']['error']}")
        print(json.dumps(report["corpus"]), flush=True)
    write_baseline(Path(args.root) / "baseline")
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.repeat):
        for stage in STAGES:
            for variant in args.variants:
                print(f"{stage} ({variant}), load average {load()}", flush=True)
                run = run_child(f"{stage}:{variant}", args)
                runs.setdefault((stage, variant), []).append(run)
                if "error" in run:
                    print(f"  failed: {run['error']}", flush=True)
                else:
                    print(
                        f"  {run['seconds']:.1f} s, peak RSS {run['peak_rss_mb']:,} MB "
                        f"(at start {run['rss_at_start_mb']:,} MB)",
                        flush=True,
                    )
    rows = [
        summary(stage, runs.get((stage, "old"), []), runs.get((stage, "new"), []))
        for stage in STAGES
    ]
    print(f"\n{args.clips:,} clips, re-run with nothing to do; load average after: {load()}")
    print(
        "(peak RSS: the most of any run, from the stage's start; time: the best run; "
        "RSS at start: the process before the stage, imports done)"
    )
    print(
        "| stage | old peak RSS MB | new peak RSS MB | ratio new/old | old s | new s "
        "| RSS at start MB |"
    )
    print("|---|---|---|---|---|---|---|")
    peaks = ("old_peak_rss_mb", "new_peak_rss_mb")
    for r in rows:
        missing = {v: "failed" if f"{v}_errors" in r else "not run" for v in ("old", "new")}
        cells = [r["stage"]]
        cells += [f"{r[k]:,}" if k in r else missing[k[:3]] for k in peaks]
        cells.append(f"{r['rss_ratio']:.2f}" if "rss_ratio" in r else "-")
        cells += [f"{r[k]:.1f}" if k in r else missing[k[:3]] for k in ("old_s", "new_s")]
        cells.append(f"{r['rss_at_start_mb']:,}" if "rss_at_start_mb" in r else "-")
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        for variant in ("old", "new"):
            for error in r.get(f"{variant}_errors", []):
                print(f"{r['stage']} ({variant}) failed: {error}")
    report.update(results=rows, load_after=load(), runs=[r for rs in runs.values() for r in rs])
    report["parent_peak_rss_mb"] = round(peak_rss_mb())
    print("RESULT " + json.dumps(report), flush=True)
    if not args.keep:
        shutil.rmtree(args.root, ignore_errors=True)


if __name__ == "__main__":
    main()
