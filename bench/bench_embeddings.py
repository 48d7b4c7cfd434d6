"""CLIP embedding throughput of the lakehouse stage against a bare inference loop, in one run.

For each corpus it embeds the same keyframes (the JPEG thumbnails of the ``keyframes`` table)
with the same loaded model, in batches of the same size:
  bare       decode each JPEG + preprocess + ``encode_image`` under ``torch.inference_mode()``,
             the JPEG bytes already in memory, nothing written (the baseline)
  lakehouse  ``lakehouse.enrich.embeddings.embed_clips`` on a table without vectors for the
             model: reads the clips, annotations and keyframes tables, embeds, pools per clip and
             upserts the ``clip_embeddings`` rows
and prints clips/s, keyframes/s and the lakehouse's overhead over the bare loop (target: at most
15%). Each variant runs ``--repeat`` times, alternating, and the best run counts; the model is
loaded once, outside the timed region. The model is ViT-B-32 with random weights (real compute,
meaningless vectors: no weights can be downloaded here).

Both variants also time their model calls (``in model``: the same forward + normalize on the
same batches), so ``outside`` (wall minus model) is everything else: JPEG decoding and
preprocessing for the bare loop; for the lakehouse, table reads, waiting on its prefetch thread
(which decodes and preprocesses while the model runs), pooling and the upsert. The model time
also differs a little between the variants (the bare loop's forward calls, interleaved with
decoding, run slower), so ``outside`` is the like-for-like column. Measure on a quiet machine.

Corpora: synthetic videos cut into 10 s clips (five keyframes each), plus the real HumanNet
preview clips when ../shared is present. With ``--breakdown`` one more lakehouse run is timed
phase by phase.

    python bench/bench_embeddings.py [--videos 24] [--seconds 50] [--repeat 2] [--breakdown]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from PIL import Image

from lakehouse.api import Lakehouse
from lakehouse.core.config import Config, ModelSettings
from lakehouse.enrich import embeddings
from lakehouse.ingest.sources import Source, register_source
from lakehouse.media import synth
from lakehouse.media.synth import Scene
from lakehouse.models.encoders import ClipModel, load_clip
from lakehouse.models.resolve import RANDOM_TAG
from lakehouse.pipeline import run_stages

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "humannet-preview"
TARGET_OVERHEAD = 0.15


@dataclasses.dataclass
class Corpus:
    name: str
    lh: Lakehouse
    source: Source
    clips: int
    jpegs: list[bytes]  # every keyframe embed_clips embeds, in its order (clip_id, idx)


def make_videos(folder: Path, videos: int, seconds: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(videos):
        kind = "ego" if i % 2 else "exo"
        scene = Scene(
            kind, seconds, i % 4, "reach" if kind == "ego" else ("walk", "dance")[i % 3 % 2]
        )
        synth.write_video(folder / f"{kind}_{i:03d}.mp4", [scene], fps=15, size=(320, 240), seed=i)
    return folder


def ingest(config: Config, folder: Path, name: str, annotations: list[Path], title: str) -> Corpus:
    """Run every ingest stage up to the keyframes (no embedding) and collect the keyframes."""
    lh = Lakehouse(config)
    source = register_source(lh, folder, name=name, annotations=[str(a) for a in annotations])
    run_stages(lh, source, embed=False)
    meta = dict(embeddings.clip_metadata(lh, source, probed_only=True))
    rows = lh.read("keyframes", columns=["clip_id", "idx", "jpeg"], filter=source.scope).to_pylist()
    rows = sorted((r for r in rows if r["clip_id"] in meta), key=lambda r: (r["clip_id"], r["idx"]))
    clips = len({r["clip_id"] for r in rows})
    return Corpus(title, lh, source, clips, [r["jpeg"] for r in rows])


def bare(corpus: Corpus, model: ClipModel, batch_size: int) -> float:
    """The baseline: decode + preprocess + forward in batches, nothing read or written.
    Returns the seconds spent in the model (the same work as ``ClipModel.encode_images``)."""
    vectors, in_model = [], 0.0
    for i in range(0, len(corpus.jpegs), batch_size):
        images = [
            model.preprocess(Image.open(io.BytesIO(b)).convert("RGB"))
            for b in corpus.jpegs[i : i + batch_size]
        ]
        batch = torch.stack(images)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.model.encode_image(batch.to(model.device))
            vectors.append(torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy())
        in_model += time.perf_counter() - start
    assert sum(len(v) for v in vectors) == len(corpus.jpegs)
    return in_model


def reset(corpus: Corpus) -> None:
    """Drop the clip_embeddings table, so the next embed_clips embeds every clip again."""
    shutil.rmtree(corpus.lh.table_uri(embeddings.CLIP_TABLE), ignore_errors=True)


def lakehouse(corpus: Corpus, model: ClipModel) -> float:
    """One ``embed_clips`` run that embeds every clip; returns the seconds spent in the model."""
    in_model = 0.0
    encode = model.encode_images

    def timed_encode(batch):
        nonlocal in_model
        start = time.perf_counter()
        try:
            return encode(batch)
        finally:
            in_model += time.perf_counter() - start

    model.encode_images = timed_encode  # an instance attribute, removed below
    try:
        result = embeddings.embed_clips(
            corpus.lh, corpus.source, run_id=uuid.uuid4().hex, model=model
        )
    finally:
        del model.encode_images
    embedded = result.details["embedded"]
    if embedded != corpus.clips:
        raise RuntimeError(f"embed_clips embedded {embedded} clips, expected {corpus.clips}")
    return in_model


@dataclasses.dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # CPU seconds of this process, all threads
    model: float  # seconds inside the model forward

    @property
    def outside(self) -> float:
        return self.wall - self.model


def timed(fn, *args) -> Run:
    wall, cpu = time.perf_counter(), time.process_time()
    in_model = fn(*args)
    return Run(time.perf_counter() - wall, time.process_time() - cpu, in_model)


def bench_corpus(corpus: Corpus, model: ClipModel, batch_size: int, repeat: int) -> dict:
    runs: dict[str, list[Run]] = {"bare": [], "lakehouse": []}
    for _ in range(repeat):  # alternate, so a busy spell of the machine hits both
        runs["bare"].append(timed(bare, corpus, model, batch_size))
        reset(corpus)
        runs["lakehouse"].append(timed(lakehouse, corpus, model))
    best = {k: min(v, key=lambda r: r.wall) for k, v in runs.items()}
    outside = {k: min(r.outside for r in v) for k, v in runs.items()}
    frames = len(corpus.jpegs)
    base = best["bare"].wall
    print(f"\n{corpus.name}: {corpus.clips} clips, {frames} keyframes, batch {batch_size}")
    print(
        f"  {'method':<10} {'best s':>7} {'clips/s':>8} {'kf/s':>7} {'vs bare':>8} "
        f"{'in model':>9} {'outside':>8} {'cpu s':>7}  all runs (wall s)"
    )
    for method, run in best.items():
        print(
            f"  {method:<10} {run.wall:7.2f} {corpus.clips / run.wall:8.2f} "
            f"{frames / run.wall:7.2f} {base / run.wall:7.3f}x {run.model:9.2f} "
            f"{outside[method]:8.2f} {run.cpu:7.2f}  "
            + " ".join(f"{r.wall:.2f}" for r in runs[method])
        )
    overhead = best["lakehouse"].wall / base - 1
    verdict = "within" if overhead <= TARGET_OVERHEAD else "OVER"
    print(
        f"  lakehouse overhead over the bare loop: {overhead:+.1%} "
        f"({verdict} the {TARGET_OVERHEAD:.0%} target); time outside the model: "
        f"{outside['lakehouse'] - outside['bare']:+.2f} s "
        f"({(outside['lakehouse'] - outside['bare']) / base:+.1%} of the bare run)"
    )
    return {"clips": corpus.clips, "keyframes": frames, **best}


# -- optional phase breakdown ------------------------------------------------------------------


@contextmanager
def phase_timer() -> Iterator[dict[str, float]]:
    """Time the phases of embed_clips by wrapping the functions it calls (restored after)."""
    totals: dict[str, float] = defaultdict(float)
    patched: list[tuple[object, str, object]] = []
    active = threading.local()

    def wrap(owner: object, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if getattr(active, "busy", False):  # nested call: counted by the outer phase
                return original(*args, **kwargs)
            active.busy = True
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - start
                active.busy = False

        patched.append((owner, attr, original))
        setattr(owner, attr, timed)

    wrap(ClipModel, "encode_texts", "text probe for the vector size")
    wrap(ClipModel, "encode_images", "model forward (encode_images)")
    wrap(embeddings, "_read_keyframes", "read keyframe JPEGs (_read_keyframes)")
    wrap(embeddings, "_preprocess", "[prefetch thread] decode + preprocess a batch")
    wrap(embeddings, "_clip_rows", "pool + build rows (_clip_rows)")
    wrap(Lakehouse, "upsert", "upsert clip_embeddings")
    wrap(Lakehouse, "count", "count rows for the result")
    wrap(Lakehouse, "read", "other table reads")
    try:
        yield totals
    finally:
        for owner, attr, original in reversed(patched):
            setattr(owner, attr, original)


def breakdown(corpus: Corpus, model: ClipModel) -> None:
    reset(corpus)
    with phase_timer() as totals:
        start = time.perf_counter()
        lakehouse(corpus, model)
        total = time.perf_counter() - start
    print(f"\n  where one lakehouse run's {total:.2f} s go ({corpus.name}):")
    main_thread = 0.0
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"    {label:<55} {seconds:7.3f} s {seconds / total:6.1%}")
        if not label.startswith("[prefetch"):
            main_thread += seconds
    rest = total - main_thread
    print(
        f"    {'rest of the main thread (waiting on prefetch, misc)':<55} {rest:7.3f} s "
        f"{rest / total:6.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24, help="synthetic videos (0: none)")
    parser.add_argument("--seconds", type=int, default=50, help="length of each synthetic video")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each variant (best counts)")
    parser.add_argument("--batch-size", type=int, default=ModelSettings().batch_size)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--no-real", action="store_true", help="skip the HumanNet preview")
    parser.add_argument("--breakdown", action="store_true", help="time embed_clips by phase")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = Config.load(root=folder / "lakehouse", env={})
        config = dataclasses.replace(
            base,
            models=dataclasses.replace(
                base.models,
                clip_arch=args.arch,
                clip_pretrained=RANDOM_TAG,
                device=args.device,
                batch_size=args.batch_size,
            ),
        )
        start = time.perf_counter()
        model = load_clip(config.models)
        print(
            f"model {model.model_id} loaded in {time.perf_counter() - start:.1f} s; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {model.device}; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
            print("warning: the machine is busy; the timings below will be noisy")
        with torch.inference_mode():  # warm-up, outside every timed region
            model.model.encode_image(torch.zeros(args.batch_size, 3, 224, 224, device=model.device))
        corpora = []
        if args.videos:
            start = time.perf_counter()
            videos = make_videos(folder / "synthetic", args.videos, args.seconds)
            title = f"synthetic 320x240, {args.videos} x {args.seconds} s videos in 10 s clips"
            corpora.append(ingest(config, videos, "synthetic", [], title))
            print(f"synthetic corpus generated and ingested in {time.perf_counter() - start:.0f} s")
        if SHARED.is_dir() and not args.no_real:
            start = time.perf_counter()
            title = "real HumanNet preview clips (annotation spans)"
            annotations = [SHARED / "annotations.jsonl"]
            corpora.append(ingest(config, SHARED, "humannet", annotations, title))
            print(f"HumanNet preview ingested in {time.perf_counter() - start:.0f} s")
        elif not args.no_real:
            print(f"(real preview clips skipped: {SHARED} not found)")
        for corpus in corpora:
            bench_corpus(corpus, model, args.batch_size, args.repeat)
            if args.breakdown:
                breakdown(corpus, model)
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
