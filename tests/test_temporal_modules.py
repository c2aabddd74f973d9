"""The temporal modules against their equations on small tensors."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tsi_model.temporal.cti import CrossScaleTemporalIntegration
from tsi_model.temporal.shift import TemporalShift
from tsi_model.temporal.sme import SalientMotionExcitation, SMEOptions, saliency_alignment
from tsi_model.temporal.tconv import DepthwiseTemporalConv

gen = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.randn(*shape, generator=gen)


def test_saliency_alignment_matches_eq3_written_out():
    cur, nxt = rand(2, 3, 4, 5, 6), rand(2, 3, 4, 5, 6)  # (B, pairs, c, H, W)
    out = saliency_alignment(cur, nxt)
    q = cur.flatten(3).transpose(-1, -2)
    k = nxt.flatten(3).transpose(-1, -2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), dim=-1)  # HW x HW, explicit
    expected = nxt * (weights @ k).transpose(-1, -2).reshape(nxt.shape)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_saliency_alignment_uses_the_fused_kernel_not_an_hw_by_hw_map():
    cur = rand(1, 7, 4, 28, 28).requires_grad_()
    nxt = rand(1, 7, 4, 28, 28).requires_grad_()
    with torch.profiler.profile() as prof:
        saliency_alignment(cur, nxt).sum().backward()
    names = {e.name for e in prof.events()}
    assert any("flash_attention" in n or "efficient_attention" in n for n in names), names
    assert "aten::_scaled_dot_product_attention_math" not in names
    assert "aten::bmm" not in names


def test_fast_alignment_pools_keys_only_on_large_maps():
    cur, nxt = rand(1, 2, 4, 8, 8), rand(1, 2, 4, 8, 8)
    faithful = saliency_alignment(cur, nxt)
    pooled = saliency_alignment(cur, nxt, kv_pool=2, pool_min_hw=0)
    untouched = saliency_alignment(cur, nxt, kv_pool=2, pool_min_hw=64)  # 8x8 is not > 64
    assert pooled.shape == faithful.shape
    assert (pooled - faithful).abs().max() > 1e-4
    torch.testing.assert_close(untouched, faithful)


def test_sme_pyramid_and_last_frame_follow_eq4_eq5():
    sme = SalientMotionExcitation(32, num_frames=3, options=SMEOptions()).eval()
    x = rand(2 * 3, 32, 6, 6)
    reduced = sme.reduce_bn(sme.reduce(x))
    frames = reduced.view(2, 3, 2, 6, 6)
    aligned = saliency_alignment(frames[:, :-1], frames[:, 1:]).reshape(4, 2, 6, 6)
    d = sme.pyramid[0](aligned)
    total = d
    for conv in sme.pyramid[1:]:
        d = conv(d + aligned)
        total = total + d
    expected = (total - 5 * frames[:, :-1].reshape(4, 2, 6, 6)).view(2, 2, 2, 6, 6)
    torch.testing.assert_close(sme.motion(reduced), expected, rtol=1e-5, atol=1e-5)
    # Eq. 6-7 with zero motion on the last frame: A_last = sigmoid(BN(expand(0)))
    out = sme(x).view(2, 3, 32, 6, 6)
    a_last = torch.sigmoid(sme.expand_bn(sme.expand(torch.zeros(1, 2, 1, 1))))
    x_last = x.view(2, 3, 32, 6, 6)[:, -1]
    torch.testing.assert_close(out[:, -1], x_last + x_last * a_last.view(1, 32, 1, 1))


def test_cti_keeps_group0_and_widens_receptive_field_per_group():
    cti = CrossScaleTemporalIntegration(16, num_frames=8, temporal_init="identity")
    with torch.no_grad():
        for conv in cti.tconv:
            conv.weight.copy_(rand(*conv.weight.shape))
    x = rand(8, 16, 3, 3)
    out = cti(x)
    torch.testing.assert_close(out[:, :4], x[:, :4])  # Eq. 8, g = 0
    # an impulse at frame 0 of group 1 reaches frames 0..g of group g (one kernel-3 conv per group);
    # Eq. 9's pooled attention is frame-local, so nothing else moves
    bumped = x.clone()
    bumped[0, 4:8] += 5.0
    delta = (cti(bumped) - out).abs().view(8, 4, 4, 3, 3).amax(dim=(2, 3, 4))  # (T, G)
    for g in range(1, 4):
        reached = (delta[:, g] > 1e-6).nonzero().flatten().tolist()
        assert reached == list(range(g + 1)), (g, reached)


def test_cti_softmax_over_scales_is_a_convex_combination():
    cti = CrossScaleTemporalIntegration(8, num_frames=2, ci_softmax="scales")
    prev, cur = rand(2, 2, 3, 3), rand(2, 2, 3, 3)
    weight = cti.integration_weight(0, prev, cur)
    assert ((weight > 0) & (weight < 1)).all()
    chan = CrossScaleTemporalIntegration(8, num_frames=2, ci_softmax="channels")
    alpha = 1 - chan.integration_weight(0, prev, cur).flatten(1)
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(2))


def test_depthwise_temporal_conv_equals_conv3d_and_shift_init_equals_tsm():
    conv = DepthwiseTemporalConv(16, num_frames=5, init="identity")
    with torch.no_grad():
        conv.weight.copy_(rand(16, 1, 3))
        conv.bias.copy_(rand(16))
    x = rand(2 * 5, 16, 4, 4)
    ref = F.conv3d(
        x.view(2, 5, 16, 4, 4).transpose(1, 2), conv.weight.view(16, 1, 3, 1, 1), conv.bias, padding=(1, 0, 0), groups=16
    ).transpose(1, 2).reshape(10, 16, 4, 4)
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)
    shift_init = DepthwiseTemporalConv(16, num_frames=5, init="shift")
    torch.testing.assert_close(shift_init(x), TemporalShift(5, fold_div=8)(x))


def test_temporal_shift_moves_one_eighth_each_way_with_zero_ends():
    x = torch.arange(3.0).view(1, 3, 1, 1, 1).expand(1, 3, 16, 1, 1).reshape(3, 16, 1, 1)
    out = TemporalShift(3)(x).view(3, 16)
    assert out[:, 0].tolist() == [1.0, 2.0, 0.0]  # channels [0, 2): from frame t+1
    assert out[:, 2].tolist() == [0.0, 0.0, 1.0]  # channels [2, 4): from frame t-1
    assert out[:, 5].tolist() == [0.0, 1.0, 2.0]  # the rest unchanged
