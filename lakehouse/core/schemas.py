"""Arrow schemas of the lakehouse tables, one Lance dataset each, and every table's name.

The key column of every table carries Lance's unenforced-primary-key metadata, so concurrent
``merge_insert`` calls of the same new keys cannot both insert (see DEVELOPERS.md pitfalls).
Column meanings are documented in ``docs/tables.md``.
"""

from __future__ import annotations

import pyarrow as pa

PK_METADATA = {"lance-schema:unenforced-primary-key": "true"}

# The names of the tables whose name other modules need (the rest are named by their schemas'
# keys in TABLES below: "sources", "videos", "clips", "annotations", "keyframes", "quarantine").
CLIP_TABLE = "clip_embeddings"
TEXT_TABLE = "text_embeddings"
VECTOR_TABLES = (CLIP_TABLE, TEXT_TABLE)
SIGNALS_TABLE = "signals"
SIGNAL_FRAMES_TABLE = "signal_frames"
VIEWPOINT_TABLE = "viewpoint_predictions"
DUPLICATES_TABLE = "near_duplicates"
SUBSETS_TABLE = "subsets"
SUBSET_CLIPS_TABLE = "subset_clips"
# The publication record (one row: which version of every table readers see); an internal
# dataset, not a table (its name starts with "_").
PUBLICATION = "_publication"

# What each publication step publishes. The ingest and embedding stages write PIPELINE_TABLES;
# subsets and subset_clips are written whole by one step (their commit marker is the subsets
# row) and are read at their latest version. The derived curation tables are published by the
# steps that write them: the signals of a source once their range check passed
# (privacy_status decides what an export lets through, so a bad row must not reach readers),
# the viewpoint predictions and near-duplicate clusters once the cluster check passed.
PIPELINE_TABLES = (
    "sources",
    "videos",
    "annotations",
    "clips",
    "keyframes",
    "quarantine",
    CLIP_TABLE,
    TEXT_TABLE,
)
SIGNAL_TABLES = (SIGNALS_TABLE, SIGNAL_FRAMES_TABLE)
CURATION_TABLES = (VIEWPOINT_TABLE, DUPLICATES_TABLE)


def _key(name: str) -> pa.Field:
    return pa.field(name, pa.string(), nullable=False, metadata=PK_METADATA)


def _ts(name: str) -> pa.Field:
    return pa.field(name, pa.timestamp("us", tz="UTC"))


SOURCES = pa.schema(
    [
        _key("source"),
        pa.field("uri", pa.string()),
        pa.field("annotation_files", pa.list_(pa.string())),
        pa.field("viewpoint", pa.string()),
        pa.field("settings_json", pa.string()),
        _ts("registered_at"),
        _ts("updated_at"),
    ]
)

