"""The embedding stages: CLIP vectors per clip (``clip_embeddings``) and caption vectors per clip
and text field (``text_embeddings``).

Model versions are data: every row records the ``model_id`` that made it and only clips lacking a
vector for the configured model (or whose keyframes / caption text changed) are embedded, so a
new model is an incremental backfill and the old model's rows stay queryable. Each row also
carries the clip metadata a search filters on (``schemas.SEARCH_METADATA``), refreshed here when
the clips change. Inference is batched under ``torch.inference_mode()``; JPEG decoding and
preprocessing of the next batch run in a thread while the model works on the current one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import io
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from lakehouse.core import schemas
from lakehouse.core.concurrency import ahead
from lakehouse.core.errors import ConfigError
from lakehouse.core.ids import model_key
from lakehouse.core.schemas import CLIP_TABLE, TEXT_TABLE
from lakehouse.ingest.plan import (
    PLAN_ROWS,
    Spool,
    StaleKeys,
    merge,
    sorted_groups,
    stream_memory_mb,
)
from lakehouse.ingest.stage import Progress, StageResult, no_progress
from lakehouse.models.encoders import ClipModel, TextModel, load_clip, load_text
from lakehouse.models.resolve import resolve_clip, resolve_text
from lakehouse.storage.filters import in_list, sql_literal
from lakehouse.storage.writes import WriteResult

if TYPE_CHECKING:
    from lakehouse.core.config import ModelSettings
    from lakehouse.ingest.sources import Source
    from lakehouse.storage.store import Store

CHUNK_CLIPS = 256
CHUNK_TEXTS = 4096
UPDATE_ROWS = 10_000
_META_NAMES = list(schemas.SEARCH_METADATA_NAMES)


# The search metadata of each clip: its columns of ``clips`` and the first short caption of its
# annotations (in file and line order), sorted by clip
_META_QUERY = """
SELECT c.*, a.short_caption
FROM clips c LEFT JOIN (
    SELECT clip_id, arg_min(short_caption, (annotation_source, line_number)) AS short_caption
    FROM annotations GROUP BY clip_id
) a USING (clip_id)
ORDER BY c.clip_id
"""


def clip_metadata(
    lh: Store, source: Source, *, probed_only: bool, memory_mb: int | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(clip_id, search metadata)`` for each clip of ``source``, sorted by clip id, streamed."""
    flt = source.scope + (" AND probe_status = 'ok'" if probed_only else "")
    names = [n for n in schemas.SEARCH_METADATA_NAMES if n != "short_caption"]
    scans = {
        "clips": ("clips", ["clip_id", *names], flt),
        "annotations": (
            "annotations",
            ["clip_id", "short_caption", "annotation_source", "line_number"],
            f"{source.scope} AND short_caption IS NOT NULL",
        ),
    }
    for batch in lh.stream_query(_META_QUERY, scans, batch_rows=PLAN_ROWS, memory_mb=memory_mb):
        for row in batch.to_pylist():
            yield row["clip_id"], {name: row[name] for name in schemas.SEARCH_METADATA_NAMES}


def _skipped(table: str, source: Source, lh: Store, message: str) -> StageResult:
    return StageResult(
        table,
        source.name,
        table,
        WriteResult(table),
        rows=lh.count(table, source.scope) if lh.exists(table) else 0,
        details={"status": "skipped: model unavailable", "message": message},
    )


def _check_dim(lh: Store, table: str, dim: int, model_id: str) -> None:
    ds = lh.dataset(table)
    if ds is None:
        return
    stored = ds.schema.field("vector").type.list_size
    if stored != dim:
        raise ConfigError(
            f"{table} holds {stored}-d vectors but {model_id} makes {dim}-d ones; use a lakehouse "
            "root per embedding size, or delete the table to re-embed with the new model."
        )


