"""The temporal modules against their equations on small tensors."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tsi_model.resnet import Bottleneck
from tsi_model.temporal.cti import CrossScaleTemporalIntegration
from tsi_model.temporal.mta import MultipleTemporalAggregation
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


# --- Equations pinned by hand-computed values: tiny tensors, weights set by hand -----------------


def _eval_identity_bn(bn: torch.nn.BatchNorm2d, bias: float = 0.0) -> None:
    """Eval-mode BN that is exactly y = x + bias (unit scale, zero running mean, eps 0)."""
    bn.eval()
    bn.eps = 0.0
    with torch.no_grad():
        bn.weight.fill_(1.0)
        bn.bias.fill_(bias)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)


def _centre_tap(conv: torch.nn.Conv2d, value: float) -> None:
    """A 3x3 conv that multiplies its (single-position) input by ``value``: only the centre tap is set."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1, 1] = value


def _temporal_taps(conv: DepthwiseTemporalConv, taps: list[float]) -> None:
    """out[t] = taps[0] x[t-1] + taps[1] x[t] + taps[2] x[t+1] for every channel, no bias."""
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(taps).expand(conv.channels, 1, 3))
        conv.bias.zero_()


def _eq3_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """One frame pair, c=4, two positions (1x2 map). Frame t's queries live on channel 0:
    q = (0, 2 ln 2); frame t+1's keys are (1, 2) on channel 0 and 1 on channels 1-3."""
    current = torch.zeros(1, 1, 4, 1, 2)
    current[0, 0, 0] = torch.tensor([0.0, 2 * math.log(2)])
    following = torch.ones(1, 1, 4, 1, 2)
    following[0, 0, 0] = torch.tensor([1.0, 2.0])
    return current, following


def test_eq3_saliency_alignment_by_hand():
    # scores q_i k_j / sqrt(4): position 0 -> (0, 0), softmax (1/2, 1/2); position 1 -> (ln 2, 2 ln 2),
    # softmax (2, 4) / 6 = (1/3, 2/3). Read-out on channel 0: 1.5 and 1/3 + 4/3 = 5/3; channels 1-3
    # read 1. Eq. 3 multiplies by frame t+1: channel 0 -> (1 * 1.5, 2 * 5/3), channels 1-3 -> 1.
    expected = torch.ones(1, 1, 4, 1, 2)
    expected[0, 0, 0] = torch.tensor([1.5, 10 / 3])
    current, following = _eq3_inputs()
    for impl in ("fused", "chunked"):
        torch.testing.assert_close(saliency_alignment(current, following, impl=impl), expected)


def _sme(channels: int, **options) -> SalientMotionExcitation:
    sme = SalientMotionExcitation(channels, num_frames=2, options=SMEOptions(**options)).eval()
    _eval_identity_bn(sme.reduce_bn)
    _eval_identity_bn(sme.expand_bn)
    return sme


def test_eq4_eq5_pyramid_cascade_and_difference_by_hand():
    sme = _sme(16, pyramid_levels=2, saliency_alignment=False)  # K = 2: three depth-wise convs
    for conv, tap in zip(sme.pyramid, (2.0, 3.0, 0.5)):
        _centre_tap(conv, tap)
    reduced = torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)  # (T=2, c=1, 1, 1): X_t = 1, X_{t+1}^{sa} = 3
    # Eq. 4: D_0 = 2 * 3 = 6; D_1 = 3 * (6 + 3) = 27; D_2 = 0.5 * (27 + 3) = 15
    # Eq. 5: M = (6 - 1) + (27 - 1) + (15 - 1) = 45
    assert sme.motion(reduced).flatten().tolist() == [45.0]


def test_eq6_eq7_channel_attention_and_residual_by_hand():
    sme = _sme(2, reduction=2, pyramid_levels=0, saliency_alignment=False)
    with torch.no_grad():
        sme.reduce.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))  # reduced = channel 0
        sme.expand.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
    _centre_tap(sme.pyramid[0], 1.0)
    # (T=2, C=2, 1x2 map); frame 0 = [[1, 1], [4, 2]], frame 1 = [[3, 5], [-1, 0]]
    x = torch.tensor([[[[1.0, 1.0]], [[4.0, 2.0]]], [[[3.0, 5.0]], [[-1.0, 0.0]]]])
    # motion of frame 0: D_0 - X_t = (3, 5) - (1, 1) = (2, 4); Pool = mean = 3;
    # Eq. 6: A_0 = sigmoid(expand(3)) = (sigmoid(3), sigmoid(-6)); the last frame's motion is 0: A = 1/2
    a0 = (1 / (1 + math.exp(-3.0)), 1 / (1 + math.exp(6.0)))  # sigmoid(3), sigmoid(-6)
    # Eq. 7: X + X * A
    expected = torch.tensor(
        [
            [[[1 + a0[0], 1 + a0[0]]], [[4 * (1 + a0[1]), 2 * (1 + a0[1])]]],
            [[[4.5, 7.5]], [[-1.5, 0.0]]],
        ]
    )
    torch.testing.assert_close(sme(x), expected)


def _cti(channels: int, num_frames: int, taps: list[float]) -> CrossScaleTemporalIntegration:
    cti = CrossScaleTemporalIntegration(channels, num_frames, groups=channels, temporal_init="identity")
    for conv in cti.tconv:
        _temporal_taps(conv, taps)
    return cti


