"""Cross-scale Temporal Integration, CTI (TSI paper Sec. 3.3, Eq. 8-10).

Channels are split into G=4 groups. Group 0 passes through (Eq. 8, g=0). For g=1..G-1 the
previous group's output T_{g-1} and this group's input X_g are integrated (CI, Eq. 9-10), then a
depth-wise temporal conv of kernel 3 runs on the result (Eq. 8), so each group sees a temporal
receptive field two frames wider than the one before (3, 5, 7 frames).

Choices where the paper is silent (switches where reasonable people would differ):
- Softmax axis of Eq. 9 (``ci_softmax``): ``"scales"`` (default) -- the FC emits two logits per
  channel and the softmax runs over the two scales {X_g, T_{g-1}}, selective-kernel style, so
  alpha and 1-alpha are the weights of a per-channel convex combination, which is what Eq. 10's
  form implies. ``"channels"`` -- one logit per channel, softmax over the C/G channels; alpha then
  sums to 1 over channels and Eq. 10 leans almost entirely on T_{g-1}.
- FC width: one linear layer C/G -> 2C/G (or C/G), per group, with bias; the pooling is per frame,
  so alpha is a temporal-channel weight as the paper says.
- Temporal conv initialisation: TSM-style shift (default) or identity, see ``tconv``.
- ``residual_gate`` (part of ``identity_init``, off by default): Eq. 10 is computed as
  X_g + gamma * (1-alpha) * (T_{g-1} - X_g) with a per-channel gamma initialised to 0, so an untrained
  CTI with identity temporal kernels is exactly the identity; gamma=1 is the paper's Eq. 10.
- Precision: Eq. 9's statistics (pooling, softmax) are computed in fp32; everything on the feature
  map stays in the input's dtype (bf16/fp16 under autocast or in a bf16 model).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from tsi_model.temporal.base import FrameAware
from tsi_model.temporal.tconv import DepthwiseTemporalConv, TemporalInit

CISoftmax = Literal["scales", "channels"]


class CrossScaleTemporalIntegration(FrameAware):
    """CTI over G channel groups with attention-weighted cross-scale integration."""

    def __init__(
        self,
        channels: int,
        num_frames: int,
        groups: int = 4,
        kernel_size: int = 3,
        ci_softmax: CISoftmax = "scales",
        temporal_init: TemporalInit = "shift",
        residual_gate: bool = False,
    ) -> None:
        super().__init__(num_frames)
        if groups < 2 or channels % groups:
            raise ValueError(f"CTI needs groups >= 2 dividing channels; got C={channels}, G={groups}")
        if ci_softmax not in ("scales", "channels"):
            raise ValueError(f"ci_softmax must be 'scales' or 'channels', got {ci_softmax!r}")
        self.groups = groups
        self.ci_softmax = ci_softmax
        width = channels // groups
        logits = 2 * width if ci_softmax == "scales" else width
        # FC of Eq. 9, one per integrated group
        self.fc = nn.ModuleList(nn.Linear(width, logits) for _ in range(groups - 1))
        # Conv1D_j of Eq. 8, one per group g >= 1
        self.tconv = nn.ModuleList(
            DepthwiseTemporalConv(width, num_frames, kernel_size, temporal_init)
            for _ in range(groups - 1)
        )
        self.gate = (
            nn.ParameterList(nn.Parameter(torch.zeros(width)) for _ in range(groups - 1))
            if residual_gate
            else None
        )

    def integration_weight(self, index: int, previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """Eq. 9: alpha = Softmax(FC(Pool(T_{g-1} + X_g))), returned as the weight 1-alpha of T_{g-1}.

        Pooling and softmax run in fp32 whatever the activations' dtype (they are tiny, and a bf16
        softmax would quantise alpha to 8 bits); the weight comes back in ``current``'s dtype so
        Eq. 10 stays in the activations' precision under autocast and in a bf16 model.
        """
        # Eq. 9's pooling is linear: Pool(T + X) = Pool(T) + Pool(X), without materialising the sum
        pooled = previous.mean(dim=(2, 3), dtype=torch.float32)
        pooled = pooled + current.mean(dim=(2, 3), dtype=torch.float32)
        fc = self.fc[index]
        logits = fc(pooled.to(fc.weight.dtype)).float()  # Eq. 9: FC, then the softmax below
        if self.ci_softmax == "scales":
            alpha = torch.softmax(logits.view(logits.shape[0], 2, -1), dim=1)[:, 0]
        else:
            alpha = torch.softmax(logits, dim=1)
        weight = 1.0 - alpha
        if self.gate is not None:
            weight = weight * self.gate[index].float()
        return weight.to(current.dtype)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = x.chunk(self.groups, dim=1)
        previous = chunks[0]  # Eq. 8, g = 0: T_0 = X_0
        outputs = [previous]
        for index, current in enumerate(chunks[1:]):
            weight = self.integration_weight(index, previous, current)
            # Eq. 10: CI = alpha * X_g + (1 - alpha) * T_{g-1} = X_g + (1 - alpha) * (T_{g-1} - X_g)
            integrated = torch.lerp(current, previous, weight)
            previous = self.tconv[index](integrated)  # Eq. 8, g >= 1
            outputs.append(previous)
        return torch.cat(outputs, dim=1)
