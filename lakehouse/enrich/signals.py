"""The ``signals`` stage: hand, body, face and quality signals per clip, from its keyframe times.

For each clip the detectors (``lakehouse.media.detectors``: MediaPipe hands, pose and faces, plus
sharpness, brightness and motion) run on the frames at its keyframe times; the per-frame findings
go to ``signal_frames`` (landmarks and boxes, for later use) and a per-clip summary to
``signals`` (fractions of frames with 0/1/2 hands, a person, a full body, faces; hand and body
motion; privacy status; quality), the columns ``clip_facts`` exposes to SQL.

Which frames: ``signals.frame_source = "video"`` (the default) decodes the keyframe times again
from the source video at ``signals.short_side`` (480 px) in the supervised worker processes (one
pool for the whole run, a task per video) while the detectors work on the frames already
decoded; ``"keyframes"`` reads the stored 224 px thumbnails.
On the HumanNet preview the thumbnails find the same hands in 97% of frames but miss faces in
about one face frame in eight (faces of a few percent of a third-person frame), which matters for
privacy; see docs/signals.md. A video that cannot be decoded falls back to its thumbnails.

Like the embeddings it is incremental: each row records the ``model_id`` that made it, the
keyframe ids and the settings fingerprint, and only clips lacking a row for the current model
(or whose keyframes or settings changed) are analysed.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lakehouse.core.concurrency import ahead
from lakehouse.core.errors import ConfigError, ModelUnavailableError
from lakehouse.core.ids import model_key
from lakehouse.core.schemas import SIGNAL_FRAMES_TABLE, SIGNALS_TABLE
from lakehouse.ingest.plan import Spool, StaleKeys, merge, sorted_groups, stream_memory_mb
from lakehouse.ingest.stage import Progress, StageResult, no_progress
from lakehouse.media.detectors import (
    FrameAnalyzer,
    FrameResult,
    box_area,
    frame_motion,
    resolve_signals_model,
)
from lakehouse.media.frames import frame_task
from lakehouse.media.workers import run_supervised
from lakehouse.storage.filters import in_list, sql_literal
from lakehouse.storage.writes import WriteResult

if TYPE_CHECKING:
    import numpy as np

    from lakehouse.core.config import SignalSettings
    from lakehouse.ingest.sources import Source
    from lakehouse.storage.store import Store

TABLE = SIGNALS_TABLE
FRAMES_TABLE = SIGNAL_FRAMES_TABLE
CHUNK_CLIPS = 32
# clips the plan hands to the analysis at a time (one worker pool each)
PLAN_CHUNK = 2_000
PRIVACY_STATUSES = ("clear", "faces_visible", "blurred", "needs_review")
# The ranges every ``signals`` row is held to by the range checks (null values pass: a clip with
# one analysed frame has no motion). Fractions, areas, grey levels and the grey difference lie in
# [0, 1]; sharpness and the motion energies (per second) are unbounded above.
UNIT_COLUMNS = (
    "hands_frac",
    "hands_0_frac",
    "hands_1_frac",
    "hands_2_frac",
    "left_hand_frac",
    "right_hand_frac",
    "person_frac",
    "full_body_frac",
    "face_frac",
    "max_face_area",
    "brightness",
    "contrast",
    "motion_score",
)
NON_NEGATIVE_COLUMNS = ("sharpness", "min_sharpness", "hand_motion", "body_motion", "camera_motion")
FRAME_SOURCES = ("video", "keyframes")
VIDEO_JPEG_QUALITY = 95


def check_settings(settings: SignalSettings) -> None:
    if settings.frame_source not in FRAME_SOURCES:
        raise ConfigError(
            f"signals.frame_source is {settings.frame_source!r}; use one of {FRAME_SOURCES}."
        )
    if settings.short_side < 32:
        raise ConfigError("signals.short_side must be at least 32 pixels.")


def compute_signals(
    lh: Store,
    source: Source,
    *,
    run_id: str,
    progress: Progress = no_progress,
    analyzer: FrameAnalyzer | None = None,
) -> StageResult:
    """Analyse every clip of ``source`` that lacks signals from the current models."""
    settings = lh.config.signals
    check_settings(settings)
    try:
        model_id = analyzer.model_id if analyzer else _resolve()
    except ModelUnavailableError as exc:
        return StageResult(
            TABLE,
            source.name,
            TABLE,
            WriteResult(TABLE),
            rows=lh.count(TABLE, source.scope),
            details={"status": "skipped: model unavailable", "message": str(exc)},
        )
    key = model_key(model_id)
    fingerprint = settings.fingerprint()
    scope = f"{source.scope} AND model_id = {sql_literal(model_id)}"
    mb = stream_memory_mb(lh, 3)
    clips = sorted_groups(
        lh,
        "clips",
        columns=["clip_id", "video_id", "source"],
        order_by=["clip_id"],
        filter=f"{source.scope} AND probe_status = 'ok'",
        memory_mb=mb,
    )
    keyframes = sorted_groups(
        lh,
        "keyframes",
        columns=["clip_id", "idx", "keyframe_id", "time_s"],
        order_by=["clip_id", "idx"],
        filter=source.scope,
        memory_mb=mb,
    )
    existing = sorted_groups(
        lh,
        TABLE,
        columns=["clip_id", "signal_id", "keyframe_ids", "settings"],
        order_by=["clip_id"],
        filter=scope,
        memory_mb=mb,
    )
    inserted = updated = with_frames = 0
    fallbacks: list[str] = []
    failed: dict[str, str] = {}  # clip_id -> why; retried on the next run
    stale = StaleKeys(lh, [TABLE, FRAMES_TABLE], "clip_id", scope)

    with Spool(PLAN_CHUNK) as todo:
        for clip_id, (clip, frames, old) in merge(clips, keyframes, existing):
            if clip is None or frames is None:
                if old is not None:
                    stale.add([clip_id])
                continue
            with_frames += 1
            ids = [f["keyframe_id"] for f in frames]
            if old is None or old[0]["keyframe_ids"] != ids or old[0]["settings"] != fingerprint:
                meta = {k: clip[0][k] for k in ("clip_id", "video_id", "source")}
                todo.add((clip_id, meta, frames, old is not None))
        stale.flush()
        if todo.count:
            own = analyzer is None
            analyzer = analyzer or FrameAnalyzer(settings)
            try:
                progress(0, todo.count, f"signals for {todo.count} clip(s) with {model_id}")
                done = 0
                for chunk in todo.chunks():
                    write = _analyse(lh, chunk, analyzer, model_id, key, run_id, fallbacks, failed)
                    inserted, updated = inserted + write.inserted, updated + write.updated
                    done += len(chunk)
                    progress(done, todo.count, f"{done}/{todo.count} clips analysed")
            finally:
                if own:
                    analyzer.close()
        analysed = todo.count
    ds = lh.dataset(TABLE)
    return StageResult(
        TABLE,
        source.name,
        TABLE,
        WriteResult(TABLE, inserted, updated, stale.deleted, ds.version if ds else None),
        rows=lh.count(TABLE, scope) if ds is not None else 0,
        details={
            "model_id": model_id,
            "analysed": analysed,
            "clips_with_keyframes": with_frames,
            "frame_source": settings.frame_source,
            "fell_back_to_keyframes": len(set(fallbacks)),
            "failed": len(failed),
            **({"failures": dict(sorted(failed.items())[:20])} if failed else {}),
        },
    )


def _analyse(
    lh: Store,
    chunk: list[tuple[str, dict[str, Any], list[dict[str, Any]], bool]],
    analyzer: FrameAnalyzer,
    model_id: str,
    key: str,
    run_id: str,
    fallbacks: list[str],
    failed: dict[str, str],
) -> WriteResult:
    """Analyse one chunk of the plan's clips and write their rows (in sub-chunks of
    ``CHUNK_CLIPS``); ``fallbacks`` and ``failed`` collect what happened to clips."""
    settings = lh.config.signals
    fingerprint = settings.fingerprint()
    todo = [clip_id for clip_id, _, _, _ in chunk]
    clips = {clip_id: meta for clip_id, meta, _, _ in chunk}
    frames = {clip_id: rows for clip_id, _, rows, _ in chunk}
    redo = [clip_id for clip_id, _, _, again in chunk if again]
    if redo:  # their frame rows may have other indexes now
        lh.delete(
            FRAMES_TABLE, f"model_id = {sql_literal(model_id)} AND " + in_list("clip_id", redo)
        )
    inserted = updated = 0
    rows: list[dict[str, Any]] = []
    frame_rows: list[dict[str, Any]] = []
    done = 0
    # frames arrive per group of clips, decoded in a background thread (video frames in the
    # worker processes) while the detectors work on the previous group
    for group in ahead(frame_groups(lh, todo, frames, fallbacks)):
        for clip_id, images in group.items():
            done += 1
            try:
                analysed = [
                    (f, analyzer.analyze(images[f["keyframe_id"]][0]))
                    for f in frames[clip_id]
                    if f["keyframe_id"] in images
                ]
            except Exception as exc:  # one bad frame costs its clip, not the batch
                failed[clip_id] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            if not analysed:
                failed[clip_id] = "no frame of the clip could be read"
                continue
            meta = {**clips[clip_id], "model_id": model_id, "run_id": run_id}
            rows.append(
                summarize(analysed, settings)
                | meta
                | {
                    "signal_id": f"{clip_id}:{key}",
                    "settings": fingerprint,
                    "frame_source": images[analysed[0][0]["keyframe_id"]][1],
                    "keyframe_ids": [f["keyframe_id"] for f in frames[clip_id]],
                    "computed_at": dt.datetime.now(dt.UTC),
                }
            )
            frame_rows += [frame_row(f, r, meta, key) for f, r in analysed]
        if len(rows) >= CHUNK_CLIPS or done == len(todo):
            write = lh.upsert(TABLE, rows)
            inserted, updated = inserted + write.inserted, updated + write.updated
            lh.upsert(FRAMES_TABLE, frame_rows)
            rows, frame_rows = [], []
    if rows:
        write = lh.upsert(TABLE, rows)
        inserted, updated = inserted + write.inserted, updated + write.updated
        lh.upsert(FRAMES_TABLE, frame_rows)
    return WriteResult(TABLE, inserted, updated)


def _resolve() -> str:
    return resolve_signals_model()


# -- frames ------------------------------------------------------------------------------------

Images = dict[str, tuple["np.ndarray", str]]  # keyframe_id -> (RGB frame, where it came from)


def frame_groups(
    lh: Store,
    clip_ids: list[str],
    frames: dict[str, list[dict[str, Any]]],
    fallbacks: list[str],
) -> Iterator[dict[str, Images]]:
    """``{clip_id: images}`` for groups of clips, each clip with all its frames that could be had.

    With ``frame_source = "video"`` the frames are decoded in the supervised worker processes,
    one task per video and group of at most ``CHUNK_CLIPS`` clips; clips whose video is not a
    local file or fails to decode get their keyframe thumbnails instead."""
    settings = lh.config.signals
    remaining = list(clip_ids)
    if settings.frame_source == "video":
        origin = f"video@{settings.short_side}"
        tasks, ids = _video_tasks(lh, clip_ids, frames)
        decoded: set[str] = set()
        outcomes = run_supervised(
            "lakehouse.media.frames:extract_video_keyframes",
            tasks,
            workers=lh.config.ingest.workers,
            timeout_s=lh.config.keyframes.timeout_s,
            memory_mb=lh.config.ingest.worker_memory_mb,
        )
        for outcome in outcomes:
            if not outcome.ok:
                continue
            group: dict[str, Images] = defaultdict(dict)
            for row in outcome.value:
                group[row["clip_id"]][ids[(row["clip_id"], row["idx"])]] = (
                    decode_jpeg(row["jpeg"]),
                    origin,
                )
            decoded.update(group)
            yield dict(group)
        remaining = [c for c in clip_ids if c not in decoded]
        fallbacks.extend(remaining)
    for i in range(0, len(remaining), CHUNK_CLIPS):
        yield _thumbnails(lh, remaining[i : i + CHUNK_CLIPS], frames)


def _thumbnails(
    lh: Store, chunk: list[str], frames: dict[str, list[dict[str, Any]]]
) -> dict[str, Images]:
    wanted = {f["keyframe_id"]: c for c in chunk for f in frames[c]}
    table = lh.read(
        "keyframes",
        columns=["keyframe_id", "jpeg", "height", "width"],
        filter=in_list("keyframe_id", wanted),
    )
    group: dict[str, Images] = {c: {} for c in chunk}
    for row in table.to_pylist():
        short = min(row["width"] or 0, row["height"] or 0)
        group[wanted[row["keyframe_id"]]][row["keyframe_id"]] = (
            decode_jpeg(row["jpeg"]),
            f"keyframes@{short}",
        )
    return group


def _video_tasks(
    lh: Store, clip_ids: list[str], frames: dict[str, list[dict[str, Any]]]
) -> tuple[list[tuple[str, dict[str, Any]]], dict[tuple[str, int], str]]:
    """Keyframe-sampler tasks that decode the clips' keyframe times from their local videos at
    ``signals.short_side`` (one per video and group of clips), and ``(clip_id, idx) ->
    keyframe_id``."""
    settings = lh.config.signals
    kf = lh.config.keyframes
    clips = lh.read("clips", columns=["clip_id", "video_id"], filter=in_list("clip_id", clip_ids))
    video_of = dict(
        zip(clips.column("clip_id").to_pylist(), clips.column("video_id").to_pylist(), strict=True)
    )
    videos = {
        v["video_id"]: v
        for v in lh.read("videos", filter=in_list("video_id", set(video_of.values()))).to_pylist()
    }
    by_video: dict[str, list[str]] = defaultdict(list)
    for clip_id in clip_ids:
        video = videos.get(video_of.get(clip_id, ""))
        uri = (video or {}).get("uri") or ""
        if video is not None and ("://" not in uri or uri.startswith("file://")):
            by_video[video["video_id"]].append(clip_id)
    tasks, ids = [], {}
    for video_id, vclips in sorted(by_video.items()):
        video = videos[video_id]
        for i in range(0, len(vclips), CHUNK_CLIPS):
            targets = []
            for clip_id in vclips[i : i + CHUNK_CLIPS]:
                for frame in frames[clip_id]:
                    targets.append((clip_id, frame["idx"], frame["time_s"]))
                    ids[(clip_id, frame["idx"])] = frame["keyframe_id"]
            payload = frame_task(
                video,
                targets,
                seek_overhead_frames=kf.seek_overhead_frames,
                short_side=settings.short_side,
                jpeg_quality=VIDEO_JPEG_QUALITY,
            )
            tasks.append((f"{video_id}:{i}", payload))
    return tasks, ids


def decode_jpeg(data: bytes) -> np.ndarray:
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# -- per clip ----------------------------------------------------------------------------------


def summarize(
    analysed: list[tuple[dict[str, Any], FrameResult]], settings: SignalSettings
) -> dict[str, Any]:
    """The per-clip summary of its analysed frames (``(keyframe row, FrameResult)`` in order)."""
    import numpy as np

    results = [r for _, r in analysed]
    n = len(results)
    counts = [len(r.hands) for r in results]
    hand_areas = [box_area(h["box"]) for r in results for h in r.hands]
    faces = [f for r in results for f in r.faces]
    hand_moves, body_moves, diffs, shifts = [], [], [], []
    for (fa, a), (fb, b) in itertools.pairwise(analysed):
        dt_s = max(abs(fb["time_s"] - fa["time_s"]), 1e-3)
        for side in ("left", "right"):
            pa = [h for h in a.hands if h["side"] == side]
            pb = [h for h in b.hands if h["side"] == side]
            if pa and pb:
                move = np.linalg.norm(pa[0]["landmarks"][:, :2] - pb[0]["landmarks"][:, :2], axis=1)
                hand_moves.append(float(move.mean()) / dt_s)
        if a.pose is not None and b.pose is not None:
            seen = (a.pose[:, 3] >= 0.5) & (b.pose[:, 3] >= 0.5)
            if seen.any():
                move = np.linalg.norm(a.pose[seen, :2] - b.pose[seen, :2], axis=1)
                body_moves.append(float(move.mean()) / dt_s)
        difference, shift = frame_motion(a.small_gray, b.small_gray)
        diffs.append(difference)
        shifts.append(shift / dt_s)
    camera = float(np.median(shifts)) if shifts else None
    return {
        "frames": n,
        "hands_frac": sum(c > 0 for c in counts) / n,
        "hands_0_frac": sum(c == 0 for c in counts) / n,
        "hands_1_frac": sum(c == 1 for c in counts) / n,
        "hands_2_frac": sum(c >= 2 for c in counts) / n,
        "left_hand_frac": sum(any(h["side"] == "left" for h in r.hands) for r in results) / n,
        "right_hand_frac": sum(any(h["side"] == "right" for h in r.hands) for r in results) / n,
        "mean_hand_area": float(np.mean(hand_areas)) if hand_areas else None,
        "hand_motion": float(np.mean(hand_moves)) if hand_moves else None,
        "person_frac": sum(r.pose is not None for r in results) / n,
        "full_body_frac": sum(r.full_body for r in results) / n,
        "body_motion": float(np.mean(body_moves)) if body_moves else None,
        # the pose model finds at most one person; faces can count more
        "max_persons": max(max(int(r.pose is not None), len(r.faces)) for r in results),
        "face_frac": sum(bool(r.faces) for r in results) / n,
        "max_faces": max(len(r.faces) for r in results),
        "max_face_area": max(r.max_face_area for r in results),
        "max_face_score": max((f["score"] for f in faces), default=None),
        "privacy_status": privacy_status(results, settings),
        "sharpness": float(np.mean([r.sharpness for r in results])),
        "min_sharpness": float(min(r.sharpness for r in results)),
        "brightness": float(np.mean([r.brightness for r in results])),
        "contrast": float(np.mean([r.contrast for r in results])),
        "motion_score": float(np.mean(diffs)) if diffs else None,
        "camera_motion": camera,
        "static_camera": None if camera is None else camera < settings.static_camera_motion,
    }


def out_of_range_sql() -> str:
    """A SQL condition on a ``signals`` row, true when a value is out of its range: see
    ``UNIT_COLUMNS`` and ``NON_NEGATIVE_COLUMNS``; ``min_sharpness`` above the mean sharpness, or
    fewer persons than faces, are out of range too."""
    return " or ".join(
        [f"{c} < 0 or {c} > 1" for c in UNIT_COLUMNS]
        + [f"{c} < 0" for c in NON_NEGATIVE_COLUMNS]
        + ["min_sharpness > sharpness * (1 + 1e-9) + 1e-9", "max_persons < max_faces"]
    )


def privacy_status(results: list[FrameResult], settings: SignalSettings) -> str:
    """``clear`` (no face found), ``faces_visible`` (a confident face, or faces in two or more
    frames) or ``needs_review`` (one weak detection, or nothing analysed). ``blurred`` is what an
    export that blurred the faces records in its samples."""
    if not results:
        return "needs_review"
    scores = [f["score"] for r in results for f in r.faces]
    if not scores:
        return "clear"
    face_frames = sum(bool(r.faces) for r in results)
    if max(scores) >= settings.face_review_score or face_frames >= 2:
        return "faces_visible"
    return "needs_review"


def frame_row(
    frame: dict[str, Any], result: FrameResult, meta: dict[str, Any], key: str
) -> dict[str, Any]:
    return {
        "frame_signal_id": f"{meta['clip_id']}:{frame['idx']}:{key}",
        "clip_id": meta["clip_id"],
        "source": meta["source"],
        "model_id": meta["model_id"],
        "keyframe_id": frame["keyframe_id"],
        "idx": frame["idx"],
        "time_s": frame["time_s"],
        "width": result.width,
        "height": result.height,
        "hand_count": len(result.hands),
        "hand_sides": [h["side"] for h in result.hands],
        "hand_scores": [h["score"] for h in result.hands],
        "hand_boxes": [h["box"] for h in result.hands],
        "hand_landmarks": [h["landmarks"].reshape(-1) for h in result.hands],
        "pose_landmarks": None if result.pose is None else result.pose.reshape(-1),
        "full_body": result.full_body,
        "face_count": len(result.faces),
        "face_scores": [f["score"] for f in result.faces],
        "face_boxes": [f["box"] for f in result.faces],
        "sharpness": result.sharpness,
        "brightness": result.brightness,
        "contrast": result.contrast,
        "run_id": meta["run_id"],
    }