class _Updates:
    """The old rows a plan finds: metadata to rewrite (only those columns) and stale rows to
    delete, written in bounded batches as the plan goes."""

    def __init__(self, lh: Store, table: str) -> None:
        self.lh, self.table = lh, table
        self.updated = 0
        self._changed: list[dict[str, Any]] = []
        self._stale = StaleKeys(lh, [table], "embedding_id")

    @property
    def deleted(self) -> int:
        return self._stale.deleted

    def refresh(self, row: dict[str, Any], meta: dict[str, Any]) -> None:
        if any(row.get(k) != v for k, v in meta.items()):
            self._changed.append({"embedding_id": row["embedding_id"], **meta})
            if len(self._changed) >= UPDATE_ROWS:
                self._write_changed()

    def stale(self, embedding_ids: Iterable[str]) -> None:
        self._stale.add(embedding_ids)

    def flush(self) -> None:
        self._write_changed()
        self._stale.flush()

    def _write_changed(self) -> None:
        import pyarrow as pa

        if not self._changed:
            return
        schema = self.lh.schema(self.table)
        names = ["embedding_id", *schemas.SEARCH_METADATA_NAMES]
        data = pa.Table.from_pylist(
            self._changed, schema=pa.schema([schema.field(n) for n in names])
        )
        ds = self.lh.dataset(self.table)
        ds.merge_insert("embedding_id").when_matched_update_all().execute(data)
        self.updated += len(self._changed)
        self._changed = []


def embed_clips(
    lh: Store,
    source: Source,
    *,
    run_id: str,
    progress: Progress = no_progress,
    model: ClipModel | None = None,
) -> StageResult:
    """CLIP-embed the keyframes of every clip of ``source`` that lacks a vector for the model.

    The plan streams (:mod:`lakehouse.ingest.plan`): the clips' metadata, their keyframe ids and the
    model's existing rows arrive sorted by clip and are joined clip by clip. Changed metadata
    and stale rows are written as the plan goes; the clips to embed go to a spool on disk,
    which is then embedded chunk by chunk."""

    settings = lh.config.models
    resolved = model.resolved if model else resolve_clip(settings)
    if not resolved.available:
        return _skipped(CLIP_TABLE, source, lh, resolved.message)
    if model is None and resolved.online:
        model = load_clip(settings, resolved)
        resolved = model.resolved
    model_id = resolved.model_id
    key = model_key(model_id)
    scope = f"{source.scope} AND model_id = {sql_literal(model_id)}"
    mb = stream_memory_mb(lh, 3)
    frames = (
        (clip_id, [r["keyframe_id"] for r in rows])
        for clip_id, rows in sorted_groups(
            lh,
            "keyframes",
            columns=["clip_id", "idx", "keyframe_id"],
            order_by=["clip_id", "idx"],
            filter=source.scope,
            memory_mb=mb,
        )
    )
    existing = sorted_groups(
        lh,
        CLIP_TABLE,
        columns=["clip_id", "embedding_id", "keyframe_ids", *_META_NAMES],
        order_by=["clip_id", "embedding_id"],
        filter=scope,
        memory_mb=mb,
    )
    updates = _Updates(lh, CLIP_TABLE)
    with_frames = inserted = 0
    with Spool(CHUNK_CLIPS) as todo:
        metadata = clip_metadata(lh, source, probed_only=True, memory_mb=mb)
        for clip_id, (meta, ids, old) in merge(metadata, frames, existing):
            rows = old or []
            if meta is None or not ids:
                updates.stale(r["embedding_id"] for r in rows)
                continue
            with_frames += 1
            if not rows or rows[0]["keyframe_ids"] != ids:
                todo.add((clip_id, meta, ids))
            else:
                updates.refresh(rows[0], meta)
        updates.flush()
        if todo.count:
            model = model or load_clip(settings, resolved)
            dim = model.encode_texts(["probe"]).shape[1]
            _check_dim(lh, CLIP_TABLE, dim, model_id)
            schema = schemas.clip_embeddings_schema(dim)
            done = 0
            progress(0, todo.count, f"embedding {todo.count} clip(s) with {model_id}")
            encoded = (
                _encode_on_cluster(lh, todo.chunks())
                if lh.config.compute.backend != "local"
                else _encode_here(lh, todo.chunks(), model)
            )
            for chunk, ids, vectors in encoded:
                rows = _clip_rows(chunk, ids, vectors, model_id, key, run_id)
                inserted += lh.upsert(CLIP_TABLE, rows, schema=schema).inserted
                done += len(chunk)
                progress(done, todo.count, f"{done}/{todo.count} clips embedded")
        embedded = todo.count
    ds = lh.dataset(CLIP_TABLE)
    return StageResult(
        CLIP_TABLE,
        source.name,
        CLIP_TABLE,
        WriteResult(
            CLIP_TABLE,
            inserted,
            updates.updated,
            updates.deleted,
            ds.version if ds is not None else None,
        ),
        rows=lh.count(CLIP_TABLE, scope) if ds is not None else 0,
        details={"model_id": model_id, "embedded": embedded, "clips_with_keyframes": with_frames},
    )


