"""Classification metrics over per-video predictions (pure NumPy, tested with hand-made numbers).

A :class:`Predictions` holds one row per video: its key, true label and class probabilities
(for multi-view protocols, the mean of the views' softmax, as TSN averages crop scores). Keys
travel with the scores so two evaluations can be compared video by video.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Predictions:
    """Per-video results: ``keys`` (N), ``labels`` int (N,), ``probs`` float (N, C)."""

    keys: tuple[str, ...]
    labels: np.ndarray
    probs: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.keys)
        if self.labels.shape != (n,) or self.probs.ndim != 2 or self.probs.shape[0] != n:
            raise ValueError(f"predictions disagree in length: {n} keys, labels "
                             f"{self.labels.shape}, probs {self.probs.shape}")

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def concat(cls, parts: Sequence["Predictions"], num_classes: int) -> "Predictions":
        keys = tuple(k for p in parts for k in p.keys)
        labels = np.concatenate([p.labels for p in parts]) if parts else np.zeros(0, np.int64)
        probs = (np.concatenate([p.probs for p in parts]) if parts
                 else np.zeros((0, num_classes), np.float32))
        return cls(keys, labels.astype(np.int64), probs.astype(np.float32))

    def sorted(self) -> "Predictions":
        """Rows in key order: the same videos give the same table, however ranks split them."""
        order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        keys = tuple(self.keys[i] for i in order)
        return Predictions(keys, self.labels[order], self.probs[order])


@dataclass(frozen=True)
class ClassificationMetrics:
    """What every report shows. ``mean_class_accuracy`` averages classes that have videos."""

    videos: int
    top1: float
    top5: float
    mean_class_accuracy: float
    per_class_accuracy: tuple[float | None, ...]  # None for a class without videos
    confusion: np.ndarray  # (C, C) counts, rows = true class, columns = predicted

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Scalar metrics for logs and trackers (``{prefix}top1`` …)."""
        return {f"{prefix}top1": self.top1, f"{prefix}top5": self.top5,
                f"{prefix}mean_class_accuracy": self.mean_class_accuracy,
                f"{prefix}videos": float(self.videos)}


def topk_correct(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean (N,): the true label is among the ``k`` highest scores (ties broken by index)."""
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(axis=1)


def classification_metrics(pred: Predictions, num_classes: int) -> ClassificationMetrics:
    """Top-1/top-5, mean class accuracy and the confusion matrix of ``pred``."""
    if pred.probs.shape[1] != num_classes:
        raise ValueError(f"scores have {pred.probs.shape[1]} classes, expected {num_classes}")
    n = len(pred)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    if n == 0:
        return ClassificationMetrics(0, 0.0, 0.0, 0.0, (None,) * num_classes, confusion)
    top1 = np.argmax(pred.probs, axis=1)
    np.add.at(confusion, (pred.labels, top1), 1)
    support = confusion.sum(axis=1)
    per_class = tuple(float(confusion[c, c] / support[c]) if support[c] else None
                      for c in range(num_classes))
    present = [a for a in per_class if a is not None]
    return ClassificationMetrics(
        videos=n,
        top1=float(np.mean(top1 == pred.labels)),
        top5=float(np.mean(topk_correct(pred.probs, pred.labels, 5))),
        mean_class_accuracy=float(np.mean(present)),
        per_class_accuracy=per_class,
        confusion=confusion,
    )


def most_confused_with(confusion: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """Per true class, the *other* class its videos were most often predicted as ("" when none
    was mistaken; a tie goes to the first class): the diagonal is what a class gets right."""
    errors = np.array(confusion, dtype=np.int64, copy=True)
    np.fill_diagonal(errors, 0)
    return [class_names[int(np.argmax(row))] if row.sum() else "" for row in errors]


def pair_metrics(pred: Predictions, class_names: Sequence[str],
                 pairs: Sequence[tuple[str, str]]) -> dict[str, float]:
    """For datasets of order twins (a motion and its reverse): how much is telling the order.

    ``pair_accuracy``: the predicted class is in the true class's pair; ``within_pair``: top-1
    among videos whose pair was right (top-1 / pair accuracy). A frame-order-blind model has
    ``within_pair`` ≈ 0.5 however well it knows the pairs.
    """
    index = {name: i for i, name in enumerate(class_names)}
    pair_of = np.full(len(class_names), -1, dtype=np.int64)
    for p, (a, b) in enumerate(pairs):
        pair_of[index[a]] = pair_of[index[b]] = p
    if (pair_of < 0).any():
        raise ValueError("every class must belong to exactly one pair")
    predicted = np.argmax(pred.probs, axis=1) if len(pred) else np.zeros(0, np.int64)
    pair_hit = pair_of[predicted] == pair_of[pred.labels]
    top1 = float(np.mean(predicted == pred.labels)) if len(pred) else 0.0
    pair_accuracy = float(np.mean(pair_hit)) if len(pred) else 0.0
    return {"top1": top1, "pair_accuracy": pair_accuracy,
            "within_pair": top1 / pair_accuracy if pair_accuracy else 0.0}
