"""Per-frame detectors: MediaPipe hands, pose and faces, and simple image-quality measures.

MediaPipe 0.10.14 ships its models inside the wheel (``mediapipe/modules/…``), so everything runs
offline. Its "solutions" graphs run in static-image mode: keyframes are seconds apart, so
tracking from one to the next would only carry errors over. Only models present in the wheel are
used: palm detection + hand landmarks "full" (``model_complexity=1``), pose detection + pose
landmarks "full" (``model_complexity=1``; the lite and heavy pose models would be downloaded at
run time) and the full-range face detector (faces up to about 5 m away, as in third-person
video). The ``model_id`` names the MediaPipe version, these models and a hash of their files.

MediaPipe's handedness assumes a mirrored (selfie) image; video frames are not mirrored, so its
"Left" is the person's right hand and the labels are swapped here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import ModelUnavailableError

if TYPE_CHECKING:
    import numpy as np

    from lakehouse.core.config import SignalSettings

# bump when the per-frame analysis or the per-clip summary changes meaning
SIGNALS_VERSION = 1
MEDIAPIPE_VERSION = "0.10.14"
MODEL_FILES = (
    "modules/palm_detection/palm_detection_full.tflite",
    "modules/hand_landmark/hand_landmark_full.tflite",
    "modules/pose_detection/pose_detection.tflite",
    "modules/pose_landmark/pose_landmark_full.tflite",
    "modules/face_detection/face_detection_full_range_sparse.tflite",
)
INSTALL_HINT = (
    f"install mediapipe=={MEDIAPIPE_VERSION} (pip install 'video-lakehouse[signals]'), the last "
    "release that ships its hand, pose and face models in the wheel"
)
# pose landmarks that must be visible for a "full body": shoulders, hips, knees, ankles
FULL_BODY_LANDMARKS = (11, 12, 23, 24, 25, 26, 27, 28)
QUALITY_SHORT_SIDE = 224  # sharpness is measured at one scale, whatever the frame size
MOTION_WIDTH = 160


def mediapipe_dir() -> Path | None:
    """The installed mediapipe package folder (found without importing it), or None."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_signals_model() -> str:
    """The ``model_id`` of the signal models, e.g.
    ``mediapipe:0.10.14:hands-full+pose-full+face-full-range:sha256-<12 hex>:signals-v1``.

    Raises :class:`ModelUnavailableError` when MediaPipe or one of its model files is missing.
    """
    folder = mediapipe_dir()
    if folder is None:
        raise ModelUnavailableError(f"MediaPipe is not installed; {INSTALL_HINT}.")
    version = importlib.metadata.version("mediapipe")
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        path = folder / name
        if not path.is_file():
            raise ModelUnavailableError(
                f"MediaPipe {version} has no {name} in its package; {INSTALL_HINT}."
            )
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return (
        f"mediapipe:{version}:hands-full+pose-full+face-full-range:"
        f"sha256-{digest.hexdigest()[:12]}:signals-v{SIGNALS_VERSION}"
    )


FACE_GRAPH = "mediapipe/modules/face_detection/face_detection_full_range_cpu.binarypb"
FACE_THRESHOLD = (
    "facedetectionfullrange__facedetection__TensorsToDetectionsCalculator.min_score_thresh"
)


def face_detector(min_confidence: float) -> Any:
    """MediaPipe's full-range face detector keeping detections that score ``min_confidence`` or
    more; ``.process(rgb).detections`` as from ``solutions.face_detection.FaceDetection``.

    That solution's own ``min_detection_confidence`` has no effect in MediaPipe 0.10.14: it is
    set on the expanded graph's options, which nothing reads, and the graph file's threshold
    (0.6) applies whatever is asked (tests/test_privacy.py). Here the threshold is set on the
    calculator that applies it."""
    import_mediapipe()
    from mediapipe.python.solution_base import SolutionBase

    return SolutionBase(
        binary_graph_path=FACE_GRAPH,
        calculator_params={FACE_THRESHOLD: float(min_confidence)},
        outputs=["detections"],
    )