# A chunk of the plan: (clip_id, search metadata, keyframe ids in order) per clip
PlanChunk = list[tuple[str, dict[str, Any], list[str]]]


def _encode_here(
    lh: Store, chunks: Iterable[PlanChunk], model: ClipModel
) -> Iterator[tuple[PlanChunk, list[str], Any]]:
    """``(chunk, keyframe ids, vectors)`` per chunk, encoded in this process. The JPEGs are
    read, decoded and preprocessed in a thread (:func:`lakehouse.core.concurrency.ahead`), batch
    by batch, so the model starts on the first batch
    (not after a whole chunk). The thread works ahead of the model (two batches) where that
    overlaps work: a model on an accelerator, or on fewer CPU threads than there are cores. A CPU
    model that already uses every core gains nothing from it and loses to the contention (+17%
    wall time measured on the 2-core dev machine), so there the batches alternate."""
    import os

    import numpy as np
    import torch

    batch = lh.config.models.batch_size
    spare_cores = torch.get_num_threads() < (os.cpu_count() or 1)
    depth = 2 if model.device != "cpu" or spare_cores else 0

    def batches() -> Iterator[tuple[PlanChunk, list[str], list[bytes], bool]]:
        for chunk in chunks:
            ids, jpegs = _read_keyframes(lh, chunk)
            starts = list(range(0, len(ids), batch)) or [0]  # a chunk without keyframes too
            for i in starts:
                yield chunk, ids[i : i + batch], jpegs[i : i + batch], i == starts[-1]

    def decode(
        item: tuple[PlanChunk, list[str], list[bytes], bool],
    ) -> tuple[PlanChunk, list[str], Any, bool]:
        chunk, ids, jpegs, last = item
        return chunk, ids, _preprocess(model, jpegs), last

    ids_so_far: list[str] = []
    parts: list[Any] = []
    for chunk, ids, tensors, last in ahead(map(decode, batches()), depth):
        if ids:
            parts.append(model.encode_images(tensors))
            ids_so_far += ids
        if last:
            vectors = np.concatenate(parts) if parts else np.empty((0, 0), np.float32)
            yield chunk, ids_so_far, vectors
            ids_so_far, parts = [], []


def _encode_on_cluster(
    lh: Store, chunks: Iterable[PlanChunk]
) -> Iterator[tuple[PlanChunk, list[str], Any]]:
    """The same, one task per chunk on the configured compute backend (``lakehouse.media.compute``):
    this process reads the JPEGs and writes the rows, the tasks only decode and encode. Chunks
    are read as the backend has room for another task."""
    from lakehouse.core.errors import PipelineError
    from lakehouse.media.compute import run_tasks

    settings = dataclasses.asdict(lh.config.models)
    submitted: dict[int, PlanChunk] = {}

    def tasks() -> Iterator[tuple[int, dict[str, Any]]]:
        for n, chunk in enumerate(chunks):
            ids, jpegs = _read_keyframes(lh, chunk)
            submitted[n] = chunk
            yield n, {"models": settings, "keyframes": list(zip(ids, jpegs, strict=True))}

    for outcome in run_tasks(
        lh.config, "lakehouse.enrich.embeddings:encode_keyframes", tasks(), timeout_s=3600.0
    ):
        if not outcome.ok:
            raise PipelineError(f"CLIP embedding task failed: {outcome.message}")
        ids, vectors = outcome.value
        yield submitted.pop(outcome.key), ids, vectors


