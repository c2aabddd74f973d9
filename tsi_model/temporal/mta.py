"""TEA's Multiple Temporal Aggregation, MTA (Li et al., CVPR 2020): Table 5's "Res50 + MTA" row.

Res2Net-like: channels are split into G=4 groups; group 0 passes through, and for g = 1..G-1

    T_1 = Spa_1(Tmp_1(X_1)),    T_g = Spa_g(Tmp_g(X_g + T_{g-1})) for g >= 2,

with Tmp_g a depth-wise temporal conv of kernel 3 (:class:`DepthwiseTemporalConv`) and Spa_g a
3x3 2D conv on C/G channels followed by BN and ReLU; the outputs are concatenated. That is TEA's
equation and its released code (the first processed group adds nothing, there being no T_0 to
cascade from), so group g's temporal receptive field grows to 2g+1 frames as in CTI; unlike CTI's
attention-weighted integration (Eq. 9-10) the cascade is a plain sum.

Placement and cost (a choice of this code base): in TEA, MTA *replaces* the bottleneck's 3x3 conv
(and takes its stride, so there the first block of a stage cascades nothing and avg-pools the
pass-through group). Here, like every other ablation row, it sits *after* the 3x3 conv (where
TSI puts CTI, at stride 1, so the cascade runs in every block) and adds to it: per block three
(C/4)^2 x 9 convs, i.e. 3/16 of that block's 3x3 conv, plus three BNs and three temporal convs
(C/4 x 4 parameters, 3 MACs per element each). On ResNet-50 (width 64, 16 blocks) that is
+2,138,976 parameters and +2.80 GMACs for an 8x224x224 clip (TSN: 24.33 M, 32.70 GMACs), as
``tsi_model.flops`` counts it. Other departures from TEA: its temporal convs start as the identity
(``temporal_init="identity"`` gives that; the default here is TSM's shift, as for TIM and CTI),
and its released code also shifts the pass-through group in time, which its equation does not
(the equation is followed here).
"""
from __future__ import annotations

import torch
from torch import nn

from tsi_model.temporal.base import FrameAware
from tsi_model.temporal.tconv import DepthwiseTemporalConv, TemporalInit


class MultipleTemporalAggregation(FrameAware):
    """MTA over G channel groups: cascaded (temporal conv -> 3x3 conv -> BN -> ReLU) per group."""

    def __init__(
        self, channels: int, num_frames: int, groups: int = 4, temporal_init: TemporalInit = "shift"
    ) -> None:
        super().__init__(num_frames)
        if groups < 2 or channels % groups:
            raise ValueError(f"MTA needs groups >= 2 dividing channels, got C={channels}, G={groups}")
        self.groups = groups
        width = channels // groups
        self.tconv = nn.ModuleList(
            DepthwiseTemporalConv(width, num_frames, 3, temporal_init) for _ in range(groups - 1)
        )
        self.spatial = nn.ModuleList(_spatial_conv(width) for _ in range(groups - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = x.chunk(self.groups, dim=1)
        outputs = [chunks[0]]  # group 0 passes through
        previous: torch.Tensor | None = None
        for tconv, spatial, current in zip(self.tconv, self.spatial, chunks[1:]):
            # TEA's MTA: T_1 = Spa(Tmp(X_1)), T_g = Spa(Tmp(X_g + T_{g-1}))
            cascaded = current if previous is None else current + previous
            previous = spatial(tconv(cascaded))
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


def _spatial_conv(width: int) -> nn.Sequential:
    """TEA's per-group 3x3 conv + BN + ReLU, initialised as the ResNet's own convs."""
    conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True))