def import_mediapipe() -> Any:
    """Import MediaPipe, or say how to install it."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # protobuf 4.25 on MediaPipe's calls
            import mediapipe as mp
    except ImportError as exc:  # installed but broken (protobuf 5+, a missing library)
        raise ModelUnavailableError(
            f"MediaPipe is installed but does not import ({exc}); {INSTALL_HINT}."
        ) from None
    # MediaPipe's solutions call protobuf's deprecated GetPrototype on every result
    warnings.filterwarnings("ignore", message=".*GetPrototype", category=UserWarning)
    return mp


@dataclass
class FrameResult:
    """What the detectors found in one frame. Coordinates are fractions of the frame's width and
    height (boxes are ``[x0, y0, x1, y1]``)."""

    width: int
    height: int
    hands: list[dict[str, Any]] = field(default_factory=list)  # side, score, box, landmarks
    pose: np.ndarray | None = None  # (33, 4): x, y, z, visibility
    full_body: bool = False
    faces: list[dict[str, Any]] = field(default_factory=list)  # score, box
    sharpness: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    small_gray: np.ndarray | None = None  # MOTION_WIDTH wide, float32, for motion between frames

    @property
    def max_face_area(self) -> float:
        return max((box_area(f["box"]) for f in self.faces), default=0.0)


def box_area(box: list[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


class FrameAnalyzer:
    """MediaPipe hands, pose and face detection plus quality measures, one frame at a time.

    Not thread-safe (MediaPipe graphs keep state); use one analyzer per thread or process.
    """

    def __init__(self, settings: SignalSettings):
        self.model_id = resolve_signals_model()
        mp = import_mediapipe()
        self.settings = settings
        solutions = mp.solutions
        self._hands = solutions.hands.Hands(
            static_image_mode=True,
            max_num_hands=2,
            model_complexity=1,
            min_detection_confidence=settings.hand_min_confidence,
        )
        self._pose = solutions.pose.Pose(
            static_image_mode=True,
            model_complexity=1,
            min_detection_confidence=settings.pose_min_confidence,
        )
        self._faces = face_detector(settings.face_min_confidence)

    def __enter__(self) -> FrameAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for graph in (self._hands, self._pose, self._faces):
            graph.close()

    def analyze(self, rgb: np.ndarray) -> FrameResult:
        """Run every detector on one RGB uint8 frame of shape (height, width, 3)."""
        import numpy as np

        rgb = np.ascontiguousarray(rgb)
        rgb.flags.writeable = False  # lets MediaPipe read the buffer without a copy
        height, width = rgb.shape[:2]
        result = FrameResult(width, height)
        result.hands = self.hands(rgb)
        pose = self._pose.process(rgb).pose_landmarks
        if pose is not None:
            points = np.array(
                [[p.x, p.y, p.z, p.visibility] for p in pose.landmark], dtype=np.float32
            )
            result.pose = points
            body = points[list(FULL_BODY_LANDMARKS)]
            inside = (body[:, 0] >= 0) & (body[:, 0] <= 1) & (body[:, 1] >= 0) & (body[:, 1] <= 1)
            result.full_body = bool(np.all(inside & (body[:, 3] >= 0.5)))
        result.faces = self.faces(rgb)
        quality(rgb, result)
        return result

    def hands(self, rgb: np.ndarray) -> list[dict[str, Any]]:
        import numpy as np

        found = self._hands.process(rgb)
        out = []
        for marks, handed in zip(
            found.multi_hand_landmarks or [], found.multi_handedness or [], strict=False
        ):
            points = np.array([[p.x, p.y, p.z] for p in marks.landmark], dtype=np.float32)
            label = handed.classification[0]
            out.append(
                {
                    # MediaPipe labels a mirrored image; these frames are not mirrored
                    "side": "right" if label.label == "Left" else "left",
                    "score": float(label.score),
                    "box": _clip_box(
                        points[:, 0].min(),
                        points[:, 1].min(),
                        points[:, 0].max(),
                        points[:, 1].max(),
                    ),
                    "landmarks": points,
                }
            )
        return out

    def faces(self, rgb: np.ndarray) -> list[dict[str, Any]]:
        found = self._faces.process(rgb).detections or []
        out = []
        for detection in found:
            box = detection.location_data.relative_bounding_box
            out.append(
                {
                    "score": float(detection.score[0]),
                    "box": _clip_box(
                        box.xmin, box.ymin, box.xmin + box.width, box.ymin + box.height
                    ),
                }
            )
        return out


def _clip_box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [float(min(max(v, 0.0), 1.0)) for v in (x0, y0, x1, y1)]


def quality(rgb: np.ndarray, result: FrameResult) -> None:
    """Sharpness (variance of the Laplacian at a 224 px short side), brightness and contrast
    (mean and standard deviation of the grey levels, 0..1) and a small grey copy for motion."""
    import cv2
    import numpy as np

    gray = cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    scale = QUALITY_SHORT_SIDE / min(h, w)
    norm = cv2.resize(
        gray,
        (max(1, round(w * scale)), max(1, round(h * scale))),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    result.sharpness = float(cv2.Laplacian(norm, cv2.CV_64F).var())
    result.brightness = float(gray.mean() / 255.0)
    result.contrast = float(gray.std() / 255.0)
    small_h = max(1, round(h * MOTION_WIDTH / w))
    result.small_gray = cv2.resize(gray, (MOTION_WIDTH, small_h), interpolation=cv2.INTER_AREA)
    result.small_gray = result.small_gray.astype(np.float32)


def frame_motion(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``(difference, camera shift)`` between two small grey frames: the mean absolute grey
    difference (0..1) and the global translation found by phase correlation, in frame widths."""
    import cv2
    import numpy as np

    if a.shape != b.shape:
        b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    difference = float(np.mean(np.abs(a - b)) / 255.0)
    window = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
    return difference, float(np.hypot(dx, dy) / a.shape[1])