def test_eq8_eq10_cascade_by_hand():
    cti = _cti(4, num_frames=2, taps=[0.0, 1.0, 1.0])  # G = 4 groups of one channel; out[t] = x[t] + x[t+1]
    with torch.no_grad():
        for fc in cti.fc:  # constant logits (ln 3, 0): alpha = softmax over the scales = 3/4
            fc.weight.zero_()
            fc.bias.copy_(torch.tensor([math.log(3.0), 0.0]))
    # frames t = 0, 1 of groups 0..3 (one channel, 1x1 map): X_0 = (1, 2), X_1 = (4, 0), X_2 = (0, 8), X_3 = (2, 2)
    x = torch.tensor([[1.0, 4.0, 0.0, 2.0], [2.0, 0.0, 8.0, 2.0]]).view(2, 4, 1, 1)
    # Eq. 10: CI = 3/4 X_g + 1/4 T_{g-1}; Eq. 8: T_g = Conv1D(CI), T_0 = X_0
    # g=1: CI = (3.25, 0.5)          -> T_1 = (3.75, 0.5)
    # g=2: CI = (0.9375, 6.125)      -> T_2 = (7.0625, 6.125)
    # g=3: CI = (3.265625, 3.03125)  -> T_3 = (6.296875, 3.03125)
    expected = torch.tensor([[1.0, 3.75, 7.0625, 6.296875], [2.0, 0.5, 6.125, 3.03125]]).view(2, 4, 1, 1)
    torch.testing.assert_close(cti(x), expected)


def test_eq9_pools_the_sum_of_both_scales_by_hand():
    cti = _cti(2, num_frames=1, taps=[0.0, 1.0, 0.0])  # G = 2, identity Conv1D: output group 1 = CI
    with torch.no_grad():
        cti.fc[0].weight.copy_(torch.tensor([[1.0], [0.0]]))  # logits (p, 0): alpha = sigmoid(p)
        cti.fc[0].bias.zero_()
    # one frame, 1x2 map: T_0 = X_0 = (1, 3), X_1 = (0, 2)
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 2.0]]]])
    # Eq. 9: p = Pool(T_0 + X_1) = (1 + 0 + 3 + 2) / 2 = 3 (pooling X_1 alone would give 1, T_0 alone 2)
    alpha = 1 / (1 + math.exp(-3.0))
    # Eq. 10: alpha X_1 + (1 - alpha) T_0
    expected_group1 = torch.tensor([[[(1 - alpha) * 1.0, alpha * 2.0 + (1 - alpha) * 3.0]]])
    out = cti(x)
    torch.testing.assert_close(out[0, :1], x[0, :1])
    torch.testing.assert_close(out[0, 1:], expected_group1)


def test_mta_cascade_by_hand():
    mta = MultipleTemporalAggregation(4, num_frames=2, groups=4).eval()
    for tconv in mta.tconv:
        _temporal_taps(tconv, [0.0, 1.0, 1.0])  # out[t] = x[t] + x[t+1]
    for (conv, bn, _), tap, bias in zip(mta.spatial, (0.5, 0.25, -1.0), (0.0, 0.0, 10.0)):
        _centre_tap(conv, tap)
        _eval_identity_bn(bn, bias)
    x = torch.tensor([[1.0, 4.0, 0.0, 2.0], [2.0, 0.0, 8.0, 2.0]]).view(2, 4, 1, 1)  # X_0..X_3 over t = 0, 1
    # group 0 passes: (1, 2)
    # g=1: relu(0.5 * Tmp(X_1)) = relu(0.5 * (4, 0)) = (2, 0)  [no T_0 added: TEA's equation]
    # g=2: Tmp(X_2 + T_1) = Tmp((2, 8)) = (10, 8) -> relu(0.25 * .) = (2.5, 2)
    # g=3: Tmp(X_3 + T_2) = Tmp((4.5, 4)) = (8.5, 4) -> relu(-1 * . + 10) = (1.5, 6)
    expected = torch.tensor([[1.0, 2.0, 2.5, 1.5], [2.0, 0.0, 2.0, 6.0]]).view(2, 4, 1, 1)
    torch.testing.assert_close(mta(x), expected)


class _Probe(torch.nn.Module):
    """Stands in for the temporal unit: records what it sees and returns zeros."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return torch.zeros_like(x)


def test_temporal_unit_sits_after_conv2_and_feeds_conv3():
    """Sec. 3.4: 1x1 -> 3x3 -> SME/CTI -> 1x1. A stride-2 block tells the places apart by shape."""
    downsample = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1, stride=2, bias=False), torch.nn.BatchNorm2d(16))
    probe = _Probe()
    block = Bottleneck(8, 4, stride=2, downsample=downsample, temporal=probe).eval()
    for bn in (block.bn1, block.bn2, block.bn3, downsample[1]):
        _eval_identity_bn(bn, bias=0.5)
    x = rand(2, 8, 6, 6)
    out = block(x)
    # before conv1 it would see (2, 8, 6, 6), between conv1 and conv2 (2, 4, 6, 6), after conv3 16 channels
    assert probe.seen.shape == (2, 4, 3, 3)
    after_conv2 = torch.relu(block.conv2(torch.relu(block.conv1(x) + 0.5)) + 0.5)  # BN = +0.5 here
    torch.testing.assert_close(probe.seen, after_conv2)
    # its output is conv3's input: zeros give relu(bn3(conv3(0)) + identity) = relu(0.5 + downsample(x))
    torch.testing.assert_close(out, torch.relu(0.5 + downsample[0](x) + 0.5))
