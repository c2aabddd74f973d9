"""Salient Motion Excitation, SME (TSI paper Sec. 3.2, Eq. 3-7), and TEA's ME as its special case.

Pipeline on the output X of a bottleneck's 3x3 conv, frames folded as ``(N*T, C, H, W)``:
1x1 reduction to C/r (+BN) -> saliency alignment of frame t+1 to frame t (Eq. 3) -> pyramidal
feature difference with K+1 cascaded depth-wise 3x3 convs (Eq. 4-5) -> spatial pooling, 1x1
expansion (+BN), sigmoid (Eq. 6) -> X + X * A (Eq. 7). The last frame has no successor; its motion
is zero (TEA's convention), so its attention is sigmoid(BN(0)).

Choices where the paper is silent (each a switch where reasonable people would differ):
- Attention scaling: 1/sqrt(C/r), the usual scaled dot product; the "normalization" of Eq. 3 is a
  softmax over the key (frame t+1) positions, so each query position of frame t reads a convex
  combination of frame t+1's features.
- Memory: the HW x HW map is never materialised. res2 has HW=3136, where a materialised map is
  ~39 MB per frame pair (fp32), ~2.2 GB for a batch of 8 clips of 8 frames. ``alignment_impl``:
  ``"auto"`` (default) runs ``F.scaled_dot_product_attention``'s fused kernels (flash on CPU; flash,
  memory-efficient or cuDNN on CUDA) and, where none of them accepts the input (e.g. head dim
  C/16 = 4 in fp16 on a pre-Ampere GPU, which SDPA would hand to its math kernel), the chunked
  computation; ``"chunked"`` always computes it in blocks of query positions (exact, at most a
  block x HW score matrix at a time, forward and backward); ``"fused"`` calls SDPA as is, whatever
  kernel it picks.
- ``alignment_kv_pool`` (fast alignment, off by default): keys/values of frame t+1 are average-pooled
  by this stride before the attention on maps with more than ``alignment_pool_min_hw`` positions.
  Queries keep full resolution, so the output still has one aligned vector per position of frame t.
- BN after the reduction and after the expansion, as TEA's ME does; ``identity_init`` zero-initialises
  the expansion BN and centres the sigmoid (sigmoid - 0.5, as TEA), so A == 0 and SME is the identity
  at initialisation. Off by default: the paper's Eq. 7 scales X by ~1.5 at initialisation.
- Without channel attention (Table 4, "w/o CA") the motion map is expanded back to C channels at full
  resolution and added to X (motion used as features, as STM's CMM does) instead of gating X. The
  expansion BN then starts at zero gain (zero-init residual), since an unbounded motion map added in
  all 16 blocks otherwise makes the untrained network's activations explode.

TEA's ME (Table 5) is this module with no alignment, K=0 (one depth-wise 3x3 conv) and a centred
sigmoid: ``SMEOptions(saliency_alignment=False, pyramid_levels=0, centered_sigmoid=True)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tsi_model.temporal.base import FrameAware

AlignmentImpl = Literal["auto", "fused", "chunked"]
ALIGNMENT_IMPLS = ("auto", "fused", "chunked")
# scores per block of the chunked alignment, all frame pairs together: 64 MB in fp32
CHUNK_SCORE_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class SMEOptions:
    """Switches of SME; defaults are the paper's (r=16, K=4, alignment and channel attention on)."""

    reduction: int = 16
    pyramid_levels: int = 4
    saliency_alignment: bool = True
    channel_attention: bool = True
    alignment_kv_pool: int = 1
    alignment_pool_min_hw: int = 0
    centered_sigmoid: bool = False
    zero_init_attention: bool = False
    alignment_impl: AlignmentImpl = "auto"

    def __post_init__(self) -> None:
        _check_impl(self.alignment_impl)


def _check_impl(impl: str) -> None:
    if impl not in ALIGNMENT_IMPLS:
        raise ValueError(f"alignment_impl must be one of {ALIGNMENT_IMPLS}, got {impl!r}")


