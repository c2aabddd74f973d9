"""Behaviour of the TSN/TSM/TSI networks: shapes, gradients, temporal sensitivity, ablation structure."""
from __future__ import annotations

import pytest
import torch

from tsi_model import ABLATIONS, get_model, list_models
from tsi_model.temporal import TemporalUnit, TemporalUnitConfig
from tsi_model.temporal.sme import SalientMotionExcitation

SMALL = dict(width=16, num_classes=5)
# width of the 3x3 conv (where the temporal unit sits) in each of ResNet-50's 16 blocks, at width 16
UNIT_CHANNELS = [16] * 3 + [32] * 4 + [64] * 6 + [128] * 3


def clip(n: int = 2, t: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["tsn_r50", "tsm_r50", "tsi_r50"])
@pytest.mark.parametrize("t,size,classes", [(2, 32, 3), (5, 48, 11), (8, 40, 174)])
def test_output_shape_for_frames_sizes_classes(name, t, size, classes):
    model = get_model(name, width=16, num_classes=classes, num_frames=t)
    out = model(clip(n=2, t=t, size=size))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()


def test_clip_length_may_change_after_construction():
    model = get_model("tsi_r50", **SMALL, num_frames=8).eval()
    assert model(clip(t=3)).shape == (2, 5)
    assert all(m.num_frames == 3 for m in model.modules() if hasattr(m, "num_frames"))


def test_temporal_models_refuse_single_frame_clips():
    with pytest.raises(ValueError, match="at least 2 frames"):
        get_model("tsi_r50", **SMALL)(clip(t=1))


@pytest.mark.parametrize("name", list_models())
def test_every_variant_runs_and_gradients_reach_every_parameter(name):
    model = get_model(name, **SMALL, num_frames=4)
    model(clip(t=4)).logsumexp(dim=1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing[:5]}"
    # every temporal module receives a non-zero gradient somewhere
    temporal = [p.grad.abs().sum() for n, p in model.named_parameters() if ".temporal." in n]
    if name != "tsn_r50" and name != "tsm_r50":
        assert temporal and sum(temporal) > 0


def test_small_width_keeps_paper_ratios_meaningful():
    model = get_model("tsi_r50", **SMALL)
    reduced = {}
    for module in model.modules():
        if isinstance(module, SalientMotionExcitation):
            # r = 16 exactly: no stage is so narrow that the max(1, C // r) floor kicks in
            assert module.reduce.in_channels == 16 * module.reduced_channels == 16 * module.reduce.out_channels
            reduced[module.reduce.in_channels] = module.reduced_channels
    assert reduced == {16: 1, 32: 2, 64: 4, 128: 8}  # res2..res5 at width 16
    units = [m for m in model.modules() if isinstance(m, TemporalUnit)]
    # G = 4 groups of C/4 channels, C being the 3x3 conv's width that SME also sees
    assert all(u.aggregation.groups == 4 for u in units)
    assert all(4 * u.aggregation.tconv[0].channels == u.motion.reduce.in_channels for u in units)


@pytest.mark.slow
def test_full_width_tsi_runs_forward():
    model = get_model("tsi_r50", num_classes=400, num_frames=2).eval()
    assert sum(isinstance(m, TemporalUnit) for m in model.modules()) == 16
    with torch.no_grad():
        out = model(clip(n=1, t=2, size=64))
    assert out.shape == (1, 400) and torch.isfinite(out).all()


