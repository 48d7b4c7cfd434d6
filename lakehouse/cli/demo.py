"""``lakehouse demo``: a small self-contained corpus, ingested through the Dagster asset graph.

The corpus (about a dozen synthetic first- and third-person videos, HumanNet-style JSONL and a
CSV with timestamp spans, and a few broken files) is generated once into ``--corpus`` and reused;
re-running the demo is idempotent, so the second run adds nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lakehouse.cli.common import check_status
from lakehouse.media import synth
from lakehouse.media.synth import Scene

MARKER = ".demo-corpus-v1"

EGO_CLIPS = [
    (
        "ego/kitchen_cup.mp4",
        6,
        0,
        "Picking up a cup",
        "A person picks up a red cup from the table.",
    ),
    (
        "ego/workbench_drill.mp4",
        8,
        1,
        "Using a hand drill",
        "A person grips a power drill and presses it against a wooden board.",
    ),
    ("ego/garden_pot.mp4", 5, 2, "Moving a flower pot", "A person lifts a small pot onto a tray."),
    (
        "ego/assembly_screws.mp4",
        9,
        1,
        "Tightening screws with a screwdriver",
        "A person turns a screwdriver to fasten a bracket.",
    ),
]
EXO_VIDEOS = [
    ("exo/dance_studio.mp4", [Scene("exo", 12, 3, "dance")], 3),
    ("exo/hallway_walk.mp4", [Scene("exo", 10, 0, "walk")], 4),
]
CSV_ROWS = [
    # video, view, start, end, caption, level1, level2, level3
    (
        "exo/dance_studio.mp4",
        "third-person",
        "00:00:00.50",
        "00:00:05.50",
        "A dancer swings both arms overhead.",
        "Sports & Fitness",
        "Dance",
        "Freestyle",
    ),
    (
        "exo/dance_studio.mp4",
        "third-person",
        "00:00:06.00",
        "00:00:11.75",
        "The dancer sways side to side.",
        "Sports & Fitness",
        "Dance",
        "Freestyle",
    ),
    (
        "exo/hallway_walk.mp4",
        "third-person",
        "00:00:00.00",
        "00:00:09.50",
        "A person walks across the hallway.",
        "Daily Activities",
        "Locomotion",
        "Walking",
    ),
    (
        "exo/hallway_walk.mp4",
        "third-person",
        "00:00:08.00",
        "00:00:03.00",
        "Inverted span: ends before it starts.",
        "Daily Activities",
        "Locomotion",
        "Walking",
    ),
    (
        "exo/remote_only_rehearsal.mp4",
        "third-person",
        "00:00:02.00",
        "00:00:07.00",
        "A rehearsal clip stored elsewhere (not present locally).",
        "Sports & Fitness",
        "Dance",
        None,
    ),
]

EXAMPLE_QUERY = """
select viewpoint, segmentation, probe_status, count(*) as clips,
       round(sum(duration_s), 1) as seconds
