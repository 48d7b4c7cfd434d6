"""Query texts as vectors: the encoders search and the semantic SQL functions share.

Each process loads the configured CLIP and caption models once (cached by their settings) and
embeds a query text with the model that made the stored vectors it is compared to.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import ModelUnavailableError
from lakehouse.models.encoders import ClipModel, TextModel, load_clip, load_text
from lakehouse.models.resolve import resolve_clip, resolve_text

if TYPE_CHECKING:
    import numpy as np

    from lakehouse.core.config import ModelSettings


@cache
def clip_model(settings: ModelSettings) -> ClipModel:
    """The configured CLIP model, loaded once per process."""
    return load_clip(settings)


@cache
def text_model(settings: ModelSettings) -> TextModel:
    """The configured caption model, loaded once per process."""
    return load_text(settings)


def embed_query(settings: ModelSettings, text: str, kind: str) -> tuple[np.ndarray, str]:
    """Embed a query with the configured CLIP (``visual``) or caption (``caption``) model;
    returns the unit vector and the model id."""
    if kind == "visual":
        resolved = resolve_clip(settings)
        if not resolved.available:
            raise ModelUnavailableError(f"Visual search needs CLIP weights: {resolved.message}")
        model: Any = clip_model(settings)
        return model.encode_texts([text])[0], model.model_id
    resolved = resolve_text(settings)
    if not resolved.available:
        raise ModelUnavailableError(f"Caption search needs a text model: {resolved.message}")
    model = text_model(settings)
    return model.encode([text])[0], model.model_id
