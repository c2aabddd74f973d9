"""Parameters and multiply-adds (MACs) of a network on one input, attention included.

``torch.utils.flop_counter`` counts convolutions and matrix products. Under its dispatch mode
``scaled_dot_product_attention`` on CPU decomposes into two ``bmm`` (counted); should it reach the
fused CPU flash kernel instead, which has no registered formula, the mapping below counts it. The
element-wise form of the depth-wise temporal conv (TIM, CTI's Conv1D_j, MTA's per-group temporal
convs) is invisible to the counter and added from hooks; MTA's 3x3 convs and the concatenation
fusion's 1x1 conv are ordinary convolutions, and the chunked alignment fallback's products are
ordinary matmuls, all counted. So TSI's saliency alignment (two HW x HW x C/r products per frame
pair) is in the total; ``attention_macs`` reports that part on its own, computed from the shapes.
Element-wise work (BN, ReLU, Hadamard products, softmax) is not counted, the usual convention for
GFLOPs tables.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tsi_model.temporal.sme import SalientMotionExcitation
from tsi_model.temporal.tconv import DepthwiseTemporalConv

_aten = torch.ops.aten


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs (2 per MAC) of softmax(Q K^T) V: two batched products of (L_q x d) (d x L_k) (L_k x d_v)."""
    *batch, lq, d = query_shape
    lk = key_shape[-2]
    dv = value_shape[-1]
    b = 1
    for size in batch:
        b *= size
    return 2 * b * lq * lk * d + 2 * b * lq * lk * dv


def _cpu_attention_mapping() -> dict:
    mapping = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu",):
        op = getattr(_aten, name, None)
        if op is not None:
            mapping[op] = _sdpa_flops
    return mapping


@dataclass(frozen=True)
class Complexity:
    """Cost of one forward pass."""

    params: int
    macs: int
    attention_macs: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, clip: torch.Tensor) -> Complexity:
    """Multiply-adds of ``model(clip)`` in eval mode (conv, linear, matmul, attention, temporal conv)."""
    temporal_macs = 0
    attention_macs = 0

    def on_temporal_conv(module: DepthwiseTemporalConv, inputs, output) -> None:
        nonlocal temporal_macs
        temporal_macs += module.macs(inputs[0].shape)

    def on_motion(module: SalientMotionExcitation, inputs, output) -> None:
        nonlocal attention_macs
        if module.options.saliency_alignment:
            pairs, queries, keys, dim = module.attention_shapes(inputs[0].shape)
            attention_macs += 2 * pairs * queries * keys * dim  # Q K^T and (.) V

    hooks = [
        m.register_forward_hook(on_temporal_conv)
        for m in model.modules()
        if isinstance(m, DepthwiseTemporalConv)
    ] + [
        m.register_forward_hook(on_motion)
        for m in model.modules()
        if isinstance(m, SalientMotionExcitation)
    ]
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_cpu_attention_mapping())
    try:
        with torch.no_grad(), counter:
            model(clip)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return Complexity(
        params=count_params(model),
        macs=counter.get_total_flops() // 2 + temporal_macs,
        attention_macs=attention_macs,
    )


@dataclass(frozen=True)
class ModelReportConfig:
    """What ``python -m jobs.model_report`` measures: ``models`` on one ``frames x size²`` clip."""

    models: tuple[str, ...] = ("tsn_r50", "tsm_r50", "tsi_r50", "tsi_r50_fast_align")
    frames: int = 8
    size: int = 224
    num_classes: int = 400
    width: int = 64


def complexity_report(
    names: list[str] | tuple[str, ...], *, frames: int = 8, size: int = 224, num_classes: int = 400, width: int = 64
) -> list[dict[str, float | str | int]]:
    """Params (M) and GMACs of registered models on one ``frames x size x size`` clip, with ratios to the first."""
    from tsi_model.models import get_model

    rows: list[dict[str, float | str | int]] = []
    for name in names:
        model = get_model(name, num_classes=num_classes, num_frames=frames, width=width)
        cost = count_macs(model, torch.randn(1, frames, 3, size, size))
        rows.append(
            {
                "model": name,
                "frames": frames,
                "params_m": cost.params / 1e6,
                "gmacs": cost.gmacs,
                "attention_gmacs": cost.attention_macs / 1e9,
            }
        )
    for row in rows:
        row["gmacs_vs_first"] = float(row["gmacs"]) / float(rows[0]["gmacs"])
    return rows
