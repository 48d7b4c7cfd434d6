"""Signals throughput of the lakehouse stage against the bare MediaPipe loop, in one run.

On the real HumanNet preview (36 clips, one frame per 2 s of each clip: 138 frames) it analyses
the same frames with the same loaded MediaPipe graphs (hands, pose, full-range faces):
  bare       ``hands.process`` + ``pose.process`` + ``faces.process`` on each frame, the frames
             already decoded in memory, nothing read or written (the baseline)
  lakehouse  ``lakehouse.enrich.signals.compute_signals`` on a lakehouse without signals: reads the
             clips and keyframes tables, gets the frames, runs the detectors and the quality
             measures, summarizes each clip and upserts ``signals`` and ``signal_frames``
for both frame sources: ``keyframes`` (the stored 224 px JPEG thumbnails; the bare loop gets
them decoded) and ``video`` (the keyframe times decoded again from the source at 480 px in the
worker processes; the bare loop gets those frames decoded beforehand). It prints clips/s,
frames/s, the lakehouse's time over the bare loop's, and both variants' time inside the three
``process`` calls (``in model``), so ``outside`` (wall minus model) is the like-for-like cost
of everything else, and the CPU time of the process and its decoding workers (which other jobs
on the machine disturb much less than the wall time). Each variant runs ``--repeat`` times,
alternating; the run with the best wall time counts.

    python bench/bench_signals.py [--repeat 2] [--root /tmp/bench_signals]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from lakehouse.api import Lakehouse
from lakehouse.core.config import Config
from lakehouse.enrich import signals
from lakehouse.ingest.sources import register_source
from lakehouse.media.detectors import FrameAnalyzer
from lakehouse.pipeline import run_stages

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "humannet-preview"


class Timed:
    """Wraps the analyzer's MediaPipe graphs to add up the time spent inside ``process``."""

    def __init__(self, analyzer: FrameAnalyzer):
        self.seconds = 0.0
        for name in ("_hands", "_pose", "_faces"):
            graph = getattr(analyzer, name)
            graph.process = self._wrap(graph.process)

    def _wrap(self, process):
        def timed(image):
            start = time.perf_counter()
            try:
                return process(image)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the decoding workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bare(analyzer: FrameAnalyzer, frames: list[np.ndarray]) -> None:
    for rgb in frames:
        image = np.ascontiguousarray(rgb)
        image.flags.writeable = False
        analyzer._hands.process(image)
        analyzer._pose.process(image)
        analyzer._faces.process(image)


def reset(lh: Lakehouse) -> None:
    for table in (signals.TABLE, signals.FRAMES_TABLE):
        shutil.rmtree(lh.table_uri(table), ignore_errors=True)


def frames_of(lh: Lakehouse) -> tuple[list[np.ndarray], int]:
    """The frames ``compute_signals`` analyses for the configured frame source, decoded."""
    rows = lh.read("keyframes", columns=["keyframe_id", "clip_id", "idx", "time_s"]).to_pylist()
    by_clip: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["clip_id"], r["idx"])):
        by_clip.setdefault(row["clip_id"], []).append(row)
    fallbacks: list[str] = []
    images = {}
    for group in signals.frame_groups(lh, sorted(by_clip), by_clip, fallbacks):
        for clip_images in group.values():
            images.update(clip_images)
    assert not fallbacks, "some videos could not be decoded"
    order = [r["keyframe_id"] for c in sorted(by_clip) for r in by_clip[c]]
    return [images[k][0] for k in order], len(by_clip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--root", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    if not (SHARED / "annotations.jsonl").is_file():
        raise SystemExit(f"the HumanNet preview is not at {SHARED}; nothing to measure")
    work = Path(args.root or tempfile.mkdtemp(prefix="bench_signals-"))
    print(f"load average at start: {os.getloadavg()}")
    config = Config.load(root=work / "lakehouse", env={})
    lh = Lakehouse(config)
    source = register_source(
        lh, SHARED, name="humannet", annotations=[str(SHARED / "annotations.jsonl")]
    )
    started = time.perf_counter()
    run_stages(lh, source, embed=False)
    print(f"ingest (no embeddings): {time.perf_counter() - started:.1f} s")
    analyzer = FrameAnalyzer(config.signals)
    timer = Timed(analyzer)
    print(f"model: {analyzer.model_id}")
    results = []
    for frame_source in ("keyframes", "video"):
        settings = dataclasses.replace(config.signals, frame_source=frame_source)
        lh.config = dataclasses.replace(config, signals=settings)
        frames, clips = frames_of(lh)
        size = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
        best = {"bare": (float("inf"), 0.0, 0.0), "lakehouse": (float("inf"), 0.0, 0.0)}
        for _ in range(args.repeat):
            for variant in ("bare", "lakehouse"):
                reset(lh)
                timer.seconds = 0.0
                cpu = cpu_seconds()
                start = time.perf_counter()
                if variant == "bare":
                    bare(analyzer, frames)
                else:
                    result = signals.compute_signals(lh, source, run_id="bench", analyzer=analyzer)
                    assert result.details["analysed"] == clips, result.details
                wall = time.perf_counter() - start
                if wall < best[variant][0]:
                    best[variant] = (wall, timer.seconds, cpu_seconds() - cpu)
        results.append((frame_source, size, clips, len(frames), best))
    analyzer.close()
    print(f"load average at end: {os.getloadavg()}\n")
    print(
        "| frames | bare loop | lakehouse `compute_signals` | lakehouse vs bare "
        "| in model, bare / lakehouse | outside the model, bare → lakehouse "
        "| CPU time, bare → lakehouse |"
    )
    print("|---|---|---|---|---|---|---|")
    for frame_source, size, clips, n, best in results:
        (bw, bm, bc), (lw, lm, lc) = best["bare"], best["lakehouse"]
        print(
            f"| {frame_source} ({size}, {n} frames, {clips} clips) "
            f"| {clips / bw:.2f} clips/s ({n / bw:.1f} fr/s) "
            f"| {clips / lw:.2f} clips/s ({n / lw:.1f} fr/s) "
            f"| {bw / lw:.2f}x ({(lw - bw) / bw:+.1%} time) "
            f"| {bm:.1f} s / {lm:.1f} s "
            f"| {bw - bm:.2f} s → {lw - lm:.2f} s ({(lw - lm - (bw - bm)) / bw:+.1%} of bare) "
            f"| {bc:.1f} s → {lc:.1f} s ({(lc - bc) / bc:+.1%}) |"
        )
    if not args.root:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