def _fused_kernel_accepts(query: torch.Tensor, key_value: torch.Tensor) -> bool:
    """Whether SDPA runs a fused kernel (never the HW x HW math kernel) on these inputs.

    CPU's flash kernel takes every float dtype and head dim; on CUDA the same checks SDPA's
    dispatcher makes decide (dtype, head dim, compute capability, grad, disabled backends).
    """
    if query.device.type != "cuda":
        return True
    cuda = torch.backends.cuda
    params = cuda.SDPAParams(query, key_value, key_value, None, 0.0, False, False)
    return (
        cuda.can_use_flash_attention(params)
        or cuda.can_use_efficient_attention(params)
        or cuda.can_use_cudnn_attention(params)
    )


def _attend_block(query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(c)) K for one block of query positions, computed in fp32."""
    with torch.autocast(query.device.type, enabled=False):
        q, kv = query.float(), key_value.float()
        scores = torch.matmul(q * q.shape[-1] ** -0.5, kv.transpose(-1, -2))
        return torch.matmul(torch.softmax(scores, dim=-1), kv).to(query.dtype)


def _attend_block_recomputed(query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
    """:func:`_attend_block` whose block x L scores autograd recomputes in backward, never saves."""
    return checkpoint(_attend_block, query, key_value, use_reentrant=False, preserve_rng_state=False)


def chunked_attention(
    query: torch.Tensor, key_value: torch.Tensor, block: int | None = None
) -> torch.Tensor:
    """Eq. 3's softmax(Q K^T / sqrt(c)) K over ``(B, P, L, c)`` inputs, in blocks of query rows.

    Each query row's softmax runs over all keys, so splitting the queries is exact; at most a
    ``(B, P, block, L)`` score matrix exists at a time. With autograd each block is recomputed in
    backward instead of saved, so training is bounded the same way. ``block`` defaults to what
    fits :data:`CHUNK_SCORE_ELEMENTS`.
    """
    *batch, queries, _ = query.shape
    if block is None:
        block = max(1, CHUNK_SCORE_ELEMENTS // (math.prod(batch) * key_value.shape[-2]))
    grad = torch.is_grad_enabled() and (query.requires_grad or key_value.requires_grad)
    attend = _attend_block_recomputed if grad else _attend_block
    rows = (query[..., start : start + block, :] for start in range(0, queries, block))
    return torch.cat([attend(r, key_value) for r in rows], dim=-2)


def align_attention(
    query: torch.Tensor, key_value: torch.Tensor, impl: AlignmentImpl = "auto"
) -> torch.Tensor:
    """Eq. 3's attention of ``(B, P, L, c)`` queries over keys = values, by ``impl`` (module doc)."""
    if torch.is_autocast_enabled(query.device.type):
        # SDPA is a lower-precision op under autocast; decide (and compute) at the dtype it runs in
        dtype = torch.get_autocast_dtype(query.device.type)
        query, key_value = query.to(dtype), key_value.to(dtype)
    if impl == "fused" or (impl == "auto" and _fused_kernel_accepts(query, key_value)):
        return F.scaled_dot_product_attention(query, key_value, key_value)
    _check_impl(impl)
    return chunked_attention(query, key_value)


def saliency_alignment(
    current: torch.Tensor,
    following: torch.Tensor,
    kv_pool: int = 1,
    pool_min_hw: int = 0,
    impl: AlignmentImpl = "auto",
) -> torch.Tensor:
    """Eq. 3: X_{t+1}^{sa} = X_{t+1} * softmax(X_t X_{t+1}^T / sqrt(c)) X_{t+1}, per frame pair.

    ``current`` (query, frame t) and ``following`` (key/value, frame t+1) are ``(B, P, c, H, W)``
    with P frame pairs; returns ``(B, P, c, H, W)``.
    """
    b, p, c, h, w = following.shape
    # the fused CPU/GPU kernels need a unit-stride last dim, else SDPA silently takes the math path
    query = current.flatten(3).transpose(-1, -2).contiguous()  # (B, P, HW, c)
    kv_source = following
    if kv_pool > 1 and h * w > pool_min_hw:
        pooled = F.avg_pool2d(following.reshape(b * p, c, h, w), kv_pool, ceil_mode=True)
        kv_source = pooled.view(b, p, c, *pooled.shape[-2:])
    key_value = kv_source.flatten(3).transpose(-1, -2).contiguous()  # (B, P, L, c)
    aligned = align_attention(query, key_value, impl)  # (B, P, HW, c)
    # Eq. 3: Hadamard product of frame t+1 with what each position of frame t reads from it
    return following * aligned.transpose(-1, -2).reshape(b, p, c, h, w)


