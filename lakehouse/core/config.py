"""The one place that decides configuration: lakehouse root, limits, models, folders.

Precedence, lowest first: built-in defaults, a TOML file (``--config``, ``$LAKEHOUSE_CONFIG`` or
``./lakehouse.toml``), environment variables (``LAKEHOUSE_ROOT``, ``DAGSTER_HOME``), then explicit
arguments such as the CLI's ``--root``. No other module reads the environment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lakehouse.core.errors import ConfigError

DEFAULT_ROOT = "./lakehouse_data"
COMPUTE_BACKENDS = ("local", "ray")
CONFIG_FILE_NAME = "lakehouse.toml"
PROJECT_DIR = Path(__file__).resolve().parents[2]  # lakehouse/core/config.py -> the project

# Container formats PyAV can read that people store video in. Used only to decide which files
# that are *not* videos by content are worth a quarantine row (a text file named .mp4 is
# reported; a README beside the videos is silently ignored).
VIDEO_EXTENSIONS = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".mpg",
    ".mpeg",
    ".ts",
    ".mts",
    ".m2ts",
    ".flv",
    ".wmv",
    ".asf",
    ".3gp",
    ".ogv",
    ".vob",
    ".y4m",
    ".h264",
    ".hevc",
    ".265",
    ".264",
)


@dataclass(frozen=True)
class IngestSettings:
    """Discovery, probing and segmentation."""

    workers: int = 2
    # per-file time limit: probe_timeout_s, or for a long video (by its header's duration)
    # probe_seconds_per_video_second of each second of it, never past probe_max_timeout_s
    probe_timeout_s: float = 120.0
    probe_seconds_per_video_second: float = 1.0
    probe_max_timeout_s: float = 6 * 3600.0
    worker_memory_mb: int = 4096
    verify_decode: bool = True
    scene_threshold: float = 0.1
    scene_sample_fps: float = 30.0
    min_clip_s: float = 2.0
    max_clip_s: float = 30.0
    fixed_window_s: float = 10.0
    max_decode_errors: int = 0
    # memory of the sort that groups a source's annotations into clips (spills to disk past it)
    sort_memory_mb: int = 512


@dataclass(frozen=True)
class KeyframeSettings:
    """How many frames to keep per clip and how to store them."""

    interval_s: float = 2.0
    max_per_clip: int = 8
    short_side: int = 224
    jpeg_quality: int = 80
    seek_overhead_frames: int = 12
    timeout_s: float = 600.0

    def fingerprint(self) -> str:
        """A short hash of the settings that change which frames are stored."""
        key = f"{self.interval_s}|{self.max_per_clip}|{self.short_side}|{self.jpeg_quality}"
        return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SqlSettings:
    """Limits for user SQL."""

    memory_limit: str = "2GB"
    temp_limit: str = "4GB"  # disk a query may spill to past its memory limit
    timeout_s: float = 120.0
    threads: int = 2
    max_result_mb: int = 1024  # a result larger than this is refused (add a LIMIT)
    # the scalar indexes of the SQL tables take in new rows once these are more than this share
    # of a table (before that, queries scan them): a 1% increment pays no index refresh
    index_lag_fraction: float = 0.05
    process_memory_mb: int = 8192  # address-space limit of an isolated query's process
    pushdown: bool = (
        True  # push caption LIKE/contains filters into Lance (lakehouse.query.pushdown)
    )
    mirror: bool = True  # publish a Parquet copy of clips that SQL scans (lakehouse.storage.mirror)


@dataclass(frozen=True)
class ModelSettings:
    """Which models embed clips and captions (see ``lakehouse models``)."""

    clip_arch: str = "ViT-B-32"
    clip_pretrained: str = "laion2b_s34b_b79k"
    clip_checkpoint: str | None = None
    text_model: str = "all-MiniLM-L6-v2"
    text_model_path: str | None = None
    text_fields: tuple[str, ...] = (
        "short_caption",
        "long_caption",
        "semantic_motion",
        "motion_sequence",
    )
    device: str = "auto"
    batch_size: int = 32
    allow_download: bool = True


@dataclass(frozen=True)
class SearchSettings:
    """Semantic search: when to build an ANN index and how to query it."""

    ann_min_rows: int = 100_000
    exact_max_rows: int = 50_000
    nprobes: int = 20
    refine_factor: int = 10
    query_parallelism: int = 0
    cache_mb: int = 1024
    rrf_k: int = 60


@dataclass(frozen=True)
class SignalSettings:
    """Hand, body, face and quality signals, viewpoint prediction and near-duplicates."""

    # "video": decode the keyframe times again from the source at ``short_side`` (faces of a few
    # percent of the frame are missed on 224 px thumbnails); "keyframes": the stored thumbnails
    frame_source: str = "video"
    short_side: int = 480
    hand_min_confidence: float = 0.5
    pose_min_confidence: float = 0.5
    # the threshold MediaPipe's face detector applied whatever was asked, until the lakehouse set
    # it itself (lakehouse.media.detectors.face_detector): the default keeps what signals meant
    face_min_confidence: float = 0.6
    # a clip whose only face detections score below this needs a person's review
    face_review_score: float = 0.8
    # below this camera motion (frame widths per second) a clip counts as a static camera
    static_camera_motion: float = 0.02
    # near-duplicates: cosine similarity of "caption" (mean caption vector) or "visual" (CLIP)
    # embeddings; "auto" takes visual when trained CLIP vectors exist, else caption
    duplicate_embedding: str = "auto"
    duplicate_threshold: float = 0.95
    # the viewpoint classifier trains only with at least this many labelled clips per class
    viewpoint_min_per_class: int = 4

    def fingerprint(self) -> str:
        """A short hash of the settings that change per-clip signal values."""
        key = (
            f"{self.frame_source}|{self.short_side}|{self.hand_min_confidence}|"
            f"{self.pose_min_confidence}|{self.face_min_confidence}|{self.face_review_score}|"
            f"{self.static_camera_motion}"
        )
        return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ComputeSettings:
    """Where the heavy per-item work (probe, keyframes, CLIP embeddings) runs."""

    backend: str = "local"  # "local": supervised worker processes; "ray": Ray tasks
    ray_address: str = ""  # "" joins the Ray runtime already started in this process, or
    #                        starts a local one; "auto" or "ray://host:10001" joins a cluster
    ray_cpus_per_task: float = 1.0
    max_in_flight: int = 0  # tasks submitted at once on Ray; 0: twice the cluster's CPUs


@dataclass(frozen=True)
class Config:
    """Everything a lakehouse run needs to know; build it with :meth:`Config.load`."""

    root: str = DEFAULT_ROOT
    dagster_home: str | None = None
    storage_options: dict[str, str] = field(default_factory=dict)
    subset_dirs: tuple[str, ...] = ()
    ingest: IngestSettings = field(default_factory=IngestSettings)
    keyframes: KeyframeSettings = field(default_factory=KeyframeSettings)
    sql: SqlSettings = field(default_factory=SqlSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    signals: SignalSettings = field(default_factory=SignalSettings)
    compute: ComputeSettings = field(default_factory=ComputeSettings)

    @property
    def is_local(self) -> bool:
        """True when the root is a folder on this machine rather than an object store."""
        return "://" not in self.root or self.root.startswith("file://")

    @property
    def dagster_home_path(self) -> Path:
        """Where Dagster keeps run history for this lakehouse (created on demand)."""
        if self.dagster_home:
            return Path(self.dagster_home)
        if self.is_local:
            return Path(_strip_file_scheme(self.root)) / ".dagster"
        digest = hashlib.sha256(self.root.encode()).hexdigest()[:12]
        return Path.home() / ".cache" / "video-lakehouse" / f"dagster-{digest}"

    @property
    def sql_dirs(self) -> dict[str, Path]:
        """The project's SQL folders."""
        return {"views": PROJECT_DIR / "sql" / "views", "subsets": PROJECT_DIR / "sql" / "subsets"}

    @classmethod
    def load(
        cls,
        *,
        root: str | os.PathLike[str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> Config:
        """Build the configuration from defaults, a TOML file, the environment and arguments."""
        env = dict(os.environ) if env is None else env
        data: dict[str, Any] = {}
        path = config_file or env.get("LAKEHOUSE_CONFIG") or None
        if path is None and Path(CONFIG_FILE_NAME).is_file():
            path = CONFIG_FILE_NAME
        if path is not None:
            data = _read_toml(Path(path))
        if env.get("LAKEHOUSE_ROOT"):
            data["root"] = env["LAKEHOUSE_ROOT"]
        if env.get("DAGSTER_HOME") and "dagster_home" not in data:
            data["dagster_home"] = env["DAGSTER_HOME"]
        if root is not None:
            data["root"] = os.fspath(root)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build from a plain mapping (the TOML layout); unknown keys are an error."""
        sections = {
            "ingest": IngestSettings,
            "keyframes": KeyframeSettings,
            "sql": SqlSettings,
            "models": ModelSettings,
            "search": SearchSettings,
            "signals": SignalSettings,
            "compute": ComputeSettings,
        }
        kwargs: dict[str, Any] = {}
        known = {f.name for f in fields(cls)}
        hints = typing.get_type_hints(cls)
        for key, value in data.items():
            if key not in known:
                raise ConfigError(
                    f"Unknown configuration key {key!r}; valid keys are {sorted(known)}."
                )
            if key in sections and isinstance(value, dict):
                kwargs[key] = _build_section(sections[key], key, value)
            elif key in sections and not isinstance(value, sections[key]):
                raise ConfigError(f"[{key}] must be a table of settings, not {_shown(value)}.")
            elif key in sections:
                kwargs[key] = value
            else:
                kwargs[key] = _typed(key, value, hints[key])
        config = cls(**kwargs)
        if config.compute.backend not in COMPUTE_BACKENDS:
            raise ConfigError(
                f"compute.backend must be one of {list(COMPUTE_BACKENDS)}, "
                f"not {config.compute.backend!r}."
            )
        return replace(config, root=normalize_root(config.root))

    def with_root(self, root: str | os.PathLike[str]) -> Config:
        """A copy pointing at another lakehouse root."""
        return replace(self, root=normalize_root(os.fspath(root)))

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping of every setting (used by ``lakehouse config`` and Dagster)."""
        return dataclasses.asdict(self)


def normalize_root(root: str) -> str:
    """Make a local root absolute; leave object-store URIs (``s3://…``) untouched."""
    if not root:
        raise ConfigError("The lakehouse root is empty; pass --root DIR or set LAKEHOUSE_ROOT.")
    if "://" in root and not root.startswith("file://"):
        return root.rstrip("/")
    try:
        return str(Path(_strip_file_scheme(root)).expanduser().resolve())
    except (RuntimeError, ValueError, OSError) as exc:  # ~nosuchuser, a NUL byte
        raise ConfigError(
            f"The lakehouse root {_shown(root)} is not a usable path ({exc})."
        ) from None


def _strip_file_scheme(root: str) -> str:
    return root[len("file://") :] if root.startswith("file://") else root


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"Configuration file {path} does not exist; check the path.") from None
    except OSError as exc:
        raise ConfigError(f"Configuration file {path} cannot be read ({exc.strerror}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Configuration file {path} is not valid TOML ({exc}); fix it.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Configuration file {path} is not UTF-8 text; fix it.") from None
    data = data.get("lakehouse", data)
    if not isinstance(data, dict):
        raise ConfigError(f"[lakehouse] in {path} must be a table of settings.")
    return data


def _build_section(section_cls: type, name: str, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(section_cls)}
    hints = typing.get_type_hints(section_cls)
    for key in values:
        if key not in known:
            raise ConfigError(
                f"Unknown setting {name}.{_shown(key, quote=False)}; "
                f"valid settings are {sorted(known)}."
            )
    return section_cls(**{k: _typed(f"{name}.{k}", v, hints[k]) for k, v in values.items()})


def _typed(name: str, value: Any, kind: Any) -> Any:
    """``value`` checked against the declared type ``kind`` of the setting ``name``: an int where
    a float goes becomes that float (``interval_s = 2`` is ``2.0``: fingerprints print it), a
    list where a tuple goes that tuple, a path where a string goes its text; any other type is a
    :class:`ConfigError` (TOML's ``true`` is no number, ``"2"`` no integer)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):  # only ``X | None`` is used
        if value is None and type(None) in args:
            return None
        return _typed(name, value, next(a for a in args if a is not type(None)))
    if isinstance(value, os.PathLike) and kind is str:
        value = os.fspath(value)
    if origin is tuple and isinstance(value, list | tuple):
        return tuple(_typed(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value))
    if origin is dict and isinstance(value, dict):
        out = {}
        for key, item in value.items():
            key = _typed(f"a key of {name}", key, args[0])
            out[key] = _typed(f"{name}.{_shown(key, quote=False)}", item, args[1])
        return out
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (bool, int, float, str) and type(value) is kind:
        return value
    wanted = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    what = wanted.get(kind) or (
        "a list of strings" if origin is tuple else "a table of strings" if origin is dict else kind
    )
    raise ConfigError(f"{name} must be {what}, not {_shown(value)}.")


def _shown(value: Any, *, quote: bool = True) -> str:
    """A value as one short line for a message."""
    if isinstance(value, str) and not quote and value.isprintable():
        return value
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
