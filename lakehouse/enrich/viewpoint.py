"""Predicted viewpoint (``ego`` / ``exo``) per clip, from its hand, body and face signals.

A small classifier (standardised features, logistic regression) is trained on the clips whose
source or annotations say their viewpoint, and predicts the rest. Features are the per-clip
signals only (what the camera sees, not how captions are worded): first-person video shows one
or two large hands and rarely a body or a face; third-person video shows a person, often whole,
and small hands if any.

Labelled clips get an out-of-fold prediction too (``held_out``): folds are grouped by source
video and stratified by label, so a clip is never predicted by a model that saw its own video.
That gives the reported accuracy (:func:`evaluate_viewpoint`) and flags labels that disagree
with the pixels. ``clip_facts`` prefers the label and falls back to the prediction
(``resolved_viewpoint``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.core.schemas import VIEWPOINT_TABLE
from lakehouse.ingest.stage import StageResult
from lakehouse.storage.writes import WriteResult

if TYPE_CHECKING:
    import numpy as np

    from lakehouse.storage.store import Store

TABLE = VIEWPOINT_TABLE
CLASSIFIER_VERSION = 1
LABELS = ("ego", "exo")
FEATURES = (
    "hands_frac",
    "hands_2_frac",
    "mean_hand_area",
    "hand_motion",
    "person_frac",
    "full_body_frac",
    "face_frac",
    "max_face_area",
    "camera_motion",
)


@dataclass
class ViewpointData:
    """The latest signals of every clip, as a feature matrix with labels and groups."""

    clip_ids: list[str]
    sources: list[str]
    labels: list[str | None]
    groups: list[str]
    features: np.ndarray
    signals_models: list[str] = field(default_factory=list)

    def labelled(self) -> list[int]:
        return [i for i, label in enumerate(self.labels) if label in LABELS]


def load_data(lh: Store) -> ViewpointData:
    """One row per clip with signals (the most recently computed ones)."""
    import numpy as np

    batches = lh.stream_query(
        f"""
        select s.clip_id, s.source, s.model_id, c.viewpoint,
               coalesce(c.source_video_id, c.video_id) as grp,
               {", ".join("s." + name for name in FEATURES)}
        from signals s
        join clips c using (clip_id)
        qualify row_number() over (partition by s.clip_id order by s.computed_at desc) = 1
        order by s.clip_id
        """,
        {
            "signals": (
                "signals",
                ["clip_id", "source", "model_id", "computed_at", *FEATURES],
                None,
            ),
            "clips": ("clips", ["clip_id", "viewpoint", "source_video_id", "video_id"], None),
        },
        published=True,  # the versions readers see, as clip_facts shows them
    )
    rows = [row for batch in batches for row in batch.to_pylist()]
    matrix = np.array(
        [[row[name] if row[name] is not None else 0.0 for name in FEATURES] for row in rows],
        dtype=np.float64,
    ).reshape(len(rows), len(FEATURES))
    return ViewpointData(
        [r["clip_id"] for r in rows],
        [r["source"] for r in rows],
        [r["viewpoint"] if r["viewpoint"] in LABELS else None for r in rows],
        [r["grp"] or r["clip_id"] for r in rows],
        matrix,
        [r["model_id"] for r in rows],
    )


def _classifier() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))


def _folds(labels: list[str], groups: list[str], n_splits: int, seed: int) -> list[Any]:
    from sklearn.model_selection import StratifiedGroupKFold

    n = min(
        n_splits, *(len({g for g, y in zip(groups, labels, strict=True) if y == c}) for c in LABELS)
    )
    splitter = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed)
    return list(splitter.split(labels, labels, groups))


def out_of_fold(data: ViewpointData, n_splits: int = 5, seed: int = 0) -> dict[str, Any]:
    """Grouped, stratified k-fold predictions of every labelled clip, and their accuracy."""
    import numpy as np

    idx = data.labelled()
    labels = [data.labels[i] for i in idx]
    groups = [data.groups[i] for i in idx]
    x = data.features[idx]
    y = np.array([label == "ego" for label in labels], dtype=int)
    p_ego = np.zeros(len(idx))
    folds = []
    for train, test in _folds(labels, groups, n_splits, seed):
        model = _classifier().fit(x[train], y[train])
        p_ego[test] = model.predict_proba(x[test])[:, 1]
        folds.append(
            {
                "test_clips": len(test),
                "test_groups": len({groups[i] for i in test}),
                "accuracy": float(np.mean((p_ego[test] >= 0.5) == y[test])),
            }
        )
    predicted = p_ego >= 0.5
    return {
        "clip_ids": [data.clip_ids[i] for i in idx],
        "p_ego": p_ego,
        "accuracy": float(np.mean(predicted == y)) if len(idx) else None,
        "folds": folds,
        "confusion": {
            f"{truth}->{guess}": int(
                np.sum((y == (truth == "ego")) & (predicted == (guess == "ego")))
            )
            for truth in LABELS
            for guess in LABELS
        },
        "labelled": len(idx),
        "groups": len(set(groups)),
    }


def evaluate_viewpoint(lh: Store, n_splits: int = 5, seed: int = 0) -> dict[str, Any]:
    """Accuracy of the classifier on the labelled clips, every clip held out once (folds
    grouped by source video, stratified by label), plus the per-fold accuracies."""
    report = out_of_fold(load_data(lh), n_splits, seed)
    report.pop("p_ego")
    report.pop("clip_ids")
    return report


def predict_viewpoints(lh: Store, *, run_id: str) -> StageResult:
    """Train on the labelled clips; predict every clip (labelled ones out of fold)."""
    import numpy as np

    data = load_data(lh)
    idx = data.labelled()
    per_class = {c: sum(data.labels[i] == c for i in idx) for c in LABELS}
    minimum = lh.config.signals.viewpoint_min_per_class
    groups = {c: len({data.groups[i] for i in idx if data.labels[i] == c}) for c in LABELS}
    if min(per_class.values()) < minimum or min(groups.values()) < 2:
        message = (
            f"The viewpoint classifier needs at least {minimum} labelled clips (from two or more "
            f"videos) per viewpoint with signals; found {per_class}. Ingest a source with "
            "--viewpoint or viewpoint annotations, and run the signals first."
        )
        return StageResult(
            TABLE,
            "*",
            TABLE,
            WriteResult(TABLE),
            rows=lh.count(TABLE),
            details={"status": "skipped: too few labelled clips", "message": message},
        )
    training = sorted((data.clip_ids[i], data.labels[i]) for i in idx)
    digest = hashlib.sha256(
        repr((training, sorted(set(data.signals_models)), FEATURES)).encode()
    ).hexdigest()[:12]
    model_id = f"viewpoint-logreg-v{CLASSIFIER_VERSION}:train-{digest}"
    report = out_of_fold(data, seed=0)
    held_out = dict(zip(report["clip_ids"], report["p_ego"].tolist(), strict=True))
    y = np.array([data.labels[i] == "ego" for i in idx], dtype=int)
    model = _classifier().fit(data.features[idx], y)
    p_all = model.predict_proba(data.features)[:, 1]
    rows = []
    for i, clip_id in enumerate(data.clip_ids):
        p = held_out.get(clip_id, float(p_all[i]))
        rows.append(
            {
                "clip_id": clip_id,
                "source": data.sources[i],
                "model_id": model_id,
                "predicted_viewpoint": "ego" if p >= 0.5 else "exo",
                "p_ego": round(p, 6),
                "confidence": round(max(p, 1 - p), 6),
                "labelled_viewpoint": data.labels[i],
                "held_out": clip_id in held_out,
                "run_id": run_id,
            }
        )
    write = lh.sync(TABLE, rows, scope="clip_id IS NOT NULL")
    return StageResult(
        TABLE,
        "*",
        TABLE,
        write,
        rows=lh.count(TABLE),
        details={
            "model_id": model_id,
            "trained_on": len(idx),
            "held_out_accuracy": report["accuracy"],
            "folds": len(report["folds"]),
            "predicted_unlabelled": sum(label is None for label in data.labels),
        },
    )