class SalientMotionExcitation(FrameAware):
    """SME: channel attention from aligned, pyramidal frame differences (Eq. 3-7)."""

    def __init__(self, channels: int, num_frames: int, options: SMEOptions = SMEOptions()) -> None:
        super().__init__(num_frames)
        self.options = options
        reduced = max(1, channels // options.reduction)
        self.reduced_channels = reduced
        # 1x1 reduction by r (Sec. 3.2, "two 1x1 2D convolutions for channel reduction and recovery")
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=False)
        self.reduce_bn = nn.BatchNorm2d(reduced)
        # Conv2D_0 ... Conv2D_K of Eq. 4: depth-wise 3x3, cascaded
        self.pyramid = nn.ModuleList(
            nn.Conv2d(reduced, reduced, 3, padding=1, groups=reduced, bias=False)
            for _ in range(options.pyramid_levels + 1)
        )
        # 1x1 recovery to C (Sec. 3.2) feeding the sigmoid of Eq. 6
        self.expand = nn.Conv2d(reduced, channels, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(channels)
        if options.zero_init_attention or not options.channel_attention:
            nn.init.zeros_(self.expand_bn.weight)

    def motion(self, reduced: torch.Tensor) -> torch.Tensor:
        """LGMM: Eq. 3 alignment, Eq. 4 cascade, Eq. 5 difference; ``(N, T-1, c, H, W)``."""
        frames = self.unfold(reduced)
        current, following = frames[:, :-1], frames[:, 1:]
        opts = self.options
        if opts.saliency_alignment:
            # Eq. 3: saliency alignment of frame t+1 to frame t
            following = saliency_alignment(
                current, following, opts.alignment_kv_pool, opts.alignment_pool_min_hw,
                opts.alignment_impl,
            )
        n, p, c, h, w = following.shape
        # channels-last: oneDNN's NCHW depth-wise kernel is ~100x slower at c=4 (res2, r=16)
        aligned = following.reshape(n * p, c, h, w).contiguous(memory_format=torch.channels_last)
        # Eq. 4: D_0 = Conv_0(X^sa), D_k = Conv_k(D_{k-1} + X^sa)
        level = self.pyramid[0](aligned)
        total = level
        for conv in self.pyramid[1:]:
            level = conv(level + aligned)
            total = total + level
        # Eq. 5: M = sum_k (D_k - X_t) = sum_k D_k - (K+1) X_t
        levels = len(self.pyramid)
        motion = total - levels * current.reshape(n * p, c, h, w)
        return motion.view(n, p, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, _, h, w = x.shape
        reduced = self.reduce_bn(self.reduce(x))
        motion = self.motion(reduced)
        n = motion.shape[0]
        if self.options.channel_attention:
            # Eq. 6: A = sigmoid(expand(Pool(M))); the last frame's motion is zero
            pooled = motion.mean(dim=(3, 4), keepdim=True)
            pooled = torch.cat([pooled, pooled.new_zeros(n, 1, *pooled.shape[2:])], dim=1)
            logits = self.expand_bn(self.expand(pooled.reshape(nt, -1, 1, 1)))
            attention = torch.sigmoid(logits)
            if self.options.centered_sigmoid:
                attention = attention - 0.5
            # Eq. 7: X^SME = X + X * A
            return torch.addcmul(x, x, attention)
        # "w/o CA" ablation: motion expanded to C and added as features
        full = torch.cat([motion, motion.new_zeros(n, 1, *motion.shape[2:])], dim=1)
        return x + self.expand_bn(self.expand(full.reshape(nt, -1, h, w)))

    def attention_shapes(self, x_shape: torch.Size) -> tuple[int, int, int, int]:
        """(pairs, query positions, key positions, head dim) of the Eq. 3 attention for one input."""
        nt, _, h, w = x_shape
        pairs = (nt // self.num_frames) * (self.num_frames - 1)
        keys = h * w
        pool = self.options.alignment_kv_pool
        if pool > 1 and h * w > self.options.alignment_pool_min_hw:
            keys = -(-h // pool) * -(-w // pool)
        return pairs, h * w, keys, self.reduced_channels
