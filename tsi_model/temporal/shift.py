"""TSM's temporal shift (Lin et al., 2019): the TSM baseline, not part of TSI's equations."""
from __future__ import annotations

import torch

from tsi_model.temporal.base import FrameAware


def shift_frames(x: torch.Tensor, fold: int) -> torch.Tensor:
    """Shift ``fold`` channels one frame back and ``fold`` channels one frame forward, zero-padded.

    ``x`` is ``(N, T, C, H, W)``; channels ``[0, fold)`` take frame t+1's values, channels
    ``[fold, 2*fold)`` take frame t-1's, the rest stay. The ends are zero, as in TSM.
    """
    if fold == 0:
        return x
    n, t, c, h, w = x.shape
    zeros = x.new_zeros(n, 1, fold, h, w)
    from_next = torch.cat([x[:, 1:, :fold], zeros], dim=1)
    from_prev = torch.cat([zeros, x[:, :-1, fold : 2 * fold]], dim=1)
    return torch.cat([from_next, from_prev, x[:, :, 2 * fold :]], dim=2)


class TemporalShift(FrameAware):
    """Residual-branch temporal shift of 1/``fold_div`` of the channels each way (TSM, fold_div=8)."""

    def __init__(self, num_frames: int, fold_div: int = 8) -> None:
        super().__init__(num_frames)
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        return shift_frames(self.unfold(x), c // self.fold_div).reshape(nt, c, h, w)

    def extra_repr(self) -> str:
        return f"num_frames={self.num_frames}, fold_div={self.fold_div}"
