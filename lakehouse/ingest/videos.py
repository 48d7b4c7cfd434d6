"""The ``videos`` stage: discover a source's files, probe the new ones, record the bad ones.

Only new or changed files are probed: a file whose (path, size, mtime) matches a row already in
``videos`` — or a quarantine row, for a file that was bad and has not changed — is not read
again. The same content under two names is one video (its other names become ``aliases``).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from lakehouse.core import quarantine as q
from lakehouse.ingest.stage import Progress, StageResult, no_progress, record_issues
from lakehouse.media.compute import run_tasks
from lakehouse.media.discover import Candidate, discover
from lakehouse.media.probe import header_time_limit
from lakehouse.storage.filters import in_list

if TYPE_CHECKING:
    from lakehouse.ingest.sources import Source
    from lakehouse.storage.store import Store

# Worker failures that may pass on a retry: never cached as "still bad".
TRANSIENT = {q.TIMEOUT, q.MEMORY_LIMIT, q.WORKER_CRASHED}
_WORKER_CODES = {"timeout": q.TIMEOUT, "memory_limit": q.MEMORY_LIMIT}
# The task each new file's probe runs in a worker process (lakehouse.media.compute).
PROBE_TASK = "lakehouse.media.probe:probe_file"
TIME_LIMIT_SETTINGS = (
    "ingest.probe_timeout_s, or for a long video ingest.probe_seconds_per_video_second "
    "up to ingest.probe_max_timeout_s"
)


def ingest_videos(
    lh: Store, source: Source, *, run_id: str, progress: Progress = no_progress
) -> StageResult:
    """Discover and probe the videos of ``source`` into ``videos``; quarantine the bad ones."""
    settings = lh.config.ingest
    found = discover(source.uri)
    known = {
        (r["relpath"], r["size_bytes"], r["mtime"]): r
        for r in lh.read("videos", filter=source.scope).to_pylist()
    }
    bad_before = {
        (r["input_uri"], r["size_bytes"], r["mtime"]): r
        for r in lh.read("quarantine", filter=f"{source.scope} AND stage = 'videos'").to_pylist()
        if r["reason_code"] not in TRANSIENT
    }
    issues: list[q.Issue] = list(found.issues)
    rows: dict[str, dict[str, Any]] = {}
    todo: list[tuple[Candidate, dict[str, Any]]] = []
    for cand in found.candidates:
        cached = known.get((cand.name, cand.size, cand.mtime))
        if cached is not None:
            _add(rows, dict(cached), cand.aliases)
            continue
        still_bad = bad_before.get((cand.uri, cand.size, cand.mtime))
        if still_bad is not None:
            issues.append(_issue(cand, still_bad["reason_code"], still_bad["message"]))
            continue
        payload = {
            "path": cand.path,
            "verify_decode": settings.verify_decode,
            "scene_threshold": settings.scene_threshold,
            "scene_sample_fps": settings.scene_sample_fps,
            "max_decode_errors": settings.max_decode_errors,
            "memory_mb": settings.worker_memory_mb,
            # the probe asks for more time for a long video, up to the cap (lakehouse.media.probe)
            "timeout_s": settings.probe_timeout_s,
            "seconds_per_video_second": settings.probe_seconds_per_video_second,
            "max_timeout_s": settings.probe_max_timeout_s,
        }
        todo.append((cand, payload))

    progress(0, len(todo), f"probing {len(todo)} new file(s) of {len(found.candidates)}")
    now = dt.datetime.now(dt.UTC)
    outcomes = run_tasks(
        lh.config,
        PROBE_TASK,
        todo,
        timeout_s=settings.probe_timeout_s,
        max_timeout_s=settings.probe_max_timeout_s,
        timeout_for=header_time_limit,  # Ray: a running task cannot ask for more time
        memory_mb=settings.worker_memory_mb,
    )
    for done, outcome in enumerate(outcomes, start=1):
        cand = outcome.key
        progress(done, len(todo), cand.name)
        if not outcome.ok:
            code = _WORKER_CODES.get(outcome.error_code, q.WORKER_CRASHED)
            if outcome.error_code == "exception":
                code = q.UNREADABLE_CONTAINER
            message = outcome.message
            if code == q.TIMEOUT:
                message += f" ({TIME_LIMIT_SETTINGS}); raise them to ingest this file"
            issues.append(_issue(cand, code, message))
            continue
        result = outcome.value
        if not result["ok"]:
            issues.append(_issue(cand, result["reason_code"], result["message"]))
            continue
        row = {
            **result["video"],
            "source": source.name,
            "uri": cand.uri,
            "relpath": cand.name,
            "aliases": [],
            "size_bytes": cand.size,
            "mtime": cand.mtime,
            "probed_at": now,
            "run_id": run_id,
        }
        _add(rows, row, [cand.name, *cand.aliases])

    owned_elsewhere = _owned_by_other_sources(lh, source, list(rows))
    for vid in owned_elsewhere:
        rows.pop(vid)
    write = lh.sync("videos", list(rows.values()), scope=source.scope, delete=False)
    count, reasons = record_issues(lh, source, ("discover", "videos"), issues, run_id)
    return StageResult(
        "videos",
        source.name,
        "videos",
        write,
        rows=lh.count("videos", source.scope),
        quarantined=count,
        reasons=reasons,
        details={
            "files_seen": found.files_seen,
            "candidates": len(found.candidates),
            "probed": len(todo),
            "already_in_other_sources": len(owned_elsewhere),
        },
    )


def _add(rows: dict[str, dict[str, Any]], row: dict[str, Any], names: list[str]) -> None:
    """Keep one row per content hash, named by its first name in sort order whatever order the
    workers finished in; every other name it was found under is an alias."""
    vid = row["video_id"]
    current = rows.get(vid)
    names = [*names, *(row.get("aliases") or [])]
    if current is not None:
        names += [current["relpath"], *(current.get("aliases") or [])]
        if current["relpath"] < row["relpath"]:
            row = current
    rows[vid] = row
    row["aliases"] = sorted({n for n in names if n != row["relpath"]})


def _owned_by_other_sources(lh: Store, source: Source, video_ids: list[str]) -> set[str]:
    if not video_ids:
        return set()
    flt = f"NOT ({source.scope}) AND {in_list('video_id', video_ids)}"
    return set(lh.read("videos", columns=["video_id"], filter=flt).column("video_id").to_pylist())


def _issue(cand: Candidate, code: str, message: str) -> q.Issue:
    return q.Issue("videos", cand.uri, code, message, "", cand.size, cand.mtime)
