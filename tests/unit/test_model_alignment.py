"""Eq. 3's bounded-memory fallback: the chunked saliency alignment against the fused kernel."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tsi_model import get_model
from tsi_model.temporal import sme
from tsi_model.temporal.sme import align_attention, chunked_attention, saliency_alignment


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op returns (forward, checkpoint recomputation, backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        self.numel = max([self.numel, *sizes])
        return out


def _attention_with_grads(impl_fn, query: torch.Tensor, key_value: torch.Tensor):
    query, key_value = query.clone().requires_grad_(), key_value.clone().requires_grad_()
    out = impl_fn(query, key_value)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out.detach(), query.grad, key_value.grad


def test_chunked_attention_equals_the_fused_kernel_forward_and_backward():
    query, key_value = rand(2, 3, 50, 4), rand(2, 3, 50, 4, seed=1)  # 50 rows: last block is partial
    fused = _attention_with_grads(lambda q, kv: F.scaled_dot_product_attention(q, kv, kv), query, key_value)
    for block in (1, 7, 50, 64):
        chunked = _attention_with_grads(lambda q, kv, b=block: chunked_attention(q, kv, block=b), query, key_value)
        for got, want in zip(chunked, fused):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_chunked_attention_bounds_the_largest_intermediate_by_the_block():
    b, p, hw, c, block = 1, 3, 256, 4, 16
    query = rand(b, p, hw, c).requires_grad_()
    key_value = rand(b, p, hw, c, seed=1).requires_grad_()
    with LargestTensor() as forward:
        out = chunked_attention(query, key_value, block=block)
    with LargestTensor() as backward:
        out.sum().backward()
    bound = b * p * block * hw  # one block's scores: 12,288 here, vs 196,608 for the full map
    assert forward.numel <= bound and backward.numel <= bound, (forward.numel, backward.numel)
    assert query.grad is not None and key_value.grad is not None
    # the probe does see a materialised map: the explicit product builds all HW x HW scores
    with LargestTensor() as explicit:
        torch.softmax(query @ key_value.transpose(-1, -2), dim=-1) @ key_value
    assert explicit.numel == b * p * hw * hw


def test_default_block_fits_the_score_budget(monkeypatch):
    monkeypatch.setattr(sme, "CHUNK_SCORE_ELEMENTS", 3 * 20 * 100)  # 20 query rows of 100 keys, 3 pairs
    query, key_value = rand(1, 3, 100, 2), rand(1, 3, 100, 2, seed=1)
    with LargestTensor() as probe:
        out = chunked_attention(query, key_value)
    assert probe.numel == 3 * 20 * 100
    torch.testing.assert_close(out, F.scaled_dot_product_attention(query, key_value, key_value))


def _kernel_names(fn) -> set[str]:
    with torch.profiler.profile() as prof:
        fn()
    return {e.name for e in prof.events()}


def test_auto_takes_chunked_only_when_no_fused_kernel_accepts_the_input(monkeypatch):
    cur, nxt = rand(1, 2, 4, 6, 6), rand(1, 2, 4, 6, 6, seed=1)
    fused = saliency_alignment(cur, nxt)
    assert any("flash_attention" in n for n in _kernel_names(lambda: saliency_alignment(cur, nxt)))
    # as on a GPU where flash / memory-efficient / cuDNN all refuse the shape or dtype
    monkeypatch.setattr(sme, "_fused_kernel_accepts", lambda query, key_value: False)
    names = _kernel_names(lambda: saliency_alignment(cur, nxt))
    assert not any("attention" in n for n in names) and "aten::bmm" in names
    torch.testing.assert_close(saliency_alignment(cur, nxt), fused, rtol=1e-5, atol=1e-6)
    # "fused" is SDPA as is, whatever the probe says
    assert any("flash_attention" in n for n in _kernel_names(lambda: saliency_alignment(cur, nxt, impl="fused")))


def test_chunked_alignment_under_autocast_returns_the_activation_dtype():
    query, key_value = rand(1, 2, 36, 4), rand(1, 2, 36, 4, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chunked = align_attention(query, key_value, "chunked")
        fused = align_attention(query, key_value, "fused")
    assert chunked.dtype == fused.dtype == torch.bfloat16
    # chunked keeps its scores and softmax in fp32: within bf16 rounding of the fused kernel
    torch.testing.assert_close(chunked.float(), fused.float(), rtol=2e-2, atol=2e-2)


def test_network_with_chunked_alignment_equals_the_fused_one():
    options = dict(width=16, num_classes=5, num_frames=4, layers=(1, 1, 1, 1))
    fused = get_model("tsi_r50", **options).eval()
    chunked = get_model("tsi_r50", **options, alignment_impl="chunked").eval()
    chunked.load_state_dict(fused.state_dict())
    clip = rand(2, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(chunked(clip), fused(clip), rtol=1e-4, atol=1e-5)
    assert chunked.builder_options["alignment_impl"] == "chunked"
    with pytest.raises(ValueError, match="alignment_impl"):
        get_model("tsi_r50", **options, alignment_impl="flash")
