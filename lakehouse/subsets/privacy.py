"""Privacy at export time: refuse clips not cleared, or blur the faces in the exported video.

``privacy_status`` (per clip, from the ``signals`` stage) is ``clear`` when the face detector
found no face at the clip's keyframe times, ``faces_visible`` for a confident face (or faces in
two or more frames), ``needs_review`` for a single weak detection; a clip without signals has
none. An export with ``privacy="refuse"`` keeps only ``clear`` clips. With ``privacy="blur"``
(WebDataset) every frame of every exported clip goes through :class:`FaceBlurrer` — the
keyframes are seconds apart, so a clip marked clear may still show a face in between — and its
sample records ``privacy_status: "blurred"`` when a face was blurred.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakehouse.core.errors import InputError
from lakehouse.media.detectors import face_detector, resolve_signals_model

if TYPE_CHECKING:
    import numpy as np

PRIVACY_MODES = ("refuse", "blur")


def check_mode(mode: str | None, fmt: str) -> None:
    if mode is None:
        return
    if mode not in PRIVACY_MODES:
        raise InputError(f"Unknown privacy option {mode!r}; use one of {', '.join(PRIVACY_MODES)}.")
    if mode == "blur" and fmt != "webdataset":
        raise InputError(
            "privacy='blur' applies to WebDataset exports (they carry the video); "
            "use privacy='refuse' to leave uncleared clips out of a manifest."
        )


def refusal(status: str | None) -> str | None:
    """Why a clip with this ``privacy_status`` is not exported under ``privacy="refuse"``."""
    if status == "clear":
        return None
    if status is None:
        return "privacy: no signals for this clip yet (run the signals job); not cleared"
    return f"privacy: {status}; only clips whose privacy_status is 'clear' are exported"


class FaceBlurrer:
    """Blurs the faces of consecutive frames of one clip.

    The full-range face detector runs on every frame with a low threshold (a missed face is worse
    than a blurred background patch); each box is grown by ``expand`` on every side and kept for
    ``persist_frames`` more frames, so a face the detector misses for a frame or two stays
    blurred. A box is pixelated to 8 px blocks and then smoothed, which does not invert.
    """

    def __init__(self, min_confidence: float = 0.6, expand: float = 0.25, persist_frames: int = 5):
        resolve_signals_model()  # a clear error when MediaPipe is missing
        self.min_confidence = min_confidence
        self._detector = face_detector(min_confidence)
        self.expand = expand
        self.persist_frames = persist_frames
        self._recent: list[tuple[int, list[float]]] = []  # (frames left, box)
        self.frames = 0
        self.frames_with_faces = 0
        self.faces = 0

    def close(self) -> None:
        self._detector.close()

    def reset(self) -> None:
        """Forget the boxes of the previous clip."""
        self._recent = []

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        import numpy as np

        frame = np.ascontiguousarray(rgb)
        frame.flags.writeable = False
        found = []
        for detection in self._detector.process(frame).detections or []:
            b = detection.location_data.relative_bounding_box
            found.append([b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height])
        self.frames += 1
        self.faces += len(found)
        self.frames_with_faces += bool(found)
        self._recent = [(left - 1, box) for left, box in self._recent if left > 1]
        self._recent += [(self.persist_frames + 1, box) for box in found]
        if not self._recent:
            return rgb
        out = np.array(rgb, copy=True)
        for _, box in self._recent:
            _blur_box(out, box, self.expand)
        return out


def _blur_box(image: np.ndarray, box: list[float], expand: float) -> None:
    import cv2

    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * expand, (y1 - y0) * expand
    left, top = max(0, int((x0 - dx) * w)), max(0, int((y0 - dy) * h))
    right, bottom = min(w, int((x1 + dx) * w) + 1), min(h, int((y1 + dy) * h) + 1)
    if right - left < 2 or bottom - top < 2:
        return
    patch = image[top:bottom, left:right]
    small = cv2.resize(
        patch,
        (max(1, (right - left) // 8), max(1, (bottom - top) // 8)),
        interpolation=cv2.INTER_AREA,
    )
    coarse = cv2.resize(small, (right - left, bottom - top), interpolation=cv2.INTER_NEAREST)
    k = max(3, ((right - left) // 4) | 1)
    image[top:bottom, left:right] = cv2.GaussianBlur(coarse, (k, k), 0)
