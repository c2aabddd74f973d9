"""Depth-wise temporal 1D convolution: TEINet's TIM and the Conv1D_j of CTI (Eq. 8).

Computed as a weighted sum of time-shifted views of ``(N, T, C, H, W)`` rather than a Conv3d:
the kernel is tiny (3 taps per channel), so the shifted sum avoids two layout permutes of the
whole feature map and is the cheapest exact form on CPU and GPU alike.

Reduced precision: the taps and bias are cast to the activation's dtype, so under autocast (fp32
parameters, bf16/fp16 activations) and with a bf16 model alike the module returns its input's dtype
instead of promoting the whole feature map to fp32 (the gradient still reaches the fp32 parameters).

Initialisation (``init``):
- ``"shift"`` (default, as TEINet/TDN do): the first 1/8 of the channels start as [0, 0, 1] (take
  t+1), the next 1/8 as [1, 0, 0] (take t-1), the rest as identity [0, 1, 0] -- i.e. the conv computes
  exactly TSM's shift at initialisation, so ImageNet features get temporal exchange from the first step.
- ``"identity"``: every channel starts as [0, 1, 0]; the untrained block equals the 2D network.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from tsi_model.temporal.base import FrameAware

TemporalInit = Literal["shift", "identity"]


def init_temporal_kernel(weight: torch.Tensor, init: TemporalInit, fold_div: int = 8) -> None:
    """Fill a ``(C, 1, K)`` depth-wise temporal kernel with the identity or a TSM-style shift."""
    channels, _, k = weight.shape
    centre = k // 2
    with torch.no_grad():
        weight.zero_()
        weight[:, 0, centre] = 1.0
        if init == "identity":
            return
        if init != "shift":
            raise ValueError(f"unknown temporal init {init!r}; expected 'shift' or 'identity'")
        fold = channels // fold_div
        weight[: 2 * fold, 0, centre] = 0.0
        weight[:fold, 0, centre + 1] = 1.0  # out[t] = x[t+1], as TSM's first fold
        weight[fold : 2 * fold, 0, centre - 1] = 1.0  # out[t] = x[t-1]


class DepthwiseTemporalConv(FrameAware):
    """Per-channel temporal convolution over frames (zero padding at the clip ends)."""

    def __init__(
        self, channels: int, num_frames: int, kernel_size: int = 3, init: TemporalInit = "shift"
    ) -> None:
        super().__init__(num_frames)
        if kernel_size % 2 == 0:
            raise ValueError("temporal kernel_size must be odd")
        self.channels = channels
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        init_temporal_kernel(self.weight, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        frames = self.unfold(x)
        t, pad = self.num_frames, self.kernel_size // 2
        # the tiny parameters follow the activations' dtype (autocast / bf16 model)
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        taps = weight.view(c, self.kernel_size).t().reshape(self.kernel_size, 1, 1, c, 1, 1)
        # centre tap over all frames, then each side tap added into the frames it reaches; slicing
        # instead of padding keeps autograd from saving a padded copy of the feature map
        out = frames * taps[pad] + bias.view(1, 1, c, 1, 1)
        for k in range(self.kernel_size):
            offset = k - pad  # out[t] += w_k * x[t + offset]
            if offset == 0 or abs(offset) >= t:
                continue
            if offset < 0:
                out[:, -offset:] += frames[:, : t + offset] * taps[k]
            else:
                out[:, : t - offset] += frames[:, offset:] * taps[k]
        return out.reshape(nt, c, h, w)

    def macs(self, x_shape: torch.Size) -> int:
        """Multiply-adds of one forward on ``x_shape`` (the FLOP counter cannot see the shifted sum)."""
        return int(self.kernel_size * torch.Size(x_shape).numel())

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}, num_frames={self.num_frames}"
