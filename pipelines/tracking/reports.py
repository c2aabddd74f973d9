"""What every scored model gets in MLflow: a per-class table and a confusion matrix with names.

One function for the training run's evaluation split (``publish``) and for every evaluation,
promotion and nightly run (``pipelines.ops``), so the same picture means the same thing.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.evaluation.metrics import ClassificationMetrics, Predictions, classification_metrics


def log_classification_report(client: Any, run_id: str, preds: Predictions,
                              classes: Sequence[str], title: str) -> ClassificationMetrics:
    """``per_class_accuracy.json`` (an MLflow table) and ``plots/confusion_matrix.png``."""
    import matplotlib.pyplot as plt

    from pipelines.evaluation.metrics import most_confused_with
    from pipelines.tracking.plots import confusion_matrix

    classes = list(classes)
    metrics = classification_metrics(preds, len(classes))
    support = metrics.confusion.sum(axis=1)
    client.log_table(run_id, {
        "class": classes, "videos": [int(n) for n in support],
        "accuracy": [a if a is not None else float("nan") for a in metrics.per_class_accuracy],
        "most_confused_with": most_confused_with(metrics.confusion, classes)},
        "per_class_accuracy.json")
    figure = confusion_matrix(metrics.confusion, classes,
                              f"{title}: top-1 {metrics.top1:.3f} ({metrics.videos} videos)")
    client.log_figure(run_id, figure, "plots/confusion_matrix.png")
    plt.close(figure)
    return metrics