from clip_facts
group by all
order by viewpoint, segmentation
""".strip()

EGO_QUERY = """
select clip_id, round(duration_s, 2) as duration_s, semantic_motion, keyframe_count
from clip_facts
where viewpoint = ? and duration_s > ?
order by duration_s desc
""".strip()


def build_corpus(folder: str | os.PathLike[str]) -> Path:
    """Generate the demo corpus into ``folder`` (skipped if it is already there)."""
    root = Path(folder)
    if (root / MARKER).exists():
        return root
    for sub in ("ego", "exo", "unlabelled", "misc", "broken"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    records = []
    for seed, (rel, seconds, palette, motion, caption) in enumerate(EGO_CLIPS):
        frames = synth.write_video(root / rel, [Scene("ego", seconds, palette)], seed=seed + 1)
        records.append(_humannet_record(rel, frames, motion, caption))
    for seed, (rel, scenes, palette) in enumerate(EXO_VIDEOS):
        synth.write_video(root / rel, scenes, seed=seed + 10 + palette)
    synth.write_video(
        root / "unlabelled/street_three_scenes.mp4",
        [Scene("exo", 6, 0, "walk"), Scene("ego", 7, 2), Scene("exo", 5, 3, "dance")],
        seed=20,
    )
    synth.write_video(root / "unlabelled/long_take.mp4", [Scene("ego", 36, 1)], seed=21, gop=60)
    synth.write_video(root / "misc/renamed_clip.avi", [Scene("ego", 4, 3)], seed=22)
    good = root / "misc/renamed_clip.avi"
    open(root / "broken/empty.mp4", "wb").close()
    synth.write_truncated(good, root / "broken/truncated.mp4")
    synth.write_damaged(root / EGO_CLIPS[1][0], root / "broken/damaged_midstream.mp4")
    synth.write_text_as_video(root / "broken/meeting_notes.mp4")
    with open(root / "annotations.jsonl", "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
        handle.write('{"clip_id": "ego_broken_line", "file": \n')  # a bad JSON line
    import csv

    with open(root / "annotations.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "view", "start", "end", "caption", "level1", "level2", "level3"])
        writer.writerows(CSV_ROWS)
    (root / MARKER).write_text("generated by `lakehouse demo`\n")
    return root


def _humannet_record(rel: str, frames: int, motion: str, caption: str) -> dict[str, Any]:
    stem = Path(rel).stem
    return {
        "clip_id": f"ego_{stem}",
        "file": rel,
        "viewpoint": "ego",
        "source_video_id": stem,
        "clip_index": None,
        "start_frame": 0,
        "end_frame": frames - 1,
        "fps": 15.0,
        "width": 320,
        "height": 240,
        "num_frames": frames,
        "duration_s": round(frames / 15.0, 3),
        "semantic_motion": motion,
        "short_caption": caption,
        "motion_sequence": "The right hand reaches forward, grasps the object and draws it back.",
        "taxonomy_l1": None,
        "taxonomy_l2": None,
        "taxonomy_l3": None,
        "text_truncated": False,
    }


def run_demo(
    config: Any,
    corpus: str | os.PathLike[str],
    *,
    echo: Callable[..., None] = print,
    verbose: int = 0,
    exports: str | os.PathLike[str] = "./exports",
) -> dict[str, Any]:
    """Build the corpus, ingest it through Dagster, print what the lakehouse now holds."""
    import logging

    from dagster_defs.runner import run_ingest
    from lakehouse.api import Lakehouse
    from lakehouse.ingest.sources import register_source
    from lakehouse.render.output import to_text_table

    echo(f"Generating the demo corpus in {corpus} …")
    root = build_corpus(corpus)
    lh = Lakehouse(config)
    source = register_source(
        lh,
        root,
        name="demo",
        annotations=[str(root / "annotations.jsonl"), str(root / "annotations.csv")],
        viewpoint="unknown",
    )
    echo(f"Ingesting it through the Dagster asset graph into {lh.root} …")
    report = run_ingest(
        config, source.name, log_level=logging.DEBUG if verbose else logging.WARNING
    )
    echo(
        f"\nDagster run {report.run_id} succeeded; checks: "
        + ", ".join(f"{c.check} {check_status(c)}" for c in report.checks)
    )
    echo("\nTables (lakehouse tables):")
    for info in lh.info():
        echo(f"  {info.name:<12} {info.rows:>6} rows  version {info.version}")
    quarantined = lh.sql(
        "select stage, reason_code, input_uri, locator from quarantine where source = ? "
        "order by stage, input_uri, locator",
        ["demo"],
    )
    echo("\nQuarantine (every input that could not be used):")
    echo(_indent(to_text_table(quarantined)))
    echo("Example SQL:\n" + _indent(EXAMPLE_QUERY))
    echo(_indent(to_text_table(lh.sql(EXAMPLE_QUERY))))
    echo("Egocentric clips over 5 s (bound parameters: 'ego', 5):\n" + _indent(EGO_QUERY))
    echo(_indent(to_text_table(lh.sql(EGO_QUERY, ["ego", 5]))))
    _semantic_demo(lh, echo)
    subset = _subset_demo(config, lh, exports, echo, verbose)
    echo(f'Try: lakehouse sql --root {lh.root} "select * from clip_facts limit 5"')
    echo(f'     lakehouse search --root {lh.root} "someone tightening a bolt" --mode caption')
    echo(f"     lakehouse subset list --root {lh.root}")
    return {"report": report, "quarantine": quarantined.num_rows, "subset": subset}


DEMO_SUBSET = "egocentric_tool_use_over_30s"
DEMO_SUBSET_PARAMS = {"min_duration_s": 5.0}  # the generated clips are all shorter than 30 s


def _subset_demo(
    config: Any, lh: Any, exports: str | os.PathLike[str], echo: Callable[..., None], verbose: int
) -> Any:
    """A subset from its file to a WebDataset export: materialized once (a Dagster run), then
    reproduced against its pinned tables and exported."""
    import logging

    from dagster_defs.runner import run_subset
    from lakehouse.render.output import to_text_table
    from lakehouse.subsets.export import export_subset
    from lakehouse.subsets.versions import get_version, latest_version, reproduce_subset

    echo(f"Subset sql/subsets/{DEMO_SUBSET}.sql, with min_duration_s = 5:")
    if latest_version(lh, DEMO_SUBSET) == 0:
        level = logging.DEBUG if verbose else logging.WARNING
        report = run_subset(config, DEMO_SUBSET, DEMO_SUBSET_PARAMS, log_level=level)
        echo(f"  materialized by Dagster run {report.run_id}")
    record = get_version(lh, DEMO_SUBSET)
    pins = ", ".join(f"{t} v{v}" for t, v in sorted(record.table_versions.items()))
    echo(f"  version {record.version}: {record.row_count} clips; pinned: {pins}")
    clips = lh.sql(
        "select external_id, round(duration_s, 1) as duration_s, semantic_motion from clip_facts "
        "where list_contains($ids, clip_id) order by external_id",
        {"ids": record.clip_ids},
    )
    echo(_indent(to_text_table(clips)))
    again = reproduce_subset(lh, DEMO_SUBSET, record.version)
    verdict = "identical" if again.identical else "DIFFERENT"
    echo(f"  reproduced against the pinned versions: {verdict}")
    result = export_subset(lh, DEMO_SUBSET, fmt="webdataset", out=exports, version=record.version)
    echo(f"  exported {result.samples} clip(s) as WebDataset: {', '.join(result.files)}\n")
    echo(f"Try: lakehouse subset show {DEMO_SUBSET} --root {lh.root}")
    return record


SEARCH_QUERY = "someone working with a power tool"
SEMANTIC_SQL = """
select external_id, round(duration_s, 1) as duration_s,
       round(caption_similarity(clip_id, 'fastening hardware by hand'), 3) as similarity
