"""Shared plumbing for modules that see frames folded into the batch dimension."""
from __future__ import annotations

import torch
from torch import nn


class FrameAware(nn.Module):
    """A module operating on ``(N*T, C, H, W)`` that must know T to unfold the clip.

    The video model sets ``num_frames`` on every such module when a clip with a new T arrives, so
    any T >= 2 works without threading T through ``nn.Sequential``.
    """

    num_frames: int

    def __init__(self, num_frames: int) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = num_frames

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """``(N*T, C, H, W)`` -> ``(N, T, C, H, W)`` with a clear error when T does not divide."""
        nt, c, h, w = x.shape
        if nt % self.num_frames:
            raise ValueError(
                f"{type(self).__name__}: batch of {nt} frames is not a multiple of T={self.num_frames}"
            )
        return x.view(nt // self.num_frames, self.num_frames, c, h, w)
