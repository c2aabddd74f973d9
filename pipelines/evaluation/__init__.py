"""Evaluation shared by validation during training, ``jobs.evaluate``, nightly runs and promotion.

``metrics`` turns per-video scores into top-1/top-5/mean-class accuracy and a confusion matrix;
``predict`` runs a model over evaluation batches and gathers every rank's predictions, so a
number reported anywhere on the platform is computed one way; ``reversal`` is the temporal
probe (the same clips with frames reversed, against the declared twin classes).
"""
from pipelines.evaluation.metrics import (
    ClassificationMetrics, Predictions, classification_metrics, pair_metrics,
)
from pipelines.evaluation.predict import (
    gather_predictions, merge_predictions, predict, predict_with_reversal,
)
from pipelines.evaluation.reversal import reversal_probe

__all__ = ["ClassificationMetrics", "Predictions", "classification_metrics", "gather_predictions",
           "merge_predictions", "pair_metrics", "predict", "predict_with_reversal",
           "reversal_probe"]
# pipelines.evaluation.exported (evaluate an exported model on shards) imports tsi_model and the
# class map; import it from there.
