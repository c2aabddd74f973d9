"""Reduced precision for every registered variant: autocast (fp32 parameters) and a bf16 model.

Tolerances were measured on these tiny networks (width 16, layers (1, 1, 1, 1), 2 clips x 4 frames
x 32x32, eval mode with randomised BN so no layer is the identity) over 8 seeds and all 18
variants: the logits' relative error (||y - y_fp32|| / ||y_fp32||) was at most 1.7% in bf16 (both
ways; bf16 keeps 8 significant bits, ~0.4% per rounding, over 14 layers) and 0.27% under fp16
autocast (11 bits); the cosine between the reduced-precision and fp32 gradients of all non-head
parameters was at least 0.934 (bf16) and 0.997 (fp16). The bounds below leave ~2x headroom on the
worst error and still fail on a real one (a saturated or quantised softmax, a module that drops
the precision of a statistic); the dtype checks catch a module that promotes to fp32.
"""
from __future__ import annotations

import pytest
import torch

from tsi_model import get_model, list_models
from tsi_model.temporal.base import FrameAware

# dtype -> (max relative error of the logits, min cosine of the gradients), see the module doc
TOLERANCE = {torch.bfloat16: (0.04, 0.85), torch.float16: (0.006, 0.98)}
# fp16 autocast (CUDA's other mode; slow on CPU) on variants that together hold every module and
# switch: TSM shift, TIM + ME, SME w/o CA, MTA, SME + CTI cascade, concat fusion
FP16_VARIANTS = ("tsm_r50", "r50_tim_me", "r50_tim_sme_no_ca", "r50_mta", "tsi_r50", "tsi_r50_fusion_concat")
OPTIONS = dict(width=16, num_classes=10, num_frames=4, layers=(1, 1, 1, 1), dropout=0.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: intra-op threads only add synchronisation (and stall on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 4, 3, 32, 32, generator=gen), torch.randn(2, 10, generator=gen)


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = get_model(name, **OPTIONS)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model


def _step(model: torch.nn.Module, clip: torch.Tensor, weights: torch.Tensor, autocast: torch.dtype | None):
    """Forward + backward of a fixed linear loss; checks that temporal modules keep their input dtype."""
    seen: list[tuple[str, torch.dtype, torch.dtype]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o, n=n: seen.append((n, i[0].dtype, o.dtype)))
        for n, m in model.named_modules()
        if isinstance(m, FrameAware)
    ]
    model.zero_grad()
    try:
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            logits = model(clip)
        (logits.float() * weights).sum().backward()
    finally:
        for hook in hooks:
            hook.remove()
    changed = [(n, i, o) for n, i, o in seen if i != o]
    assert not changed, f"modules changed the activation dtype: {changed[:3]}"
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == p.dtype and torch.isfinite(p.grad).all(), n
    grads = torch.cat([p.grad.float().flatten() for n, p in model.named_parameters() if not n.startswith("fc.")])
    return logits, grads


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.detach().float() - want.detach()).norm() / want.detach().norm())


@pytest.mark.parametrize("name", list_models())
def test_autocast_and_bf16_model_match_fp32(name):
    clip, weights = _inputs()
    model = _model(name).eval()
    ref, ref_grads = _step(model, clip, weights, None)
    results = {"bf16 autocast": _step(model, clip, weights, torch.bfloat16)}
    if name in FP16_VARIANTS:
        results["fp16 autocast"] = _step(model, clip, weights, torch.float16)
    model.to(torch.bfloat16)  # DeepSpeed's bf16 mode: parameters and input in bf16
    results["bf16 model"] = _step(model, clip.bfloat16(), weights, None)
    for case, (logits, grads) in results.items():
        assert logits.dtype == (torch.float16 if case.startswith("fp16") else torch.bfloat16), case
        max_error, min_cosine = TOLERANCE[logits.dtype]
        error = _relative_error(logits, ref)
        assert error < max_error, f"{case}: logits relative error {error:.4f}"
        cosine = float(torch.nn.functional.cosine_similarity(grads, ref_grads, dim=0))
        assert cosine > min_cosine, f"{case}: gradient cosine {cosine:.4f}"


@pytest.mark.parametrize("name", list_models())
def test_training_step_in_bf16_has_finite_gradients(name):
    """Train mode (batch statistics in BN), both ways: the step a bf16 training run takes."""
    clip, weights = _inputs()
    model = _model(name).train()
    logits, _ = _step(model, clip, weights, torch.bfloat16)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    logits, _ = _step(model.to(torch.bfloat16), clip.bfloat16(), weights, None)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
