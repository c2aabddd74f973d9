"""Learning rate per optimiser step: linear warm-up, then step decay, cosine or constant.

Computed from the global step (not stepped like a torch scheduler), so a resumed run continues
exactly where its checkpoint left off with nothing else to restore.
"""
from __future__ import annotations

import bisect
import math

from pipelines.train.config import OptimConfig


def scaled_lr(optim: OptimConfig, global_batch: int) -> float:
    """The linear scaling rule: ``lr`` is for ``reference_batch`` clips per optimiser step."""
    return optim.lr * global_batch / optim.reference_batch


def warmup_epochs(optim: OptimConfig, base_lr: float) -> float:
    """``warmup_epochs``, or ``scaled_warmup_epochs`` when the rate was scaled up past ``lr``."""
    scaled = base_lr > optim.lr * (1 + 1e-9)
    return max(optim.warmup_epochs, optim.scaled_warmup_epochs if scaled else 0.0)


def lr_at(optim: OptimConfig, step: int, steps_per_epoch: int, epochs: int,
          base_lr: float) -> float:
    """Rate for optimiser step ``step`` (0-based) of a run of ``epochs`` × ``steps_per_epoch``."""
    epoch = step / steps_per_epoch
    warmup = warmup_epochs(optim, base_lr)
    if warmup > 0 and epoch < warmup:
        return base_lr * (step + 1) / (warmup * steps_per_epoch)
    if optim.schedule == "step":
        return base_lr * optim.gamma ** bisect.bisect_right(sorted(optim.milestones), epoch)
    if optim.schedule == "cosine":
        span = max(epochs - warmup, 1e-9)
        progress = min(max((epoch - warmup) / span, 0.0), 1.0)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return base_lr
