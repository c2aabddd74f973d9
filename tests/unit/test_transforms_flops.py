"""Clip normalisation and the complexity report."""
from __future__ import annotations

import pytest
import torch

from tsi_model import IMAGENET_MEAN, IMAGENET_STD, get_model, normalize_clip
from tsi_model.flops import count_macs


def test_normalize_clip_values_shape_and_dtype():
    clip = torch.randint(0, 256, (2, 3, 3, 4, 5), dtype=torch.uint8)
    out = normalize_clip(clip)
    assert out.dtype == torch.float32 and out.shape == clip.shape and out.device == clip.device
    for c in range(3):
        expected = (clip[:, :, c].float() / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        torch.testing.assert_close(out[:, :, c], expected)
    assert normalize_clip(clip[0]).shape == (1, 3, 3, 4, 5)
    assert normalize_clip(clip, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_normalize_clip_rejects_wrong_input():
    with pytest.raises(TypeError, match="uint8"):
        normalize_clip(torch.zeros(1, 2, 3, 4, 4))
    with pytest.raises(ValueError, match="RGB"):
        normalize_clip(torch.zeros(1, 2, 4, 4, 3, dtype=torch.uint8))


def test_attention_is_counted_and_matches_the_formula():
    x = torch.randn(1, 4, 3, 96, 96)
    tsn = count_macs(get_model("tsn_r50", width=16), x)
    tsi = count_macs(get_model("tsi_r50", width=16), x)
    fast = count_macs(get_model("tsi_r50_fast_align", width=16), x)
    assert tsn.attention_macs == 0 and tsi.macs > tsn.macs
    # res2 of a 96x96 input is 24x24 with c = 16/16 = 1; 3 blocks, 3 pairs per clip, two products
    res2 = 3 * (2 * 3 * 576 * 576 * 1)
    assert tsi.attention_macs > res2
    assert tsi.macs - tsn.macs > tsi.attention_macs  # attention is inside the total
    # fast alignment pools keys/values 2x2 on maps above 400 positions: res2 (576) but not res3 (144)
    res3 = 4 * (2 * 3 * 144 * 144 * 2)
    res2_fast = 3 * (2 * 3 * 576 * 144 * 1)
    assert tsi.attention_macs - fast.attention_macs == res2 - res2_fast
    assert res3 < tsi.attention_macs


# the temporal unit of res2..res5 at width 16 on a 32x32 input: (3x3 conv width C, positions per frame)
UNIT_SHAPES = ((16, 64), (32, 16), (64, 4), (128, 1))


def test_mta_and_concat_fusion_macs_are_their_convs():
    x = torch.randn(1, 4, 3, 32, 32)
    options = dict(width=16, layers=(1, 1, 1, 1))
    tsn, tsi, mta, concat = (
        count_macs(get_model(name, **options), x).macs
        for name in ("tsn_r50", "tsi_r50", "r50_mta", "tsi_r50_fusion_concat")
    )
    # MTA: three groups of w = C/4 channels, a 3x3 conv (9 w^2 per position) after a 3-tap temporal conv (3 w)
    per_frame = sum(3 * (9 * (c // 4) ** 2 + 3 * (c // 4)) * hw for c, hw in UNIT_SHAPES)
    assert mta - tsn == 4 * per_frame
    # concatenation fusion: one 2C -> C 1x1 conv per block on top of TSI
    assert concat - tsi == 4 * sum(2 * c * c * hw for c, hw in UNIT_SHAPES)
