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
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from lakehouse import schemas
from lakehouse.errors import ConfigError
from lakehouse.models import ClipModel, TextModel, load_clip, load_text, resolve_clip, resolve_text
from lakehouse.stage import Progress, StageResult, no_progress
from lakehouse.store import WriteResult, in_list, sql_literal

if TYPE_CHECKING:
    from lakehouse.config import ModelSettings
    from lakehouse.sources import Source
    from lakehouse.store import Lakehouse

CLIP_TABLE = "clip_embeddings"
TEXT_TABLE = "text_embeddings"
CHUNK_CLIPS = 256
T = TypeVar("T")
R = TypeVar("R")


def model_key(model_id: str) -> str:
    return hashlib.sha256(model_id.encode()).hexdigest()[:10]


def prefetch(items: Iterable[T], work: Callable[[T], R], depth: int = 2) -> Iterator[R]:
    """Yield ``work(item)`` in order while up to ``depth`` next items are prepared in a thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) > depth:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def clip_metadata(lh: Lakehouse, source: Source, *, probed_only: bool) -> dict[str, dict[str, Any]]:
    """The search metadata of each clip of ``source`` (first short caption of its annotations)."""
    flt = source.scope + (" AND probe_status = 'ok'" if probed_only else "")
    names = [n for n in schemas.SEARCH_METADATA_NAMES if n != "short_caption"]
    clips = lh.read("clips", columns=["clip_id", *names], filter=flt).to_pylist()
    captions: dict[str, str] = {}
    anns = lh.read(
        "annotations",
        columns=["clip_id", "short_caption", "annotation_source", "line_number"],
        filter=source.scope,
    ).to_pylist()
    for ann in sorted(anns, key=lambda a: (a["annotation_source"], a["line_number"])):
        if ann["short_caption"] is not None:
            captions.setdefault(ann["clip_id"], ann["short_caption"])
    out = {}
    for clip in clips:
        meta = {name: clip.get(name) for name in schemas.SEARCH_METADATA_NAMES}
        meta["short_caption"] = captions.get(clip["clip_id"])
        out[clip["clip_id"]] = meta
    return out


def _skipped(table: str, source: Source, lh: Lakehouse, message: str) -> StageResult:
    return StageResult(
        table,
        source.name,
        table,
        WriteResult(table),
        rows=lh.count(table, source.scope) if lh.exists(table) else 0,
        details={"status": "skipped: model unavailable", "message": message},
    )


def _check_dim(lh: Lakehouse, table: str, dim: int, model_id: str) -> None:
    ds = lh.dataset(table)
    if ds is None:
        return
    stored = ds.schema.field("vector").type.list_size
    if stored != dim:
        raise ConfigError(
            f"{table} holds {stored}-d vectors but {model_id} makes {dim}-d ones; use a lakehouse "
            "root per embedding size, or delete the table to re-embed with the new model."
        )


def _refresh_metadata(
    lh: Lakehouse,
    table: str,
    existing: list[dict[str, Any]],
    meta_of: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> int:
    """Rewrite only the metadata columns of rows whose clip metadata changed."""
    import pyarrow as pa

    changed = []
    for row in existing:
        meta = meta_of(row)
        if meta is not None and any(row.get(k) != v for k, v in meta.items()):
            changed.append({"embedding_id": row["embedding_id"], **meta})
    if not changed:
        return 0
    schema = lh.schema(table)
    names = ["embedding_id", *schemas.SEARCH_METADATA_NAMES]
    data = pa.Table.from_pylist(changed, schema=pa.schema([schema.field(n) for n in names]))
    lh.dataset(table).merge_insert("embedding_id").when_matched_update_all().execute(data)
    return len(changed)


def embed_clips(
    lh: Lakehouse,
    source: Source,
    *,
    run_id: str,
    progress: Progress = no_progress,
    model: ClipModel | None = None,
) -> StageResult:
    """CLIP-embed the keyframes of every clip of ``source`` that lacks a vector for the model."""

    settings = lh.config.models
    resolved = model.resolved if model else resolve_clip(settings)
    if not resolved.available:
        return _skipped(CLIP_TABLE, source, lh, resolved.message)
    if model is None and resolved.online:
        model = load_clip(settings, resolved)
        resolved = model.resolved
    model_id = resolved.model_id
    key = model_key(model_id)
    meta = clip_metadata(lh, source, probed_only=True)
    frames: dict[str, list[str]] = defaultdict(list)
    for row in sorted(
        lh.read(
            "keyframes", columns=["keyframe_id", "clip_id", "idx"], filter=source.scope
        ).to_pylist(),
        key=lambda r: (r["clip_id"], r["idx"]),
    ):
        if row["clip_id"] in meta:
            frames[row["clip_id"]].append(row["keyframe_id"])
    existing = lh.read(
        CLIP_TABLE,
        columns=["embedding_id", "clip_id", "keyframe_ids", *schemas.SEARCH_METADATA_NAMES],
        filter=f"{source.scope} AND model_id = {sql_literal(model_id)}",
    ).to_pylist()
    have = {r["clip_id"]: r for r in existing}
    todo = [c for c, ids in frames.items() if have.get(c, {}).get("keyframe_ids") != ids]
    stale = [r["embedding_id"] for r in existing if r["clip_id"] not in frames]
    inserted = 0
    if todo:
        model = model or load_clip(settings, resolved)
        dim = model.encode_texts(["probe"]).shape[1]
        _check_dim(lh, CLIP_TABLE, dim, model_id)
        schema = schemas.clip_embeddings_schema(dim)
        chunks = [todo[i : i + CHUNK_CLIPS] for i in range(0, len(todo), CHUNK_CLIPS)]
        done = 0
        progress(0, len(todo), f"embedding {len(todo)} clip(s) with {model_id}")
        encoded = (
            _encode_on_cluster(lh, chunks, frames)
            if lh.config.compute.backend != "local"
            else _encode_here(lh, chunks, frames, model)
        )
        for chunk, ids, vectors in encoded:
            rows = _clip_rows(chunk, frames, ids, vectors, meta, model_id, key, run_id)
            inserted += lh.upsert(CLIP_TABLE, rows, schema=schema).inserted
            done += len(chunk)
            progress(done, len(todo), f"{done}/{len(todo)} clips embedded")
    fresh = set(todo)
    updated = _refresh_metadata(
        lh,
        CLIP_TABLE,
        [r for r in existing if r["clip_id"] not in fresh],
        lambda r: meta.get(r["clip_id"]),
    )
    deleted = lh.delete(CLIP_TABLE, in_list("embedding_id", stale)) if stale else 0
    ds = lh.dataset(CLIP_TABLE)
    return StageResult(
        CLIP_TABLE,
        source.name,
        CLIP_TABLE,
        WriteResult(CLIP_TABLE, inserted, updated, deleted, ds.version if ds is not None else None),
        rows=lh.count(CLIP_TABLE, f"{source.scope} AND model_id = {sql_literal(model_id)}")
        if ds is not None
        else 0,
        details={"model_id": model_id, "embedded": len(todo), "clips_with_keyframes": len(frames)},
    )


def _encode_here(
    lh: Lakehouse, chunks: list[list[str]], frames: dict[str, list[str]], model: ClipModel
) -> Iterator[tuple[list[str], list[str], Any]]:
    """``(chunk, keyframe ids, vectors)`` per chunk, encoded in this process. The JPEGs are
    decoded and preprocessed in a thread, batch by batch, so the model starts on the first batch
    (not after a whole chunk). The thread works ahead of the model (two batches) where that
    overlaps work: a model on an accelerator, or on fewer CPU threads than there are cores. A CPU
    model that already uses every core gains nothing from it and loses to the contention (+17%
    wall time measured on the 2-core dev machine), so there the batches alternate."""
    import os

    import numpy as np
    import torch

    batch = lh.config.models.batch_size
    spare_cores = torch.get_num_threads() < (os.cpu_count() or 1)
    ahead = 2 if model.device != "cpu" or spare_cores else 0

    def batches() -> Iterator[tuple[int, list[str], list[bytes], bool]]:
        for n, chunk in enumerate(chunks):
            ids, jpegs = _read_keyframes(lh, chunk, frames)
            starts = list(range(0, len(ids), batch)) or [0]  # a chunk without keyframes too
            for i in starts:
                yield n, ids[i : i + batch], jpegs[i : i + batch], i == starts[-1]

    def decode(item: tuple[int, list[str], list[bytes], bool]) -> tuple[int, list[str], Any, bool]:
        n, ids, jpegs, last = item
        return n, ids, _preprocess(model, jpegs), last

    ids_so_far: list[str] = []
    parts: list[Any] = []
    for n, ids, tensors, last in prefetch(batches(), decode, depth=ahead):
        if ids:
            parts.append(model.encode_images(tensors))
            ids_so_far += ids
        if last:
            vectors = np.concatenate(parts) if parts else np.empty((0, 0), np.float32)
            yield chunks[n], ids_so_far, vectors
            ids_so_far, parts = [], []


def _encode_on_cluster(
    lh: Lakehouse, chunks: list[list[str]], frames: dict[str, list[str]]
) -> Iterator[tuple[list[str], list[str], Any]]:
    """The same, one task per chunk on the configured compute backend (``lakehouse.compute``):
    this process reads the JPEGs and writes the rows, the tasks only decode and encode."""
    from lakehouse.compute import run_tasks
    from lakehouse.errors import PipelineError

    settings = dataclasses.asdict(lh.config.models)

    def tasks() -> Iterator[tuple[int, dict[str, Any]]]:
        for n, chunk in enumerate(chunks):
            wanted = [k for c in chunk for k in frames[c]]
            table = lh.read(
                "keyframes", columns=["keyframe_id", "jpeg"], filter=in_list("keyframe_id", wanted)
            )
            jpegs = dict(
                zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)
            )
            items = [(k, jpegs[k]) for k in wanted if k in jpegs]
            yield n, {"models": settings, "keyframes": items}

    for outcome in run_tasks(
        lh.config, "lakehouse.embeddings:encode_keyframes", tasks(), timeout_s=3600.0
    ):
        if not outcome.ok:
            raise PipelineError(f"CLIP embedding task failed: {outcome.message}")
        ids, vectors = outcome.value
        yield chunks[outcome.key], ids, vectors


def encode_keyframes(payload: dict[str, Any]) -> tuple[list[str], Any]:
    """Task body: CLIP vectors of ``(keyframe_id, jpeg)`` pairs, with the model of the settings
    (loaded once per worker process)."""
    import numpy as np
    import torch
    from PIL import Image

    from lakehouse.config import ModelSettings

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


def _read_keyframes(
    lh: Lakehouse, chunk: list[str], frames: dict[str, list[str]]
) -> tuple[list[str], list[bytes]]:
    """The keyframe ids of a chunk of clips, in clip order, and their JPEG bytes (one read)."""
    wanted = [k for c in chunk for k in frames[c]]
    table = lh.read(
        "keyframes", columns=["keyframe_id", "jpeg"], filter=in_list("keyframe_id", wanted)
    )
    jpegs = dict(
        zip(table.column("keyframe_id").to_pylist(), table.column("jpeg").to_pylist(), strict=True)
    )
    ids = [k for k in wanted if k in jpegs]
    return ids, [jpegs[k] for k in ids]


def _preprocess(model: ClipModel, jpegs: list[bytes]) -> Any:
    """Decode and preprocess one model batch of JPEGs (runs in the prefetch thread)."""
    import torch
    from PIL import Image

    images = [model.preprocess(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpegs]
    return torch.stack(images) if images else torch.empty(0)


def _clip_rows(
    chunk: list[str],
    frames: dict[str, list[str]],
    ids: list[str],
    vectors: Any,
    meta: dict[str, dict[str, Any]],
    model_id: str,
    key: str,
    run_id: str,
) -> list[dict[str, Any]]:
    import numpy as np

    index = {k: i for i, k in enumerate(ids)}
    now = dt.datetime.now(dt.UTC)
    rows = []
    for clip_id in chunk:
        kf_ids = [k for k in frames[clip_id] if k in index]
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
                **meta[clip_id],
                "embedded_at": now,
                "run_id": run_id,
            }
        )
    return rows


def caption_texts(
    lh: Lakehouse, source: Source, fields: Iterable[str]
) -> dict[tuple[str, str], str]:
    """``(clip_id, field) -> text``: the first non-empty value of each field over annotations."""
    fields = list(fields)
    anns = lh.read(
        "annotations",
        columns=["clip_id", "annotation_source", "line_number", *fields],
        filter=source.scope,
    ).to_pylist()
    texts: dict[tuple[str, str], str] = {}
    for ann in sorted(anns, key=lambda a: (a["annotation_source"], a["line_number"])):
        for name in fields:
            value = ann.get(name)
            if isinstance(value, str) and value.strip():
                texts.setdefault((ann["clip_id"], name), value.strip())
    return texts


def embed_captions(
    lh: Lakehouse,
    source: Source,
    *,
    run_id: str,
    progress: Progress = no_progress,
    model: TextModel | None = None,
) -> StageResult:
    """Embed each caption field of each clip of ``source`` with the configured text model."""
    settings = lh.config.models
    resolved = model.resolved if model else resolve_text(settings)
    if not resolved.available:
        return _skipped(TEXT_TABLE, source, lh, resolved.message)
    if model is None and resolved.online:
        model = load_text(settings, resolved)
        resolved = model.resolved
    model_id = resolved.model_id
    key = model_key(model_id)
    meta = clip_metadata(lh, source, probed_only=False)
    texts = {
        k: v for k, v in caption_texts(lh, source, settings.text_fields).items() if k[0] in meta
    }
    wanted = {
        f"{clip_id}:{name}:{key}": (clip_id, name, text, _text_hash(text))
        for (clip_id, name), text in texts.items()
    }
    existing = lh.read(
        TEXT_TABLE,
        columns=["embedding_id", "clip_id", "text_hash", *schemas.SEARCH_METADATA_NAMES],
        filter=f"{source.scope} AND model_id = {sql_literal(model_id)}",
    ).to_pylist()
    have = {r["embedding_id"]: r for r in existing}
    todo = [eid for eid, item in wanted.items() if have.get(eid, {}).get("text_hash") != item[3]]
    stale = [eid for eid in have if eid not in wanted]
    inserted = 0
    if todo:
        model = model or load_text(settings, resolved)
        progress(0, len(todo), f"embedding {len(todo)} caption(s) with {model_id}")
        vectors = model.encode(
            [wanted[e][2] for e in todo], batch_size=max(settings.batch_size, 64)
        )
        _check_dim(lh, TEXT_TABLE, vectors.shape[1], model_id)
        now = dt.datetime.now(dt.UTC)
        rows = [
            {
                "embedding_id": eid,
                "clip_id": wanted[eid][0],
                "field": wanted[eid][1],
                "text": wanted[eid][2],
                "text_hash": wanted[eid][3],
                "model_id": model_id,
                "vector": vector,
                **meta[wanted[eid][0]],
                "embedded_at": now,
                "run_id": run_id,
            }
            for eid, vector in zip(todo, vectors, strict=True)
        ]
        schema = schemas.text_embeddings_schema(vectors.shape[1])
        inserted = lh.upsert(TEXT_TABLE, rows, schema=schema).inserted
        progress(len(todo), len(todo), f"{len(todo)} captions embedded")
    fresh = set(todo)
    updated = _refresh_metadata(
        lh,
        TEXT_TABLE,
        [r for r in existing if r["embedding_id"] not in fresh],
        lambda r: meta.get(r["clip_id"]),
    )
    deleted = lh.delete(TEXT_TABLE, in_list("embedding_id", stale)) if stale else 0
    ds = lh.dataset(TEXT_TABLE)
    return StageResult(
        TEXT_TABLE,
        source.name,
        TEXT_TABLE,
        WriteResult(TEXT_TABLE, inserted, updated, deleted, ds.version if ds is not None else None),
        rows=lh.count(TEXT_TABLE, f"{source.scope} AND model_id = {sql_literal(model_id)}")
        if ds is not None
        else 0,
        details={"model_id": model_id, "embedded": len(todo), "fields": list(settings.text_fields)},
    )


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
