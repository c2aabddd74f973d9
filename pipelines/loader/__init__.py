"""Clips for training and evaluation: settings, the one TSN sampler, augmentation, shard streams.

Layer 3 (docs/architecture.md): imports only ``pipelines.io``, ``pipelines.shards`` and
``pipelines.data``; no Ray, DeepSpeed or MLflow, so a Ray Train worker, a test or a notebook
can all use it. Importing the package (or ``clips``/``sampling``) loads neither torch nor
webdataset; the stream names below are loaded on first use.
"""
from __future__ import annotations

from typing import Any

from pipelines.loader.clips import ClipSettings, label_swap_indices
from pipelines.loader.sampling import PROTOCOLS, segment_indices
from pipelines.loader.selection import SelectionFilter, in_selection

_STREAMS = ("EvalBatch", "eval_batches", "shard_assignment_note", "train_batches")

__all__ = ["PROTOCOLS", "ClipSettings", "EvalBatch", "SelectionFilter", "eval_batches",
           "in_selection", "label_swap_indices", "segment_indices", "shard_assignment_note",
           "train_batches"]


def __getattr__(name: str) -> Any:
    if name in _STREAMS:
        from pipelines.loader import streams

        return getattr(streams, name)
    raise AttributeError(f"module 'pipelines.loader' has no attribute {name!r}")
