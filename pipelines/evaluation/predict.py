"""Run a model over evaluation batches and collect every rank's per-video predictions.

Batches come from :func:`pipelines.loader.streams.eval_batches` (uint8 ``(B, V, T, 3, H, W)``,
V views of one video: temporal clips × spatial crops). Views are scored in chunks of at most
``max_clips`` clips, their softmax averaged per video. :func:`gather_predictions` is one
collective at the end, so a rank that had fewer (or no) videos still takes part in it.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from pipelines import distributed
from pipelines.evaluation.metrics import Predictions
from pipelines.evaluation.reversal import reverse_clips
from pipelines.loader.streams import EvalBatch
from tsi_model import normalize_clip


@torch.no_grad()
def predict(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[EvalBatch],
    *,
    num_classes: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    max_clips: int = 32,
) -> Predictions:
    """This process's predictions: softmax averaged over each video's views."""
    parts = [_score(model, batch, device, dtype, max_clips) for batch in batches]
    return Predictions.concat(parts, num_classes)


@torch.no_grad()
def predict_with_reversal(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[EvalBatch],
    *,
    num_classes: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    max_clips: int = 32,
) -> tuple[Predictions, Predictions]:
    """:func:`predict` on the batches and on the same clips with their frames reversed.

    Each batch is decoded once and scored twice (``pipelines.evaluation.reversal``).
    """
    forward, backward = [], []
    for batch in batches:
        forward.append(_score(model, batch, device, dtype, max_clips))
        backward.append(_score(model, reverse_clips(batch), device, dtype, max_clips))
    return Predictions.concat(forward, num_classes), Predictions.concat(backward, num_classes)


def _score(model: Callable[[torch.Tensor], torch.Tensor], batch: EvalBatch, device, dtype,
           max_clips: int) -> Predictions:
    b, v = batch.clips.shape[:2]
    clips = batch.clips.reshape(b * v, *batch.clips.shape[2:])
    scores = []
    for start in range(0, b * v, max_clips):
        chunk = normalize_clip(clips[start:start + max_clips].to(device, non_blocking=True),
                               dtype=dtype)
        scores.append(torch.softmax(model(chunk).float(), dim=1).cpu())
    probs = torch.cat(scores).view(b, v, -1).mean(dim=1)
    return Predictions(tuple(batch.keys), batch.labels.numpy().astype(np.int64),
                       probs.numpy().astype(np.float32))


def gather_predictions(local: Predictions, num_classes: int) -> Predictions:
    """All ranks' predictions on every rank, sorted by key; a video seen twice is an error."""
    return merge_predictions(distributed.all_gather_objects(local), num_classes)


def merge_predictions(parts: Sequence[Predictions], num_classes: int) -> Predictions:
    """Every part's predictions in one table sorted by key; a video seen twice is an error."""
    merged = Predictions.concat(list(parts), num_classes)
    repeated = [k for k, n in Counter(merged.keys).items() if n > 1]
    if repeated:
        raise RuntimeError(f"{len(repeated)} videos were evaluated more than once, e.g. "
                           f"{repeated[:3]}: the evaluation split must give each rank its own")
    return merged.sorted()
