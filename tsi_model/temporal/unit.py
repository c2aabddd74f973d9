"""The temporal unit placed after a bottleneck's 3x3 conv: motion module + aggregation module.

TSI's block (Sec. 3.4, Eq. 1-2) is SME then CTI in cascade. The same unit, with other switches,
gives every row of the paper's ablations, all at the same place in the bottleneck so that rows
differ only in the module they name:

| paper row                         | motion | aggregation | fusion  |
|-----------------------------------|--------|-------------|---------|
| Table 4 Baseline (R50 + TIM)      | -      | tim         | -       |
| Table 4 + SME / w/o SA / w/o CA   | sme    | tim         | cascade |
| Table 4/5 R50 + CTI               | -      | cti         | -       |
| Table 4 TSI (R50 + SME + CTI)     | sme    | cti         | cascade |
| Table 5 + ME (TEA)                | me     | tim         | cascade |
| Table 7 summation / concatenation | sme    | cti         | sum / concat |

TIM (TEINet) is a depth-wise temporal conv over all channels. Placement: TEINet and TEA insert
their modules around the first 1x1 conv; here every variant sits after the 3x3 conv, where TSI
puts SME and CTI, so an ablation row changes exactly one thing.

Fusion (Table 7): cascade = CTI(SME(X)); sum = SME(X) + CTI(X); concat = a 1x1 conv over
[SME(X), CTI(X)] back to C channels, initialised to their average so it starts equal to sum/2.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from tsi_model.temporal.base import FrameAware
from tsi_model.temporal.cti import CISoftmax, CrossScaleTemporalIntegration
from tsi_model.temporal.sme import SalientMotionExcitation, SMEOptions
from tsi_model.temporal.tconv import DepthwiseTemporalConv, TemporalInit

Motion = Literal["sme", "me"]
Aggregation = Literal["cti", "tim"]
Fusion = Literal["cascade", "sum", "concat"]

TEA_ME = SMEOptions(saliency_alignment=False, pyramid_levels=0, centered_sigmoid=True)


@dataclass(frozen=True)
class TemporalUnitConfig:
    """Every switch of the temporal unit; the defaults are the paper's TSI block."""

    motion: Motion | None = "sme"
    aggregation: Aggregation | None = "cti"
    fusion: Fusion = "cascade"
    reduction: int = 16
    pyramid_levels: int = 4
    saliency_alignment: bool = True
    channel_attention: bool = True
    alignment_kv_pool: int = 1
    alignment_pool_min_hw: int = 0
    groups: int = 4
    ci_softmax: CISoftmax = "scales"
    temporal_init: TemporalInit = "shift"
    identity_init: bool = False

    def sme_options(self) -> SMEOptions:
        if self.motion == "me":
            base = replace(TEA_ME, reduction=self.reduction)
        else:
            base = SMEOptions(
                reduction=self.reduction,
                pyramid_levels=self.pyramid_levels,
                saliency_alignment=self.saliency_alignment,
                channel_attention=self.channel_attention,
                alignment_kv_pool=self.alignment_kv_pool,
                alignment_pool_min_hw=self.alignment_pool_min_hw,
            )
        if self.identity_init:
            base = replace(base, centered_sigmoid=True, zero_init_attention=True)
        return base


class TemporalUnit(FrameAware):
    """Motion excitation and temporal aggregation, fused as configured (Eq. 1-2 for cascade)."""

    def __init__(self, channels: int, num_frames: int, config: TemporalUnitConfig) -> None:
        super().__init__(num_frames)
        if config.motion is None and config.aggregation is None:
            raise ValueError("a temporal unit needs a motion or an aggregation module")
        self.config = config
        init: TemporalInit = "identity" if config.identity_init else config.temporal_init
        self.motion = (
            SalientMotionExcitation(channels, num_frames, config.sme_options())
            if config.motion is not None
            else None
        )
        if config.aggregation == "cti":
            self.aggregation: nn.Module | None = CrossScaleTemporalIntegration(
                channels,
                num_frames,
                groups=config.groups,
                ci_softmax=config.ci_softmax,
                temporal_init=init,
                residual_gate=config.identity_init,
            )
        elif config.aggregation == "tim":
            self.aggregation = DepthwiseTemporalConv(channels, num_frames, 3, init)
        else:
            self.aggregation = None
        both = self.motion is not None and self.aggregation is not None
        self.fuse = None
        if both and config.fusion == "concat":
            self.fuse = nn.Conv2d(2 * channels, channels, 1, bias=False)
            with torch.no_grad():
                eye = torch.eye(channels).view(channels, channels, 1, 1) * 0.5
                self.fuse.weight.copy_(torch.cat([eye, eye], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.motion is None:
            return self.aggregation(x)
        if self.aggregation is None:
            return self.motion(x)
        fusion = self.config.fusion
        if fusion == "cascade":
            return self.aggregation(self.motion(x))  # Eq. 1-2: X^CTI = CTI(SME(X))
        if fusion == "sum":
            return self.motion(x) + self.aggregation(x)
        return self.fuse(torch.cat([self.motion(x), self.aggregation(x)], dim=1))
