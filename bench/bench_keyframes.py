"""Keyframe extraction throughput against a plain full decode of the same clips, in one run.

For each corpus it times, on the same files and sample times:
  baseline       decode every frame of every clip span (PyAV, no thumbnails)
  lakehouse      ``extract_video_keyframes`` with the GOP-aware plan (the default)
  seek_always    the same code forced to seek before every sample
  decode_always  the same code forced to decode and drop (one seek per video)
and prints clips/s and each one's speed-up over the baseline (higher is better).

Corpora: synthetic long-GOP (keyframe every 10 s) and short-GOP (every 0.5 s) videos, plus the
real HumanNet preview clips when ../shared is present.

    python bench/bench_keyframes.py [--seconds 60] [--videos 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av

from lakehouse.core.config import KeyframeSettings
from lakehouse.ingest.clips import segment
from lakehouse.media import synth
from lakehouse.media.frames import extract_video_keyframes, sample_times
from lakehouse.media.probe import probe_file
from lakehouse.media.synth import Scene

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "humannet-preview"


def make_corpus(folder: Path, seconds: int, videos: int, gop_s: float) -> list[Path]:
    paths = []
    for i in range(videos):
        path = folder / f"gop{gop_s:g}_{i}.mp4"
        scenes = [Scene("ego" if i % 2 else "exo", seconds, i, "walk")]
        synth.write_video(path, scenes, fps=30, size=(640, 360), seed=i, gop=int(gop_s * 30))
        paths.append(path)
    return paths


def payloads(paths: list[Path], settings: KeyframeSettings) -> list[dict]:
    """One payload per video: fixed 10 s clips (or the whole file when short)."""
    out = []
    for path in paths:
        video = probe_file({"path": str(path), "verify_decode": True})["video"]
        fps = video["fps"]
        spans = segment(video["duration_s"], [], min_s=2, max_s=10, window_s=10)
        targets = []
        for n, (start, end, _) in enumerate(spans):
            last = max(start, end - 1 / fps)
            times = sample_times(start, last + 1 / fps, settings.interval_s, settings.max_per_clip)
            targets += [(f"clip{n}", i, min(t, last)) for i, t in enumerate(times)]
        out.append(
            {
                "path": str(path),
                "fps": fps,
                "start_time_s": video["start_time_s"],
                "rotation": 0,
                "keyframe_times_s": video["keyframe_times_s"],
                "targets": targets,
                "spans": spans,
                "short_side": settings.short_side,
                "jpeg_quality": settings.jpeg_quality,
            }
        )
    return out


def full_decode(payload: dict) -> int:
    """The baseline: decode every frame inside every clip span."""
    frames = 0
    with av.open(payload["path"]) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for start, end, _ in payload["spans"]:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time >= end:
                    break
                if frame.time >= start:
                    frames += 1
    return frames


def timed(fn, items, repeat: int) -> float:
    best = []
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best.append(time.perf_counter() - start)
    return statistics.median(best)


def bench_corpus(name: str, paths: list[Path], settings: KeyframeSettings, repeat: int) -> dict:
    loads = payloads(paths, settings)
    clips = sum(len(p["spans"]) for p in loads)
    fps = loads[0]["fps"]

    def run(overhead_s: float):
        def go(payload: dict) -> None:
            extract_video_keyframes({**payload, "seek_overhead_s": overhead_s})

        return go

    results = {"baseline": timed(full_decode, loads, repeat)}
    results["lakehouse"] = timed(run(settings.seek_overhead_frames / fps), loads, repeat)
    results["seek_always"] = timed(run(-1e9), loads, repeat)
    results["decode_always"] = timed(run(1e9), loads, repeat)
    base = results["baseline"]
    print(f"\n{name}: {len(paths)} videos, {clips} clips")
    print(f"  {'method':<14} {'seconds':>8} {'clips/s':>9} {'vs full decode':>15}")
    for method, seconds in results.items():
        print(f"  {method:<14} {seconds:8.3f} {clips / seconds:9.1f} {base / seconds:14.2f}x")
    return {"clips": clips, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of each synthetic video")
    parser.add_argument("--videos", type=int, default=3, help="synthetic videos per corpus")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    settings = KeyframeSettings()
    print(
        f"keyframe settings: one per {settings.interval_s:g} s, at most "
        f"{settings.max_per_clip} per clip, short side {settings.short_side}px"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        long_gop = make_corpus(folder, args.seconds, args.videos, gop_s=10.0)
        short_gop = make_corpus(folder, args.seconds, args.videos, gop_s=0.5)
        bench_corpus(
            "synthetic long GOP (keyframe every 10 s, 640x360)", long_gop, settings, args.repeat
        )
        bench_corpus(
            "synthetic short GOP (keyframe every 0.5 s, 640x360)", short_gop, settings, args.repeat
        )
    if SHARED.is_dir():
        real = sorted((SHARED / "clips").glob("*.mp4"))
        bench_corpus("real HumanNet preview clips (10 s windows)", real, settings, args.repeat)
    else:
        print(f"\n(real preview clips skipped: {SHARED} not found)")


if __name__ == "__main__":
    main()
