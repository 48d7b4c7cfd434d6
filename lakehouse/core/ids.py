"""Deterministic identifiers: videos by content, clips by (video, span), the rest by their parts."""

from __future__ import annotations

import hashlib
import math

VIDEO_ID_HEX = 32
_CHUNK = 1 << 20


def hash_file(path: str) -> str:
    """Full-content SHA-256 of a file (streamed, constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def video_id_from_sha256(sha256_hex: str) -> str:
    """A video's id is the first 128 bits of its content hash: same bytes, same id."""
    return sha256_hex[:VIDEO_ID_HEX]


def video_id_from_uri(uri: str) -> str:
    """Id for a video known only by URI (annotation-only catalogs); prefixed ``u`` (not hex)."""
    return "u" + hashlib.sha256(b"uri\0" + uri.encode()).hexdigest()[: VIDEO_ID_HEX - 1]


def seconds_to_ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "end"
    return str(round(value * 1000))


def clip_id(video_id: str, start_s: float, end_s: float | None) -> str:
    """``<first 20 hex of video_id>-<start ms>-<end ms>``: readable, sortable, deterministic."""
    return f"{video_id[:20]}-{seconds_to_ms(start_s)}-{seconds_to_ms(end_s)}"


def stable_id(*parts: object, length: int = 24) -> str:
    """A short hash of the given parts (for annotation, quarantine and keyframe keys)."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:length]


def model_key(model_id: str) -> str:
    """A short key of a model id, in row keys (``<clip_id>:<model key>``)."""
    return hashlib.sha256(model_id.encode()).hexdigest()[:10]
