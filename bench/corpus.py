"""A synthetic HumanNet-like corpus, written through the lakehouse's own table code.

``write_corpus(lh, clips=N)`` fills the real ``videos``, ``annotations``, ``clips`` and
``clip_embeddings`` tables (``lakehouse.core.schemas``; every row goes through
``Lakehouse.upsert``, as in ingest) in batches of whole videos, so memory stays flat whatever N.
The distributions follow the HumanNet preview (``../shared/data/humannet-preview``):

- viewpoint: 45% ego (first-person) / 55% exo videos; every clip of a video shares it;
- clips per video: log-normal (median 12, long tail, capped at 200); clip durations log-normal
  (median 4.5 s, σ 0.7, clipped to 1-60 s), back to back inside their video;
- a three-level taxonomy (8 level-1 classes, 5 level-2 each, 4 level-3 each) with Zipf-like
  popularity, drawn per video; exo clips carry it, ego clips (like HumanNet's) have none;
- captions built from a vocabulary (subjects, verbs, objects, places, manners): short caption,
  semantic motion and motion sequence for every clip, long caption and environment for exo;
- 512-d unit vectors clustered by topic (taxonomy level 3 × viewpoint), video and clip, so
  the ANN index and prefilters behave as on real embeddings.

Everything is seeded: the same arguments give the same rows. No keyframes are written (10M
JPEG thumbnails would be ~200 GB); ``clip_facts.keyframe_count`` is 0 throughout.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.api import Lakehouse
from lakehouse.core import schemas
from lakehouse.core.ids import model_key
from lakehouse.core.schemas import CLIP_TABLE

DIM = 512
EGO_SHARE = 0.45
L1 = (
    "Daily Activities",
    "Sports",
    "Dance",
    "Household",
    "Work and Crafts",
    "Fitness",
    "Music Performance",
    "Social Interaction",
)
SUBJECTS = ("A person", "A man", "A woman", "A young man", "An older woman", "A child", "A worker")
VERBS = (
    "picks up",
    "places",
    "cuts",
    "stirs",
    "wipes",
    "folds",
    "opens",
    "closes",
    "pours",
    "carries",
    "throws",
    "catches",
    "kicks",
    "lifts",
    "pushes",
    "pulls",
    "twists",
    "assembles",
    "sorts",
    "washes",
    "paints",
    "hammers",
    "solders",
    "measures",
    "plays",
    "holds",
    "spins",
    "adjusts",
)
OBJECTS = (
    "a knife",
    "a wooden board",
    "a white bowl",
    "a red cup",
    "a screwdriver",
    "a hammer",
    "a towel",
    "a cardboard box",
    "a smartphone",
    "a guitar",
    "a basketball",
    "a frying pan",
    "a bottle of water",
    "a laptop",
    "a paint brush",
    "a pair of scissors",
    "a tennis racket",
    "a soldering iron",
    "a plastic container",
    "a shirt",
    "a drawer",
    "a potted plant",
    "a dumbbell",
    "a skateboard",
)
PLACES = (
    "in a kitchen",
    "on a workbench",
    "in a living room",
    "outdoors in a park",
    "in a gym",
    "on a street",
    "in an office",
    "in a garage",
    "on a stage",
    "in a classroom",
    "by a window",
    "on a sports field",
)
MANNERS = ("slowly", "quickly", "carefully", "with both hands", "with the right hand", "twice")
HANDS = ("The right hand", "The left hand", "Both hands", "The fingers")
MOTIONS = (
    "reach toward the object",
    "grasp it firmly",
    "rotate the wrist",
    "lift it off the surface",
    "move it across the table",
    "release the grip",
    "return to a resting position",
    "press down steadily",
)
ENVIRONMENTS = ("indoor, bright", "indoor, dim", "outdoor, daylight", "outdoor, night")
SEXES = ("male", "female", None)


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """What to generate; the same spec gives the same rows."""

    clips: int
    source: str = "synthetic"
    seed: int = 0
    batch_clips: int = 200_000
    dim: int = DIM
    model_id: str = "open_clip:ViT-B-32:random-init-test-only:seed0"
    first_video: int = 0  # video numbering offset (for an increment on top of a corpus)


def taxonomy() -> list[tuple[str, str, str]]:
    """The 160 (l1, l2, l3) leaves."""
    return [
        (a, f"{a} / {b}", f"{a} / {b} / {c}")
        for a in L1
        for b in ("Indoor", "Outdoor", "Group", "Solo", "Tools")
        for c in ("basic", "advanced", "with objects", "freestyle")
    ]


def _zipf(n: int, s: float = 1.1) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return p / p.sum()


def _pool(rng: np.random.Generator, size: int, parts: list[tuple], sep: str = " ") -> pa.Array:
    """``size`` random sentences, one word group drawn from each part."""
    picks = [np.asarray(p, dtype=object)[rng.integers(0, len(p), size)] for p in parts]
    return pa.array([sep.join(words) + "." for words in zip(*picks, strict=True)])


@dataclasses.dataclass
class Vocab:
    short: pa.Array
    motion: pa.Array
    sequence: pa.Array
    long: pa.Array


def vocabulary(seed: int, size: int = 200_000) -> Vocab:
    """Pools of captions clips draw from: short captions from 56,448 subject × verb × object ×
    place combinations, the longer fields from more (so they repeat less)."""
    rng = np.random.default_rng([seed, 7])
    short = _pool(rng, size, [SUBJECTS, VERBS, OBJECTS, PLACES])
    motion = pa.array(
        [
            f"{v.capitalize()} {o}"
            for v, o in zip(
                np.asarray(VERBS, dtype=object)[rng.integers(0, len(VERBS), size)],
                np.asarray(OBJECTS, dtype=object)[rng.integers(0, len(OBJECTS), size)],
                strict=True,
            )
        ]
    )
    steps = [
        _pool(rng, size, [HANDS, ("then", "first", "slowly", "next"), MOTIONS]).to_pylist()
        for _ in range(3)
    ]
    sequence = pa.array([" ".join(s) for s in zip(*steps, strict=True)])
    long = _pool(
        rng,
        size,
        [SUBJECTS, VERBS, OBJECTS, MANNERS, PLACES, ("while", "as", "and"), HANDS, MOTIONS],
    )
    return Vocab(short, motion, sequence, long)


@dataclasses.dataclass
class Batch:
    videos: pa.Table
    clips: pa.Table
    annotations: pa.Table
    embeddings: pa.Table
    vectors: np.ndarray


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x


def batches(spec: CorpusSpec) -> Iterator[Batch]:
    """The corpus in batches of whole videos (about ``batch_clips`` clips each)."""
    leaves = taxonomy()
    rng = np.random.default_rng([spec.seed, 0])
    topics = _unit(rng.standard_normal((len(leaves) * 2, spec.dim), dtype=np.float32))
    # cosine ~0.75 within a video, ~0.6 within a topic, ~0 across topics
    bank = rng.standard_normal((1 << 16, spec.dim), dtype=np.float32)
    bank *= np.float32(0.5 / np.sqrt(spec.dim))
    vocab = vocabulary(spec.seed, size=min(200_000, max(1_000, spec.clips)))
    leaf_p = _zipf(len(leaves))
    produced, video_no, b = 0, spec.first_video, 0
    now = dt.datetime.now(dt.UTC)
    while produced < spec.clips:
        brng = np.random.default_rng([spec.seed, 1, spec.first_video, b])
        # clips per video: log-normal, median 12
        per = np.clip(np.round(brng.lognormal(np.log(12), 0.8, size=spec.batch_clips)), 1, 200)
        per = per.astype(np.int64)
        cum = np.cumsum(per)
        want = min(spec.batch_clips, spec.clips - produced)
        nv = int(np.searchsorted(cum, want) + 1)
        per = per[:nv]
        per[-1] -= int(per.sum() - want)
        per = per[per > 0]
        nv = len(per)
        n = int(per.sum())
        vids_no = np.arange(video_no, video_no + nv)
        video_ids = [hashlib.sha256(f"{spec.seed}:{v}".encode()).hexdigest()[:32] for v in vids_no]
        ego = brng.random(nv) < EGO_SHARE
        leaf = brng.choice(len(leaves), size=nv, p=leaf_p)
        fps = np.where(ego, 30.0, brng.choice([24.0, 25.0, 29.97, 30.0], size=nv))
        video_of = np.repeat(np.arange(nv), per)
        duration = np.clip(np.round(brng.lognormal(np.log(4.5), 0.7, size=n), 3), 1.0, 60.0)
        ends = np.cumsum(duration)
        first_end = np.concatenate([[0.0], ends[np.cumsum(per)[:-1] - 1]])
        start = np.round(ends - duration - first_end[video_of], 3)
        end = np.round(start + duration, 3)
        video_len = np.round(np.bincount(video_of, weights=duration) + brng.uniform(0, 5, nv), 3)
        vid_arr = pa.array(video_ids).take(pa.array(video_of))
        start_ms = pa.array(np.round(start * 1000).astype(np.int64)).cast(pa.string())
        end_ms = pa.array(np.round(end * 1000).astype(np.int64)).cast(pa.string())
        clip_ids = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(vid_arr, 0, 20), start_ms, end_ms, "-"
        )
        is_ego = ego[video_of]
        view = pa.array(np.where(is_ego, "ego", "exo"))
        leaf_c = leaf[video_of]
        tax = [pa.array([t[i] for t in leaves]) for i in range(3)]
        null = pa.nulls(n, pa.string())
        tax_cols = [pc.if_else(pa.array(is_ego), null, t.take(pa.array(leaf_c))) for t in tax]
        pick = pa.array(brng.integers(0, len(vocab.short), n))
        short = vocab.short.take(pick)
        motion = vocab.motion.take(pa.array(brng.integers(0, len(vocab.motion), n)))
        sequence = vocab.sequence.take(pa.array(brng.integers(0, len(vocab.sequence), n)))
        long = pc.if_else(
            pa.array(is_ego), null, vocab.long.take(pa.array(brng.integers(0, len(vocab.long), n)))
        )
        env = pc.if_else(
            pa.array(is_ego),
            null,
            pa.array(ENVIRONMENTS).take(pa.array(brng.integers(0, len(ENVIRONMENTS), n))),
        )
        sex = pa.array(np.asarray(SEXES, dtype=object)[brng.integers(0, 3, nv)][video_of])
        sex = pc.if_else(pa.array(is_ego), null, sex.cast(pa.string()))
        quality = np.round(brng.beta(5, 2, n), 4)
        fps_c = fps[video_of]
        uri = pc.binary_join_element_wise(
            pa.array([f"/corpus/{spec.source}/"] * n), vid_arr, pa.array([".mp4"] * n), ""
        )
        ext = pc.binary_join_element_wise(pa.array(np.where(is_ego, "ego_", "exo_")), clip_ids, "")

        # vectors: topic (leaf x viewpoint) + video offset + clip noise, unit norm; offsets and
        # noise are rows of a fixed bank of normal vectors (drawing 5 billion normals for 10M
        # clips would take longer than writing them), two picks per clip
        topic = leaf_c * 2 + is_ego.astype(np.int64)
        picks = brng.integers(0, len(bank), size=(3, n))
        video_pick = brng.integers(0, len(bank), size=nv)[video_of]
        vectors = topics[topic] + bank[video_pick]
        vectors += bank[picks[0]]
        vectors -= bank[picks[1]]
        vectors = _unit(vectors)
        videos = {
            "video_id": pa.array(video_ids),
            "source": pa.array([spec.source] * nv),
            "uri": pa.array([f"/corpus/{spec.source}/{v}.mp4" for v in video_ids]),
            "relpath": pa.array([f"{v}.mp4" for v in video_ids]),
            "aliases": pa.array([[]] * nv, type=pa.list_(pa.string())),
            "sha256": pa.array([v * 2 for v in video_ids]),
            "size_bytes": pa.array(np.round(video_len * 2e5).astype(np.int64)),
            "mtime": pa.array(np.full(nv, 1.7e9)),
            "container": pa.array(["mov,mp4,m4a,3gp,3g2,mj2"] * nv),
            "codec": pa.array(["h264"] * nv),
            "pix_fmt": pa.array(["yuv420p"] * nv),
            "width": pa.array(np.where(ego, 640, 852).astype(np.int32)),
            "height": pa.array(np.where(ego, 360, 480).astype(np.int32)),
            "fps": pa.array(fps),
            "num_frames": pa.array(np.round(video_len * fps).astype(np.int64)),
            "duration_s": pa.array(video_len),
            "start_time_s": pa.array(np.zeros(nv)),
            "rotation": pa.array(np.zeros(nv, dtype=np.int32)),
            "has_audio": pa.array(~ego),
            "decode_verified": pa.array(np.ones(nv, dtype=bool)),
            "probe_version": pa.array(["synthetic"] * nv),
            "probed_at": pa.array([now] * nv, type=pa.timestamp("us", tz="UTC")),
            "run_id": pa.array(["corpus"] * nv),
        }
        clip_cols = {
            "clip_id": clip_ids,
            "video_id": vid_arr,
            "source": pa.array([spec.source] * n),
            "uri": uri,
            "probe_status": pa.array(["ok"] * n),
            "start_s": pa.array(start),
            "end_s": pa.array(end),
            "duration_s": pa.array(np.round(end - start, 6)),
            "start_frame": pa.array(np.round(start * fps_c).astype(np.int64)),
            "end_frame": pa.array(np.round(end * fps_c).astype(np.int64)),
            "fps": pa.array(fps_c),
            "viewpoint": view,
            "segmentation": pa.array(["annotation"] * n),
            "external_id": ext,
            "source_video_id": vid_arr,
            "taxonomy_l1": tax_cols[0],
            "taxonomy_l2": tax_cols[1],
            "taxonomy_l3": tax_cols[2],
            "quality_score": pa.array(quality),
            "annotation_count": pa.array(np.ones(n, dtype=np.int32)),
            "short_caption": short,
            "long_caption": long,
            "semantic_motion": motion,
            "motion_sequence": sequence,
            "environment": env,
            "subject_sex": sex,
            "text_truncated": pa.array(np.zeros(n, dtype=bool)),
            # the video metadata the clips stage copies onto each clip
            **{
                col: videos[src].take(pa.array(video_of))
                for col, src in schemas.CLIP_VIDEO_FIELDS.items()
            },
            "run_id": pa.array(["corpus"] * n),
        }
        ann_cols = {
            "annotation_id": pc.binary_join_element_wise(pa.array(["ann"] * n), clip_ids, ":"),
            "clip_id": clip_ids,
            "video_id": vid_arr,
            "source": clip_cols["source"],
            "annotation_source": pa.array([f"/corpus/{spec.source}/annotations.jsonl"] * n),
            "line_number": pa.array(np.arange(produced, produced + n, dtype=np.int64) + 1),
            "external_id": ext,
            "video_ref": uri,
            "uri": uri,
            "video_found": pa.array(np.ones(n, dtype=bool)),
            "video_status": pa.array(["ok"] * n),
            "start_s": clip_cols["start_s"],
            "end_s": clip_cols["end_s"],
            "span_kind": pa.array(["annotated"] * n),
            "viewpoint": view,
            "quality_score": clip_cols["quality_score"],
            "text_truncated": clip_cols["text_truncated"],
            "short_caption": short,
            "long_caption": long,
            "semantic_motion": motion,
            "motion_sequence": sequence,
            "environment": env,
            "subject_sex": sex,
            "taxonomy_l1": tax_cols[0],
            "taxonomy_l2": tax_cols[1],
            "taxonomy_l3": tax_cols[2],
            "source_video_id": vid_arr,
            "run_id": clip_cols["run_id"],
        }
        emb_schema = schemas.clip_embeddings_schema(spec.dim)
        key = model_key(spec.model_id)
        emb_cols = {
            "embedding_id": pc.binary_join_element_wise(clip_ids, pa.array([key] * n), ":"),
            "clip_id": clip_ids,
            "model_id": pa.array([spec.model_id] * n),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), spec.dim),
            "keyframe_ids": pa.array([[]] * n, type=pa.list_(pa.string())),
            "keyframe_vectors": pa.array([[]] * n, type=pa.list_(schemas.vector_type(spec.dim))),
            **{
                name: clip_cols[name] for name in schemas.SEARCH_METADATA_NAMES if name in clip_cols
            },
            "embedded_at": pa.array([now] * n, type=pa.timestamp("us", tz="UTC")),
            "run_id": clip_cols["run_id"],
        }
        yield Batch(
            _table(schemas.VIDEOS, videos, nv),
            _table(schemas.CLIPS, clip_cols, n),
            _table(schemas.ANNOTATIONS, ann_cols, n),
            _table(emb_schema, emb_cols, n),
            vectors,
        )
        produced += n
        video_no += nv
        b += 1


def _table(schema: pa.Schema, columns: dict[str, pa.Array], n: int) -> pa.Table:
    arrays = [
        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


@dataclasses.dataclass
class WriteStats:
    clips: int = 0
    videos: int = 0
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def write_corpus(
    lh: Lakehouse, spec: CorpusSpec, *, embeddings: bool = True, log: bool = True
) -> WriteStats:
    """Generate ``spec`` and write it batch by batch through ``Lakehouse.upsert``."""
    stats = WriteStats()
    t0 = time.perf_counter()
    for batch in batches(spec):
        tables = {
            "videos": batch.videos,
            "annotations": batch.annotations,
            "clips": batch.clips,
        }
        if embeddings:
            tables[CLIP_TABLE] = batch.embeddings
        for name, table in tables.items():
            start = time.perf_counter()
            lh.upsert(name, table, update=False, schema=table.schema)
            stats.seconds[name] = stats.seconds.get(name, 0.0) + time.perf_counter() - start
        stats.clips += batch.clips.num_rows
        stats.videos += batch.videos.num_rows
        if log:
            rate = stats.clips / (time.perf_counter() - t0)
            print(f"  wrote {stats.clips:,} clips ({rate:,.0f} clips/s)", flush=True)
    return stats
