"""Recall@1 / recall@5 and latency of caption, text (BM25) and hybrid search on the real preview.

Ingests ../shared/data/humannet-preview into a scratch lakehouse (the library path, with the
real all-MiniLM-L6-v2 caption model), then runs every paraphrased query of
``tests/paraphrases.py`` (each describes one clip in other words, never a caption verbatim)
through ``lakehouse.search.ranking.search`` in each mode. The test suite guards a floor under these
numbers (tests/test_search.py); this prints them.

    python bench/bench_search_recall.py [--root /tmp/bench_recall] [--k 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

from lakehouse.api import Lakehouse
from lakehouse.core.config import Config
from lakehouse.search.ranking import search

PROJECT = Path(__file__).resolve().parent.parent
PREVIEW = PROJECT.parent / "shared" / "data" / "humannet-preview"
sys.path.insert(0, str(PROJECT / "tests"))
from paraphrases import PARAPHRASES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench_recall")
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    if not (PREVIEW / "annotations.jsonl").is_file():
        sys.exit(f"the HumanNet preview is not at {PREVIEW} (../shared is absent)")
    shutil.rmtree(args.root, ignore_errors=True)
    lh = Lakehouse(Config.load(root=args.root, env={}))
    start = time.perf_counter()
    lh.ingest(PREVIEW, source="humannet", annotations=[str(PREVIEW / "annotations.jsonl")])
    print(f"ingested the preview in {time.perf_counter() - start:.0f} s")
    external = {
        r["clip_id"]: r["external_id"]
        for r in lh.sql("select clip_id, external_id from clips").to_pylist()
    }
    print(f"{len(PARAPHRASES)} paraphrased queries, k={args.k}\n")
    print("| mode | recall@1 | recall@5 | p50 ms | p95 ms | misses at 1 |")
    print("|---|---|---|---|---|---|")
    for mode in ("caption", "text", "hybrid"):
        search(lh, "warm up the model", mode=mode, k=args.k)
        at1 = at5 = 0
        times, misses = [], []
        for query, target in PARAPHRASES.items():
            t = time.perf_counter()
            hits = search(lh, query, mode=mode, k=args.k)
            times.append((time.perf_counter() - t) * 1000)
            ids = [external[c] for c in hits.column("clip_id").to_pylist()]
            at1 += ids[:1] == [target]
            at5 += target in ids
            if ids[:1] != [target]:
                misses.append(query)
        n = len(PARAPHRASES)
        p95 = statistics.quantiles(times, n=20, method="inclusive")[18]
        print(
            f"| {mode} | {at1 / n:.2f} | {at5 / n:.2f} | {statistics.median(times):.1f} | "
            f"{p95:.1f} | {'; '.join(misses) or '-'} |"
        )
    shutil.rmtree(args.root, ignore_errors=True)


if __name__ == "__main__":
    main()
