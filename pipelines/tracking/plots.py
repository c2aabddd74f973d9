"""The two pictures a platform team looks at first: training curves and a confusion matrix.

Plain matplotlib (Agg, no display), sized to be read in the MLflow UI without zooming.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: Mapping[str, Sequence[tuple[int, float]]]):
    """Loss, top-1 (train and val) and learning rate against the global step."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    panels = (("loss", ("train_loss",)), ("top-1", ("train_top1", "val_top1", "selection_top1")),
              ("learning rate", ("lr",)))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            points = sorted(history.get(key, ()))
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3,
                        label=key)
        ax.set_title(title)
        ax.set_xlabel("global step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    return fig


def confusion_matrix(confusion: np.ndarray, class_names: Sequence[str], title: str = ""):
    """Row-normalised confusion matrix with class names and counts (large maps drop the counts)."""
    plt = _pyplot()
    n = len(class_names)
    size = min(4 + 0.45 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), constrained_layout=True)
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros_like(confusion, dtype=float), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    if n <= 60:
        ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), class_names, fontsize=8)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    return fig
