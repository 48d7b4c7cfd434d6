"""Export a materialized subset version: a manifest (Parquet or JSONL) or WebDataset shards.

Every file is written under ``--out`` only: names with ``..``, absolute names, NUL bytes and paths
through a symlink are refused. Every file is written under a temporary name in its final folder and
renamed into place, so an interrupted export never leaves a half file that looks complete; a
WebDataset export writes its index (``<name>.json``, listing the shards) last. The manifest is read
at the subset's pinned table versions, so an export of version N is the same months later.
``privacy="refuse"`` leaves out every clip whose ``privacy_status`` is not ``clear``;
``privacy="blur"`` blurs the faces in every WebDataset clip (``lakehouse.subsets.privacy``).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import InputError
from lakehouse.core.files import write_atomic
from lakehouse.core.paths import local_path
from lakehouse.ingest.stage import Progress, no_progress
from lakehouse.query.session import Session, run_sql
from lakehouse.render.output import plain
from lakehouse.subsets.versions import SubsetVersion, get_version, subset_clips

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.storage.store import Store

FORMATS = ("parquet", "jsonl", "webdataset")
# statuses that a blurring export must have blurred something for (else the clip stays out)
BLUR_REQUIRED = ("faces_visible", "needs_review")
MANIFEST_COLUMNS = [
    "clip_id",
    "video_id",
    "source",
    "uri",
    "start_s",
    "end_s",
    "duration_s",
    "start_frame",
    "end_frame",
    "fps",
    "width",
    "height",
    "rotation",
    "viewpoint",
    "short_caption",
    "long_caption",
    "semantic_motion",
    "motion_sequence",
    "environment",
    "taxonomy_l1",
    "taxonomy_l2",
    "taxonomy_l3",
    "quality_score",
    "probe_status",
    "privacy_status",
]


@dataclass
class ExportResult:
    subset: str
    version: int
    format: str
    files: list[str]
    rows: int
    samples: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def confined_path(out_dir: str | os.PathLike[str], name: str) -> Path:
    """``out_dir/name``, refusing any name that could land outside ``out_dir``."""
    if not name or "\x00" in name:
        raise InputError("Export file names must be non-empty and contain no NUL byte.")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or ":" in name.split("/")[0]:
        raise InputError(f"Export name {name!r} is absolute; give a name relative to --out.")
    parts = Path(name).parts
    if any(p in ("..", ".") for p in parts) or "\\" in name:
        raise InputError(f"Export name {name!r} leaves --out or is not a plain relative name.")
    base = Path(out_dir)
    if "\x00" in str(base):
        raise InputError("--out must not contain a NUL byte.")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot use {base} as the --out folder ({exc.strerror}).") from None
    root = base.resolve()
    target = root.joinpath(*parts)
    current = root
    for part in parts[:-1]:  # every folder below --out must be a real folder, not a link
        current = current / part
        if current.is_symlink():
            raise InputError(f"Export path {name!r} goes through the symlink {current}; refused.")
        try:
            current.mkdir(exist_ok=True)
        except OSError as exc:
            raise InputError(f"Cannot create {current} ({exc.strerror}).") from None
    if target.is_symlink():
        raise InputError(f"Export target {target} is a symlink; remove it or pick another name.")
    if os.path.commonpath([root, target.parent.resolve()]) != str(root):
        raise InputError(f"Export name {name!r} resolves outside --out; refused.")
    return target


def manifest(lh: Store, record: SubsetVersion) -> pa.Table:
    """One row per clip of the subset version, read at its pinned table versions."""
    import pyarrow as pa

    members = subset_clips(lh, record)
    pins = {t: v for t, v in record.table_versions.items()}
    with Session(lh, versions=pins, view_sql=record.views or None) as session:
        available = set(session.query("select * from clip_facts limit 0").column_names)
        columns = [c for c in MANIFEST_COLUMNS if c in available]
        facts = session.query(
            f"select {', '.join(columns)} from clip_facts where list_contains($ids, clip_id)",
            {"ids": members.column("clip_id").to_pylist()},
        )
    by_id = {r["clip_id"]: r for r in facts.to_pylist()}
    rows = []
    for member in members.to_pylist():
        fact = by_id.get(member["clip_id"], {"clip_id": member["clip_id"]})
        rows.append(
            {
                "subset": record.name,
                "subset_version": record.version,
                "position": member["position"],
                **{c: fact.get(c) for c in columns},
                "semantic_score": member["semantic_score"],
            }
        )
    schema = pa.schema(
        [
            pa.field("subset", pa.string()),
            pa.field("subset_version", pa.int32()),
            pa.field("position", pa.int32()),
            *[facts.schema.field(c) for c in columns],
            pa.field("semantic_score", pa.float64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def export_subset(
    lh: Store,
    name: str,
    *,
    fmt: str,
    out: str | os.PathLike[str],
    version: int | None = None,
    prefix: str | None = None,
    shard_max_samples: int = 1000,
    shard_max_bytes: int = 1 << 30,
    progress: Progress = no_progress,
    privacy: str | None = None,
) -> ExportResult:
    """Export subset ``name`` (latest version, or ``version``) to the folder ``out``.

    ``privacy``: ``None`` exports every clip; ``"refuse"`` only clips whose ``privacy_status`` is
    ``clear`` (the others are listed as skipped); ``"blur"`` (WebDataset) blurs detected faces."""
    from lakehouse.subsets.privacy import check_mode

    if fmt not in FORMATS:
        raise InputError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    check_mode(privacy, fmt)
    if shard_max_samples < 1 or shard_max_bytes < 1:
        raise InputError("Shard limits must be positive.")
    started = time.perf_counter()
    record = get_version(lh, name, version)
    prefix = prefix or f"{record.name}-v{record.version}"
    table = manifest(lh, record)
    result = ExportResult(record.name, record.version, fmt, [], table.num_rows)
    if privacy == "refuse":
        table = _cleared(lh, table, result)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        target = confined_path(out, f"{prefix}.parquet")
        write_atomic(str(target), lambda tmp: pq.write_table(table, tmp))
        result.files.append(str(target))
    elif fmt == "jsonl":
        target = confined_path(out, f"{prefix}.jsonl")
        lines = "".join(json.dumps(plain(r), ensure_ascii=False) + "\n" for r in table.to_pylist())
        write_atomic(str(target), lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))
        result.files.append(str(target))
    else:
        _webdataset(
            lh,
            record,
            table,
            out,
            prefix,
            shard_max_samples,
            shard_max_bytes,
            progress,
            result,
            blur=privacy == "blur",
        )
    result.seconds = time.perf_counter() - started
    return result


def _webdataset(
    lh: Store,
    record: SubsetVersion,
    table: pa.Table,
    out: str | os.PathLike[str],
    prefix: str,
    max_samples: int,
    max_bytes: int,
    progress: Progress,
    result: ExportResult,
    blur: bool = False,
) -> None:
    from lakehouse.media.cutting import CutError, cut_clip

    blurrer = None
    if blur:
        from lakehouse.subsets.privacy import FaceBlurrer

        blurrer = FaceBlurrer()
    annotations = _annotations(lh, record)
    shard: list[tuple[str, bytes]] = []
    shard_bytes = 0
    rows = table.to_pylist()
    progress(0, len(rows), f"cutting {len(rows)} clip(s) into WebDataset shards")

    def flush() -> None:
        nonlocal shard, shard_bytes
        if not shard:
            return
        target = confined_path(out, f"{prefix}-{len(result.files):06d}.tar")
        members = shard
        write_atomic(str(target), lambda tmp: _write_tar(tmp, members))
        result.files.append(str(target))
        shard, shard_bytes = [], 0

    for done, row in enumerate(rows, 1):
        reason = _uncuttable(row)
        if reason is None:
            faces_before = blurrer.faces if blurrer else 0
            if blurrer:
                blurrer.reset()
            try:
                video, frames = cut_clip(
                    local_path(row["uri"]),
                    start_frame=row["start_frame"],
                    end_frame=row["end_frame"],
                    fps=row["fps"],
                    rotation=row.get("rotation") or 0,
                    transform=blurrer,
                )
            except CutError as exc:
                reason = str(exc)
            if blurrer and reason is None:
                row["faces_blurred"] = blurrer.faces - faces_before
                if row["faces_blurred"]:
                    row["privacy_status"] = "blurred"
                elif row.get("privacy_status") in BLUR_REQUIRED:
                    # the signals saw a face the blurrer did not find: nothing was hidden, so
                    # the clip would go out as it is; leave it out and say so instead
                    reason = (
                        f"privacy: the signals say {row['privacy_status']} but the blurrer "
                        "found no face to blur; review the clip, or export without it"
                    )
        if reason is not None:
            result.skipped.append({"clip_id": row["clip_id"], "reason": reason})
            progress(done, len(rows), f"skipped {row['clip_id']}: {reason}")
            continue
        meta = {**plain(row), "frames": frames, "annotations": annotations.get(row["clip_id"], [])}
        key = row["clip_id"].replace(".", "_")
        payload = json.dumps(meta, ensure_ascii=False, indent=1).encode()
        if shard and (len(shard) // 2 >= max_samples or shard_bytes + len(video) > max_bytes):
            flush()
        shard += [(f"{key}.mp4", video), (f"{key}.json", payload)]
        shard_bytes += len(video) + len(payload)
        result.samples += 1
        progress(done, len(rows), f"{done}/{len(rows)} clips cut")
    flush()
    if blurrer:
        blurrer.close()
    index = {
        "subset": record.name,
        "version": record.version,
        "samples": result.samples,
        "shards": [os.path.basename(f) for f in result.files],
        "skipped": result.skipped,
        "pinned_tables": record.table_versions,
        "privacy": "blur" if blur else None,
    }
    target = confined_path(out, f"{prefix}.json")
    text = json.dumps(index, indent=1)
    write_atomic(str(target), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    result.files.append(str(target))


def _cleared(lh: Store, table: pa.Table, result: ExportResult) -> pa.Table:
    """The manifest rows whose clip is cleared for export; the others go to ``skipped``.

    A version materialized before the signals existed has no ``privacy_status`` in its pinned
    view; then the latest status in the ``signals`` table decides."""
    import pyarrow as pa

    from lakehouse.subsets.privacy import refusal

    ids = table.column("clip_id").to_pylist()
    if "privacy_status" in table.column_names:
        statuses = dict(zip(ids, table.column("privacy_status").to_pylist(), strict=True))
    else:
        rows = run_sql(
            lh,
            "select clip_id, privacy_status from clip_facts where list_contains($ids, clip_id)",
            {"ids": ids},
        ).to_pylist()
        statuses = {r["clip_id"]: r["privacy_status"] for r in rows}
    keep = []
    for i, clip_id in enumerate(ids):
        reason = refusal(statuses.get(clip_id))
        if reason is None:
            keep.append(i)
        else:
            result.skipped.append({"clip_id": clip_id, "reason": reason})
    return table.take(pa.array(keep, pa.int64()))  # typed: an empty list would be null-typed


def _uncuttable(row: dict[str, Any]) -> str | None:
    if row.get("probe_status") not in (None, "ok"):
        return f"video not available here (probe_status {row.get('probe_status')})"
    if row.get("start_frame") is None or row.get("end_frame") is None or not row.get("fps"):
        return "clip has no frame span (video not probed)"
    uri = row.get("uri") or ""
    if "://" in uri and not uri.startswith("file://"):
        return f"cutting from {uri.split('://')[0]}:// is not supported yet; copy the video locally"
    if not os.path.isfile(local_path(uri)):
        return f"video file {uri} is gone"
    return None


def _write_tar(path: str, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0  # shards of the same version are byte-identical
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


def _annotations(lh: Store, record: SubsetVersion) -> dict[str, list[dict[str, Any]]]:
    """Each clip's annotation rows (every field the file had), at the pinned version."""
    version = record.table_versions.get("annotations")
    if version == 0:
        return {}
    members = set(record.clip_ids)
    out: dict[str, list[dict[str, Any]]] = {}
    table = lh.read(
        "annotations", columns=["clip_id", "annotation_source", "fields_json"], version=version
    )
    for row in table.to_pylist():
        if row["clip_id"] in members:
            fields = json.loads(row["fields_json"]) if row.get("fields_json") else {}
            out.setdefault(row["clip_id"], []).append(
                {"annotation_source": row.get("annotation_source"), "fields": fields}
            )
    return out