from clip_facts
where viewpoint = 'ego' and duration_s > 5
  and caption_similarity(clip_id, 'fastening hardware by hand') > 0.3
order by similarity desc
""".strip()


def _semantic_demo(lh: Any, echo: Callable[..., None]) -> None:
    """Semantic search by caption (offline model) and, where CLIP weights exist, visually."""
    from lakehouse.core.errors import LakehouseError
    from lakehouse.models.resolve import resolve_clip
    from lakehouse.render.output import to_text_table
    from lakehouse.search.ranking import search

    echo(f"Semantic search (lakehouse search {SEARCH_QUERY!r} --mode caption -k 3):")
    try:
        hits = search(lh, SEARCH_QUERY, mode="caption", k=3)
    except LakehouseError as exc:
        echo(f"  unavailable: {exc}\n")
    else:
        echo(_indent(to_text_table(hits.select(["score", "viewpoint", "short_caption"]))))
    echo("A semantic predicate inside SQL:\n" + _indent(SEMANTIC_SQL))
    try:
        echo(_indent(to_text_table(lh.sql(SEMANTIC_SQL))))
    except LakehouseError as exc:
        echo(f"  unavailable: {exc}\n")
    clip = resolve_clip(lh.config.models)
    if clip.model_id:
        echo("Visual search (CLIP):")
        hits = search(lh, "hands reaching for a red cup", mode="visual", k=3)
        echo(_indent(to_text_table(hits.select(["score", "viewpoint", "short_caption"]))))
    else:
        echo("Visual search (CLIP) is off: " + clip.message + "\n")


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.rstrip("\n").splitlines()) + "\n"
