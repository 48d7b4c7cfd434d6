"""Loaded models: CLIP (open_clip) and the caption model (sentence-transformers), each with its
resolved id (:mod:`lakehouse.models.resolve`), encoding batches into unit vectors.

Loading never runs code from a checkpoint: CLIP weights load with ``weights_only`` and the
caption model without remote code; a checkpoint that needs more is refused with a clear error.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import ModelUnavailableError
from lakehouse.models.resolve import (
    CONFIG_DIR,
    ResolvedModel,
    first_line,
    resolve_clip,
    resolve_text,
)

if TYPE_CHECKING:
    from lakehouse.core.config import ModelSettings


def pick_device(setting: str) -> str:
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class ClipModel:
    """A loaded CLIP model with its image transform and tokenizer."""

    resolved: ResolvedModel
    model: Any
    preprocess: Any
    tokenizer: Any
    device: str

    @property
    def model_id(self) -> str:
        assert self.resolved.model_id is not None
        return self.resolved.model_id

    def encode_images(self, batch: Any) -> Any:
        """Normalized image vectors for a batch of preprocessed images (a tensor)."""
        import torch

        with torch.inference_mode():
            vectors = self.model.encode_image(batch.to(self.device))
            return torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()

    def encode_texts(self, texts: list[str]) -> Any:
        import torch

        with torch.inference_mode():
            tokens = self.tokenizer(texts).to(self.device)
            vectors = self.model.encode_text(tokens)
            return torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()


class _NoWeightsWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def load_clip(settings: ModelSettings, resolved: ResolvedModel | None = None) -> ClipModel:
    """Load the configured CLIP model once (raises ModelUnavailableError with the fix)."""
    import open_clip
    import torch

    resolved = (resolved or resolve_clip(settings)).require()
    open_clip.add_model_config(CONFIG_DIR)
    device = pick_device(settings.device)
    arch = settings.clip_arch
    if resolved.is_test_only:
        torch.manual_seed(0)
        pretrained = None
    elif resolved.online:
        pretrained = settings.clip_pretrained
    else:
        pretrained = resolved.location
    quiet = _NoWeightsWarning() if resolved.is_test_only else None
    if quiet:  # open_clip warns that no weights were loaded: that is the test model's point
        logging.getLogger().addFilter(quiet)
    try:
        # weights_only: a checkpoint is tensors; one that needs code to unpickle is refused
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=pretrained, device=device, weights_only=True
        )
    except pickle.UnpicklingError as exc:
        raise ModelUnavailableError(
            f"The CLIP checkpoint {resolved.location} holds more than tensors (code would run to "
            f"load it: {first_line(exc)}); it was not loaded. Use a safetensors file or a plain "
            "state_dict."
        ) from None
    finally:
        if quiet:
            logging.getLogger().removeFilter(quiet)
    model.eval()
    if resolved.online:  # downloaded just now: name it by the file it fetched
        resolved = resolve_clip(settings, check_online=False)
    return ClipModel(resolved, model, preprocess, open_clip.get_tokenizer(arch), device)


@dataclass
class TextModel:
    """A loaded sentence-transformers model."""

    resolved: ResolvedModel
    model: Any

    @property
    def model_id(self) -> str:
        assert self.resolved.model_id is not None
        return self.resolved.model_id

    def encode(self, texts: list[str], batch_size: int = 64) -> Any:
        import numpy as np

        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def load_text(settings: ModelSettings, resolved: ResolvedModel | None = None) -> TextModel:
    """Load the configured caption model once (raises ModelUnavailableError with the fix)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    resolved = (resolved or resolve_text(settings)).require()
    target = resolved.location if not resolved.online else settings.text_model
    try:
        # no remote code; transformers loads .bin weights with torch.load(weights_only=True)
        model = SentenceTransformer(
            target, device=pick_device(settings.device), trust_remote_code=False
        )
    except (pickle.UnpicklingError, OSError) as exc:
        raise ModelUnavailableError(
            f"The text model in {target} could not be loaded safely ({first_line(exc)}); use "
            "safetensors weights (model.safetensors)."
        ) from None
    if resolved.online:
        resolved = resolve_text(settings, check_online=False)
    return TextModel(resolved, model)