def test_tsn_is_invariant_to_frame_order_tsm_tsi_are_not():
    x = clip(n=2, t=6, size=32)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    reverse = torch.arange(5, -1, -1)
    with torch.no_grad():
        tsn = get_model("tsn_r50", **SMALL).eval()
        torch.testing.assert_close(tsn(x), tsn(x[:, perm]), rtol=1e-4, atol=1e-5)
        for name in ("tsm_r50", "tsi_r50"):
            model = get_model(name, **SMALL).eval()
            _randomise_batchnorm(model)
            diff = (model(x) - model(x[:, reverse])).abs().max()
            assert diff > 1e-4, f"{name} did not react to reversed frames (max diff {diff})"


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    """Give BN non-trivial affine terms so an untrained net's outputs are not ~constant."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def _params(name: str, **kw) -> int:
    return sum(p.numel() for p in get_model(name, **SMALL, **kw).parameters())


def _units(name: str) -> list[TemporalUnit]:
    return [m for m in get_model(name, **SMALL).modules() if isinstance(m, TemporalUnit)]


def test_ablation_parameter_counts_follow_the_documented_structure():
    tsn, tim, cti, tsi = (_params(n) for n in ("tsn_r50", "r50_tim", "r50_cti", "tsi_r50"))
    assert _params("tsm_r50") == tsn  # the shift has no parameters
    assert tim > tsn and cti > tim  # CTI adds the FCs of Eq. 9 on top of per-group temporal convs
    sme = _params("r50_tim_sme")
    assert sme > tim
    # saliency alignment is parameter-free; w/o CA reuses the same expansion without pooling
    assert _params("r50_tim_sme_no_sa") == sme == _params("r50_tim_sme_no_ca")
    # TEA's ME: one depth-wise conv instead of K+1 = 5
    units = _units("r50_tim_me")
    assert all(len(u.motion.pyramid) == 1 and not u.motion.options.saliency_alignment for u in units)
    assert all(len(u.motion.pyramid) == 5 for u in _units("tsi_r50"))
    assert _params("r50_tim_me") < sme
    assert tsi == sme - tim + cti  # TSI = SME + CTI
    assert _params("tsi_r50_fusion_sum") == tsi
    assert _params("tsi_r50_fusion_concat") == tsi + sum(2 * c * c for c in UNIT_CHANNELS)  # 2C -> C 1x1
    # MTA: per block three groups of C/4 channels, each a 3x3 conv (9 w^2), its BN (2 w) and a
    # depth-wise temporal conv (3 w taps + w biases); nothing else
    mta = sum(3 * (9 * w * w + 2 * w + 4 * w) for w in (c // 4 for c in UNIT_CHANNELS))
    assert _params("r50_mta") == tsn + mta
    assert _params("r50_mta") > cti > tim


def test_mta_units_match_their_row():
    units = _units("r50_mta")
    assert len(units) == 16 and all(u.motion is None for u in units)
    assert [4 * u.aggregation.tconv[0].channels for u in units] == UNIT_CHANNELS
    with pytest.raises(ValueError, match="identity"):
        get_model("r50_mta", **SMALL, identity_init=True)


def test_table6_rows_place_the_documented_number_of_blocks():
    expected = {
        "tsi_r50_res2_1block": ["layer1.0"],
        "tsi_r50_res3_1block": ["layer2.0"],
        "tsi_r50_res4_1block": ["layer3.0"],
        "tsi_r50_res5_1block": ["layer4.0"],
        "tsi_r50_res2to5_4blocks": ["layer1.0", "layer2.0", "layer3.0", "layer4.0"],
    }
    for name, blocks in expected.items():
        model = get_model(name, **SMALL)
        placed = [n.removesuffix(".temporal") for n, m in model.named_modules() if isinstance(m, TemporalUnit)]
        assert placed == blocks, name
    assert len(_units("tsi_r50")) == 16


def _placed(model: torch.nn.Module) -> list[str]:
    return [n.removesuffix(".temporal") for n, m in model.named_modules() if isinstance(m, TemporalUnit)]


@pytest.mark.parametrize("name", list_models())
def test_layers_builds_the_requested_depth_for_every_builder(name):
    model = get_model(name, **SMALL, layers=(1, 2, 1, 1), num_frames=2)
    depth = [len(getattr(model, f"layer{i}")) for i in range(1, 5)]
    assert depth == [1, 2, 1, 1]
    assert model.builder_options["layers"] == (1, 2, 1, 1)
    assert get_model(name, **SMALL).builder_options["layers"] == (3, 4, 6, 3)


def test_layers_and_blocks_combine():
    # blocks counts leading blocks within each selected stage of the depth layers builds
    model = get_model("tsi_r50", **SMALL, layers=(2, 3, 1, 2), blocks=2)
    assert _placed(model) == ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer4.0", "layer4.1"]
    assert len(_placed(get_model("tsi_r50", **SMALL, layers=(2, 3, 1, 2)))) == 8  # blocks="all"
    model = get_model("tsi_r50_res2to5_4blocks", **SMALL, layers=(2, 2, 2, 2))
    assert _placed(model) == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert _placed(get_model("tsi_r50", **SMALL, layers=(1, 1, 1, 1), stages=(3, 5))) == ["layer2.0", "layer4.0"]


@pytest.mark.parametrize("layers", [(3, 4, 6), (3, 4, 6, 3, 1), (0, 1, 1, 1), (1, 1.0, 1, 1), (True, 1, 1, 1), "1111"])
def test_layers_must_be_four_positive_ints(layers):
    for name in ("tsn_r50", "tsm_r50", "tsi_r50", "r50_cti"):
        with pytest.raises(ValueError, match="layers must be 4 positive ints"):
            get_model(name, **SMALL, layers=layers)


def test_switches_without_parameter_change_still_change_the_computation():
    x = clip(t=4)
    small = {**SMALL, "dropout": 0.0}  # train-mode BN (batch statistics) keeps activations bounded
    base = get_model("r50_tim_sme", **small)
    _randomise_batchnorm(base)
    for variant in ("r50_tim_sme_no_sa", "r50_tim_sme_no_ca"):
        other = get_model(variant, **small)
        other.load_state_dict(base.state_dict())
        with torch.no_grad():
            assert (base(x) - other(x)).abs().max() > 1e-5, variant


def test_ablation_names_are_registered_and_fixed_options_are_protected():
    assert set(ABLATIONS) <= set(list_models())
    with pytest.raises(TypeError, match="fixes"):
        get_model("r50_tim_sme_no_sa", saliency_alignment=True, **SMALL)
    with pytest.raises(TypeError, match="unknown option"):
        get_model("tsi_r50", reductoin=8, **SMALL)
    with pytest.raises(ValueError, match="unknown model"):
        get_model("tsi_r101")


def test_identity_init_makes_untrained_tsi_equal_the_2d_network():
    tsn = get_model("tsn_r50", **SMALL).eval()
    _randomise_batchnorm(tsn)
    tsi = get_model("tsi_r50", **SMALL, identity_init=True).eval()
    missing = tsi.load_state_dict(tsn.state_dict(), strict=False).missing_keys
    assert missing and all(".temporal." in k for k in missing)
    x = clip(t=4)
    with torch.no_grad():
        torch.testing.assert_close(tsi(x), tsn(x), rtol=1e-4, atol=1e-5)
        # and the paper's default initialisation does not (Eq. 7 scales by ~1.5, Eq. 10 mixes groups)
        default = get_model("tsi_r50", **SMALL).eval()
        default.load_state_dict(tsn.state_dict(), strict=False)
        assert (default(x) - tsn(x)).abs().max() > 1e-4


def test_channels_last_input_gives_the_same_result():
    model = get_model("tsi_r50", **SMALL).eval()
    x = clip(t=4)
    permuted = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # same values, HWC strides
    with torch.no_grad():
        torch.testing.assert_close(model(permuted), model(x))


def test_identity_init_fusions_start_as_documented():
    """cascade and concat start as the identity; sum starts as SME(X) + CTI(X) = 2X."""
    x = torch.relu(torch.randn(2 * 4, 16, 5, 5, generator=torch.Generator().manual_seed(0)))
    for fusion, factor in (("cascade", 1.0), ("concat", 1.0), ("sum", 2.0)):
        unit = TemporalUnit(16, 4, TemporalUnitConfig(fusion=fusion, identity_init=True)).eval()
        with torch.no_grad():
            torch.testing.assert_close(unit(x), factor * x, msg=fusion)
