"""The temporal unit placed after a bottleneck's 3x3 conv: motion module + aggregation module.

TSI's block (Sec. 3.4, Eq. 1-2) is SME then CTI in cascade. The same unit, with other switches,
gives every row of the paper's ablations, all at the same place in the bottleneck:

| paper row                         | registered name               | motion | aggregation | fusion  |
|-----------------------------------|-------------------------------|--------|-------------|---------|
| Table 4/5 Baseline (R50 + TIM)    | r50_tim                       | -      | tim         | -       |
| Table 4 + SME / w/o SA / w/o CA   | r50_tim_sme, _no_sa, _no_ca   | sme    | tim         | cascade |
| Table 4/5 R50 + CTI               | r50_cti                       | -      | cti         | -       |
| Table 4 TSI (R50 + SME + CTI)     | tsi_r50                       | sme    | cti         | cascade |
| Table 5 + ME (TEA)                | r50_tim_me                    | me     | tim         | cascade |
| Table 5 + SME                     | r50_tim_sme                   | sme    | tim         | cascade |
| Table 5 R50 + MTA (TEA)           | r50_mta                       | -      | mta         | -       |
| Table 7 summation / concatenation | tsi_r50_fusion_sum / _concat  | sme    | cti         | sum/cat |

TIM (TEINet) is a depth-wise temporal conv over all channels; MTA (TEA) is a Res2Net-like cascade of
per-group temporal + 3x3 convs (``temporal/mta.py``, which states its placement and cost).
Placement: TEINet and TEA insert their modules around the first 1x1 conv (TEA's MTA replaces the
3x3 conv); here every variant sits after the 3x3 conv, where TSI puts SME and CTI, so rows differ
in the module they name. Not every row changes only that, though:
- "w/o CA" also changes an initialisation: with the motion map added as features instead of
  gating X, SME's expansion BN starts at zero gain (zero-init residual; see ``temporal/sme.py``),
  where the other SME rows start it at one.
- concatenation adds a 2C -> C 1x1 conv per block: +2,514,944 parameters and +3.29 GMACs on
  ResNet-50 (width 64) for an 8x224x224 clip (TSI: 24.99 M, 34.85 GMACs), measured with
  ``tsi_model.flops``; summation adds nothing to TSI's cost.
- MTA adds 3x3 convs on 3/4 of the channels (+2.14 M parameters, +2.80 GMACs), where TEA swaps
  them for the 3x3 conv.

Fusion (Table 7): cascade = CTI(SME(X)); sum = SME(X) + CTI(X); concat = a 1x1 conv over
[SME(X), CTI(X)] back to C channels, initialised to their average so it starts equal to sum/2.
``identity_init`` makes SME and CTI each the identity, so cascade and concat start as the identity
but sum starts as 2X (SME(X) + CTI(X) = X + X), not the identity: a summation TSI does not equal
the 2D network at initialisation. ``identity_init`` is refused with MTA, whose 3x3 convs have no
identity form.

``alignment_impl`` chooses how SME's Eq. 3 attention is computed (fused kernel or exact chunked
fallback, ``temporal/sme.py``); it never changes the result beyond rounding.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from tsi_model.temporal.base import FrameAware
from tsi_model.temporal.cti import CISoftmax, CrossScaleTemporalIntegration
from tsi_model.temporal.mta import MultipleTemporalAggregation
from tsi_model.temporal.sme import AlignmentImpl, SalientMotionExcitation, SMEOptions
from tsi_model.temporal.tconv import DepthwiseTemporalConv, TemporalInit

Motion = Literal["sme", "me"]
Aggregation = Literal["cti", "tim", "mta"]
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
    alignment_impl: AlignmentImpl = "auto"
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
                alignment_impl=self.alignment_impl,
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
        if config.aggregation not in (None, "cti", "tim", "mta"):
            raise ValueError(f"aggregation must be cti, tim, mta or None, got {config.aggregation!r}")
        if config.identity_init and config.aggregation == "mta":
            raise ValueError("identity_init: MTA's 3x3 convs have no identity initialisation")
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
        elif config.aggregation == "mta":
            self.aggregation = MultipleTemporalAggregation(channels, num_frames, config.groups, init)
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
            return self.motion(x) + self.aggregation(x)  # 2X under identity_init, see module doc
        return self.fuse(torch.cat([self.motion(x), self.aggregation(x)], dim=1))