VIDEOS = pa.schema(
    [
        _key("video_id"),
        pa.field("source", pa.string()),
        pa.field("uri", pa.string()),
        pa.field("relpath", pa.string()),
        pa.field("aliases", pa.list_(pa.string())),
        pa.field("sha256", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("mtime", pa.float64()),
        pa.field("container", pa.string()),
        pa.field("codec", pa.string()),
        pa.field("pix_fmt", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("fps", pa.float64()),
        pa.field("num_frames", pa.int64()),
        pa.field("duration_s", pa.float64()),
        pa.field("start_time_s", pa.float64()),
        pa.field("rotation", pa.int32()),
        pa.field("has_audio", pa.bool_()),
        pa.field("audio_codec", pa.string()),
        pa.field("bit_rate", pa.int64()),
        pa.field("is_vfr", pa.bool_()),
        pa.field("gop_s", pa.float64()),
        pa.field("keyframe_times_s", pa.list_(pa.float64())),
        pa.field("scene_cuts_s", pa.list_(pa.float64())),
        pa.field("decode_verified", pa.bool_()),
        pa.field("probe_version", pa.string()),
        _ts("probed_at"),
        pa.field("run_id", pa.string()),
    ]
)

# Annotation text fields copied onto each clip (``clips`` and so ``clip_facts``).
CLIP_TEXT_FIELDS = (
    "short_caption",
    "long_caption",
    "semantic_motion",
    "motion_sequence",
    "environment",
    "subject_sex",
    "subject_appearance",
    "spatial_progression",
    "gait",
    "expression",
)

CLIPS = pa.schema(
    [
        _key("clip_id"),
        pa.field("video_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("uri", pa.string()),
        pa.field("probe_status", pa.string()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("duration_s", pa.float64()),
        pa.field("start_frame", pa.int64()),
        pa.field("end_frame", pa.int64()),
        pa.field("fps", pa.float64()),
        pa.field("viewpoint", pa.string()),
        pa.field("segmentation", pa.string()),
        pa.field("external_id", pa.string()),
        pa.field("source_video_id", pa.string()),
        pa.field("taxonomy_l1", pa.string()),
        pa.field("taxonomy_l2", pa.string()),
        pa.field("taxonomy_l3", pa.string()),
        pa.field("quality_score", pa.float64()),
        # The clip's annotation text (first non-null value over its annotation rows), kept here
        # so that clip_facts reads one table per clip instead of aggregating ``annotations``.
        pa.field("annotation_count", pa.int32()),
        *[pa.field(name, pa.string()) for name in CLIP_TEXT_FIELDS],
        pa.field("text_truncated", pa.bool_()),
        # The video's metadata clip_facts shows (null when the video is not probed), copied from
        # ``videos`` by the clips stage, so that clip_facts joins no table a query does not read
        # (a join with ``videos`` kept DuckDB from dropping the unused ones; bench/README.md).
        *[pa.field(name, pa.string()) for name in ("container", "codec")],
        *[pa.field(name, pa.int32()) for name in ("width", "height", "rotation")],
        pa.field("has_audio", pa.bool_()),
        pa.field("video_size_bytes", pa.int64()),
        pa.field("video_duration_s", pa.float64()),
        pa.field("video_num_frames", pa.int64()),
        pa.field("run_id", pa.string()),
    ]
)

# clips column -> videos column, for the video metadata the clips stage copies onto each clip
CLIP_VIDEO_FIELDS = {
    "container": "container",
    "codec": "codec",
    "width": "width",
    "height": "height",
    "rotation": "rotation",
    "has_audio": "has_audio",
    "video_size_bytes": "size_bytes",
    "video_duration_s": "duration_s",
    "video_num_frames": "num_frames",
}

# Typed annotation fields; everything the annotation file held is also kept verbatim in
# ``fields_json``, so no field is ever lost.
ANNOTATION_TEXT_FIELDS = (
    "short_caption",
    "long_caption",
    "semantic_motion",
    "motion_sequence",
    "environment",
    "subject_id",
    "subject_sex",
    "subject_ip",
    "subject_appearance",
    "spatial_progression",
    "gait",
    "expression",
    "taxonomy_l1",
    "taxonomy_l2",
    "taxonomy_l3",
    "text_panel_note",
    "source_video_id",
)

ANNOTATIONS = pa.schema(
    [
        _key("annotation_id"),
        pa.field("clip_id", pa.string()),
        pa.field("video_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("annotation_source", pa.string()),
        pa.field("line_number", pa.int64()),
        pa.field("external_id", pa.string()),
        pa.field("video_ref", pa.string()),
        pa.field("uri", pa.string()),
        pa.field("video_found", pa.bool_()),
        pa.field("video_status", pa.string()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("span_kind", pa.string()),
        pa.field("viewpoint", pa.string()),
        pa.field("quality_score", pa.float64()),
        pa.field("text_truncated", pa.bool_()),
        *[pa.field(name, pa.string()) for name in ANNOTATION_TEXT_FIELDS],
        pa.field("fields_json", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)

KEYFRAMES = pa.schema(
    [
        _key("keyframe_id"),
        pa.field("clip_id", pa.string()),
        pa.field("video_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("idx", pa.int32()),
        pa.field("time_s", pa.float64()),
        pa.field("clip_time_s", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("jpeg", pa.binary()),
        pa.field("sampler", pa.string()),
        pa.field("settings", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)

QUARANTINE = pa.schema(
    [
        _key("quarantine_id"),
        pa.field("source", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("input_uri", pa.string()),
        pa.field("locator", pa.string()),
        pa.field("reason_code", pa.string()),
        pa.field("message", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("mtime", pa.float64()),
        _ts("quarantined_at"),
        pa.field("run_id", pa.string()),
    ]
)

# Clip metadata copied next to every vector, so a search can prefilter on it inside Lance and
# return its hits without a join. The embedding stages refresh these when clips change.
SEARCH_METADATA = [
    pa.field("source", pa.string()),
    pa.field("video_id", pa.string()),
    pa.field("uri", pa.string()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
    pa.field("duration_s", pa.float64()),
    pa.field("viewpoint", pa.string()),
    pa.field("taxonomy_l1", pa.string()),
    pa.field("taxonomy_l2", pa.string()),
    pa.field("taxonomy_l3", pa.string()),
    pa.field("quality_score", pa.float64()),
    pa.field("short_caption", pa.string()),
]
SEARCH_METADATA_NAMES = tuple(f.name for f in SEARCH_METADATA)


def vector_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def clip_embeddings_schema(dim: int) -> pa.Schema:
    """One row per (clip, CLIP model): the pooled vector and the per-keyframe vectors."""
    return pa.schema(
        [
            _key("embedding_id"),
            pa.field("clip_id", pa.string()),
            pa.field("model_id", pa.string()),
            pa.field("vector", vector_type(dim)),
            pa.field("keyframe_ids", pa.list_(pa.string())),
            pa.field("keyframe_vectors", pa.list_(vector_type(dim))),
            *SEARCH_METADATA,
            _ts("embedded_at"),
            pa.field("run_id", pa.string()),
        ]
    )


def text_embeddings_schema(dim: int) -> pa.Schema:
    """One row per (clip, caption field, text model)."""
    return pa.schema(
        [
            _key("embedding_id"),
            pa.field("clip_id", pa.string()),
            pa.field("field", pa.string()),
            pa.field("text", pa.string()),
            pa.field("text_hash", pa.string()),
            pa.field("model_id", pa.string()),
            pa.field("vector", vector_type(dim)),
            *SEARCH_METADATA,
            _ts("embedded_at"),
            pa.field("run_id", pa.string()),
        ]
    )


# Tables whose vector width depends on the model; the stored dataset's schema wins, these
# defaults only describe a table that does not exist yet.
DYNAMIC_TABLES = {
    CLIP_TABLE: lambda: clip_embeddings_schema(512),
    TEXT_TABLE: lambda: text_embeddings_schema(384),
}

SUBSETS = pa.schema(
    [
        _key("subset_version_id"),  # <name>@<version>
        pa.field("name", pa.string()),
        pa.field("version", pa.int32()),
        pa.field("description", pa.string()),
        pa.field("definition_path", pa.string()),
        pa.field("sql_text", pa.string()),
        pa.field("sql_hash", pa.string()),
        pa.field("settings_json", pa.string()),
        pa.field("params_json", pa.string()),
        pa.field("table_versions_json", pa.string()),
        pa.field("views_json", pa.string()),
        pa.field("model_ids_json", pa.string()),
        pa.field("pin_tag", pa.string()),
        pa.field("row_count", pa.int64()),
        pa.field("clips_hash", pa.string()),
        _ts("created_at"),
        pa.field("run_id", pa.string()),
    ]
)

SUBSET_CLIPS = pa.schema(
    [
        _key("subset_clip_id"),  # <name>@<version>:<clip_id>
        pa.field("name", pa.string()),
        pa.field("version", pa.int32()),
        pa.field("position", pa.int32()),
        pa.field("clip_id", pa.string()),
        pa.field("semantic_score", pa.float64()),
        pa.field("stratum", pa.string()),
    ]
)

# Human-centric signals (lakehouse.enrich.signals): one row per (clip, signal model); fractions are
# of the clip's analysed frames (its keyframe times), areas are fractions of the frame.
SIGNALS = pa.schema(
    [
        _key("signal_id"),  # <clip_id>:<model key>
        pa.field("clip_id", pa.string()),
        pa.field("video_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("model_id", pa.string()),
        pa.field("settings", pa.string()),
        pa.field("frame_source", pa.string()),
        pa.field("keyframe_ids", pa.list_(pa.string())),
        pa.field("frames", pa.int32()),
        pa.field("hands_frac", pa.float64()),
        pa.field("hands_0_frac", pa.float64()),
        pa.field("hands_1_frac", pa.float64()),
        pa.field("hands_2_frac", pa.float64()),
        pa.field("left_hand_frac", pa.float64()),
        pa.field("right_hand_frac", pa.float64()),
        pa.field("mean_hand_area", pa.float64()),
        pa.field("hand_motion", pa.float64()),
        pa.field("person_frac", pa.float64()),
        pa.field("full_body_frac", pa.float64()),
        pa.field("body_motion", pa.float64()),
        pa.field("max_persons", pa.int32()),
        pa.field("face_frac", pa.float64()),
        pa.field("max_faces", pa.int32()),
        pa.field("max_face_area", pa.float64()),
        pa.field("max_face_score", pa.float64()),
        pa.field("privacy_status", pa.string()),
        pa.field("sharpness", pa.float64()),
        pa.field("min_sharpness", pa.float64()),
        pa.field("brightness", pa.float64()),
        pa.field("contrast", pa.float64()),
        pa.field("motion_score", pa.float64()),
        pa.field("camera_motion", pa.float64()),
        pa.field("static_camera", pa.bool_()),
        _ts("computed_at"),
        pa.field("run_id", pa.string()),
    ]
)

_BOX = pa.list_(pa.float32(), 4)

# What the detectors found in each analysed frame, kept for later use (landmarks, boxes).
SIGNAL_FRAMES = pa.schema(
    [
        _key("frame_signal_id"),  # <clip_id>:<idx>:<model key>
        pa.field("clip_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("model_id", pa.string()),
        pa.field("keyframe_id", pa.string()),
        pa.field("idx", pa.int32()),
        pa.field("time_s", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("hand_count", pa.int32()),
        pa.field("hand_sides", pa.list_(pa.string())),
        pa.field("hand_scores", pa.list_(pa.float32())),
        pa.field("hand_boxes", pa.list_(_BOX)),
        pa.field("hand_landmarks", pa.list_(pa.list_(pa.float32(), 63))),  # 21 × (x, y, z)
        pa.field("pose_landmarks", pa.list_(pa.float32(), 132)),  # 33 × (x, y, z, visibility)
        pa.field("full_body", pa.bool_()),
        pa.field("face_count", pa.int32()),
        pa.field("face_scores", pa.list_(pa.float32())),
        pa.field("face_boxes", pa.list_(_BOX)),
        pa.field("sharpness", pa.float64()),
        pa.field("brightness", pa.float64()),
        pa.field("contrast", pa.float64()),
        pa.field("run_id", pa.string()),
    ]
)

# One row per clip: the viewpoint classifier's prediction (lakehouse.enrich.viewpoint).
VIEWPOINT_PREDICTIONS = pa.schema(
    [
        _key("clip_id"),
        pa.field("source", pa.string()),
        pa.field("model_id", pa.string()),
        pa.field("predicted_viewpoint", pa.string()),
        pa.field("p_ego", pa.float64()),
        pa.field("confidence", pa.float64()),
        pa.field("labelled_viewpoint", pa.string()),
        pa.field("held_out", pa.bool_()),  # a labelled clip predicted by a model not trained on it
        pa.field("run_id", pa.string()),
    ]
)

# One row per clip with an embedding: its near-duplicate cluster (lakehouse.enrich.duplicates).
NEAR_DUPLICATES = pa.schema(
    [
        _key("clip_id"),
        pa.field("source", pa.string()),
        pa.field("cluster_id", pa.string()),  # the representative's clip_id
        pa.field("near_duplicate_of", pa.string()),  # null for the representative
        pa.field("is_representative", pa.bool_()),
        pa.field("similarity", pa.float64()),  # to the representative
        pa.field("cluster_size", pa.int32()),
        pa.field("embedding", pa.string()),  # caption | visual
        pa.field("model_id", pa.string()),
        pa.field("threshold", pa.float64()),
        pa.field("run_id", pa.string()),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "sources": SOURCES,
    "videos": VIDEOS,
    "clips": CLIPS,
    "annotations": ANNOTATIONS,
    "keyframes": KEYFRAMES,
    "quarantine": QUARANTINE,
    SUBSETS_TABLE: SUBSETS,
    SUBSET_CLIPS_TABLE: SUBSET_CLIPS,
    SIGNALS_TABLE: SIGNALS,
    SIGNAL_FRAMES_TABLE: SIGNAL_FRAMES,
    VIEWPOINT_TABLE: VIEWPOINT_PREDICTIONS,
    DUPLICATES_TABLE: NEAR_DUPLICATES,
}


def primary_key(schema: pa.Schema) -> str:
    """The name of the schema's primary-key column."""
    for f in schema:
        if f.metadata and f.metadata.get(b"lance-schema:unenforced-primary-key") == b"true":
            return f.name
    raise ValueError("schema has no primary-key field")


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