def encode_keyframes(payload: dict[str, Any]) -> tuple[list[str], Any]:
    """Task body: CLIP vectors of ``(keyframe_id, jpeg)`` pairs, with the model of the settings
    (loaded once per worker process)."""
    import numpy as np
    import torch
    from PIL import Image

    from lakehouse.core.config import ModelSettings

    values = {k: tuple(v) if isinstance(v, list) else v for k, v in payload["models"].items()}
    settings = ModelSettings(**values)
    model = _worker_clip(settings)
    ids = [k for k, _ in payload["keyframes"]]
    if not ids:
        return [], np.empty((0, 0), np.float32)
    images = [
        model.preprocess(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        for _, jpeg in payload["keyframes"]
    ]
    tensors = torch.stack(images)
    batch = settings.batch_size
    parts = [model.encode_images(tensors[i : i + batch]) for i in range(0, len(ids), batch)]
    return ids, np.concatenate(parts)


@functools.cache
def _worker_clip(settings: ModelSettings) -> ClipModel:
    return load_clip(settings)


def _read_keyframes(lh: Store, chunk: PlanChunk) -> tuple[list[str], list[bytes]]:
    """The keyframe ids of a chunk of clips, in clip order, and their JPEG bytes (one read)."""
    wanted = [k for _, _, ids in chunk for k in ids]
    table = lh.read(
        "keyframes", columns=["keyframe_id", "jpeg"], filter=in_list("keyframe_id", wanted)
    )
    jpegs = dict(
        zip(table.column("keyframe_id").to_pylist(), table.column("jpeg").to_pylist(), strict=True)
    )
    ids = [k for k in wanted if k in jpegs]
    return ids, [jpegs[k] for k in ids]


def _preprocess(model: ClipModel, jpegs: list[bytes]) -> Any:
    """Decode and preprocess one model batch of JPEGs (runs in the thread working ahead)."""
    import torch
    from PIL import Image

    images = [model.preprocess(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpegs]
    return torch.stack(images) if images else torch.empty(0)


def _clip_rows(
    chunk: PlanChunk,
    ids: list[str],
    vectors: Any,
    model_id: str,
    key: str,
    run_id: str,
) -> list[dict[str, Any]]:
    import numpy as np

    index = {k: i for i, k in enumerate(ids)}
    now = dt.datetime.now(dt.UTC)
    rows = []
    for clip_id, meta, frames in chunk:
        kf_ids = [k for k in frames if k in index]
        if not kf_ids:
            continue
        kf_vectors = vectors[[index[k] for k in kf_ids]]
        pooled = kf_vectors.mean(axis=0)
        pooled = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        rows.append(
            {
                "embedding_id": f"{clip_id}:{key}",
                "clip_id": clip_id,
                "model_id": model_id,
                "vector": pooled.astype(np.float32),
                "keyframe_ids": kf_ids,
                "keyframe_vectors": list(kf_vectors.astype(np.float32)),
                **meta,
                "embedded_at": now,
                "run_id": run_id,
            }
        )
    return rows


def caption_stream(
    lh: Store, source: Source, fields: Iterable[str], memory_mb: int | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """``(clip_id, {field: text})`` sorted by clip id: the first non-empty value of each field
    over the clip's annotations (in file and line order), stripped; streamed."""
    fields = list(fields)
    rows = sorted_groups(
        lh,
        "annotations",
        columns=["clip_id", "annotation_source", "line_number", *fields],
        order_by=["clip_id", "annotation_source", "line_number"],
        filter=source.scope,
        memory_mb=memory_mb or stream_memory_mb(lh, 1),
    )
    for clip_id, anns in rows:
        texts: dict[str, str] = {}
        for ann in anns:
            for name in fields:
                value = ann.get(name)
                if name not in texts and isinstance(value, str) and value.strip():
                    texts[name] = value.strip()
        yield clip_id, texts


def embed_captions(
    lh: Store,
    source: Source,
    *,
    run_id: str,
    progress: Progress = no_progress,
    model: TextModel | None = None,
) -> StageResult:
    """Embed each caption field of each clip of ``source`` with the configured text model.
    The plan streams as :func:`embed_clips`' does; texts are embedded in chunks."""
    settings = lh.config.models
    resolved = model.resolved if model else resolve_text(settings)
    if not resolved.available:
        return _skipped(TEXT_TABLE, source, lh, resolved.message)
    if model is None and resolved.online:
        model = load_text(settings, resolved)
        resolved = model.resolved
    model_id = resolved.model_id
    key = model_key(model_id)
    scope = f"{source.scope} AND model_id = {sql_literal(model_id)}"
    mb = stream_memory_mb(lh, 3)
    existing = sorted_groups(
        lh,
        TEXT_TABLE,
        columns=["clip_id", "embedding_id", "text_hash", *_META_NAMES],
        order_by=["clip_id", "embedding_id"],
        filter=scope,
        memory_mb=mb,
    )
    updates = _Updates(lh, TEXT_TABLE)
    inserted = 0
    with Spool(CHUNK_TEXTS) as todo:
        metadata = clip_metadata(lh, source, probed_only=False, memory_mb=mb)
        captions = caption_stream(lh, source, settings.text_fields, memory_mb=mb)
        for clip_id, (meta, texts, old) in merge(metadata, captions, existing):
            have = {r["embedding_id"]: r for r in old or []}
            wanted = (
                {}
                if meta is None
                else {
                    f"{clip_id}:{name}:{key}": (name, text) for name, text in (texts or {}).items()
                }
            )
            for eid, (name, text) in wanted.items():
                digest = text_hash(text)
                if eid in have and have[eid]["text_hash"] == digest:
                    updates.refresh(have[eid], meta)
                else:
                    todo.add((eid, clip_id, name, text, digest, meta))
            updates.stale(eid for eid in have if eid not in wanted)
        updates.flush()
        if todo.count:
            model = model or load_text(settings, resolved)
            progress(0, todo.count, f"embedding {todo.count} caption(s) with {model_id}")
            done = 0
            for chunk in todo.chunks():
                vectors = model.encode(
                    [item[3] for item in chunk], batch_size=max(settings.batch_size, 64)
                )
                _check_dim(lh, TEXT_TABLE, vectors.shape[1], model_id)
                now = dt.datetime.now(dt.UTC)
                rows = [
                    {
                        "embedding_id": eid,
                        "clip_id": clip_id,
                        "field": name,
                        "text": text,
                        "text_hash": digest,
                        "model_id": model_id,
                        "vector": vector,
                        **meta,
                        "embedded_at": now,
                        "run_id": run_id,
                    }
                    for (eid, clip_id, name, text, digest, meta), vector in zip(
                        chunk, vectors, strict=True
                    )
                ]
                schema = schemas.text_embeddings_schema(vectors.shape[1])
                inserted += lh.upsert(TEXT_TABLE, rows, schema=schema).inserted
                done += len(chunk)
                progress(done, todo.count, f"{done}/{todo.count} captions embedded")
        embedded = todo.count
    ds = lh.dataset(TEXT_TABLE)
    return StageResult(
        TEXT_TABLE,
        source.name,
        TEXT_TABLE,
        WriteResult(
            TEXT_TABLE,
            inserted,
            updates.updated,
            updates.deleted,
            ds.version if ds is not None else None,
        ),
        rows=lh.count(TEXT_TABLE, scope) if ds is not None else 0,
        details={"model_id": model_id, "embedded": embedded, "fields": list(settings.text_fields)},
    )


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
