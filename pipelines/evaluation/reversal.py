"""The temporal probe: does a model's prediction move to the twin class when time runs backwards?

For a dataset with declared order twins (``pipelines.data.twins``: a class and the class that is
its reversal), every evaluation also scores each clip with its frames in reverse order. The two
predictions of one video give:

- ``reversal_flip``: among videos whose true class has a twin, the fraction whose prediction on
  the reversed clip is the twin of the prediction on the forward clip. An order-blind model (TSN
  averages frames) predicts the same class both ways, so it flips ~0; a temporal model that tells
  a motion from its reverse flips about as often as it knows which pair the motion is in. It
  asks nothing of the true label, so it measures the use of order apart from accuracy.
- ``reversal_to_twin``: among the same videos, the fraction whose reversed clip is predicted as
  the twin of the true class (top-1 on reversed clips against the twin's label).
- ``reversal_videos``: how many videos that is (0: no declared twin among the classes seen).

The extra cost is one forward pass per evaluated clip; decoding is shared with the forward pass.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from pipelines.evaluation.metrics import Predictions
from pipelines.loader.streams import EvalBatch

TIME_AXIS = 2  # EvalBatch.clips is (B, V, T, 3, H, W)


def reverse_clips(batch: EvalBatch) -> EvalBatch:
    """The same videos and labels with every view's frames in reverse order."""
    return EvalBatch(batch.keys, batch.labels, batch.clips.flip(dims=[TIME_AXIS]))


def reversed_batches(batches: Iterable[EvalBatch]) -> Iterator[EvalBatch]:
    """:func:`reverse_clips` of every batch."""
    return (reverse_clips(batch) for batch in batches)


def reversal_probe(forward: Predictions, backward: Predictions,
                   twins: Mapping[int, int]) -> dict[str, float]:
    """``reversal_flip``, ``reversal_to_twin`` and ``reversal_videos`` (see the module doc).

    ``forward`` and ``backward`` must hold the same videos in the same order; ``twins`` maps a
    class index to its twin's (both ways, as :func:`pipelines.data.twins.twin_indices` gives).
    """
    if forward.keys != backward.keys or not np.array_equal(forward.labels, backward.labels):
        raise ValueError("reversal probe: forward and reversed predictions are not the same "
                         "videos in the same order")
    num_classes = forward.probs.shape[1]
    twin_of = np.full(num_classes, -1, dtype=np.int64)
    for cls, twin in twins.items():
        twin_of[cls] = twin
    has_twin = twin_of[forward.labels] >= 0 if len(forward) else np.zeros(0, bool)
    videos = int(has_twin.sum())
    if not videos:
        return {"reversal_flip": 0.0, "reversal_to_twin": 0.0, "reversal_videos": 0.0}
    ahead = np.argmax(forward.probs[has_twin], axis=1)
    behind = np.argmax(backward.probs[has_twin], axis=1)
    flipped = (twin_of[ahead] >= 0) & (behind == twin_of[ahead])
    to_twin = behind == twin_of[forward.labels[has_twin]]
    return {"reversal_flip": float(flipped.mean()), "reversal_to_twin": float(to_twin.mean()),
            "reversal_videos": float(videos)}
