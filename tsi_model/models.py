"""Builders for TSN, TSM, TSI and the paper's ablation rows, behind ``get_model(name, **kwargs)``.

Every builder is keyword-only and takes ``num_classes``, ``num_frames``, ``dropout``,
``pretrained`` (a local weights file: torchvision ResNet-50 or a project checkpoint), ``width``
(base channels; 64 is ResNet-50, 16 keeps r=16 and G=4 meaningful in tiny test networks) and
``layers`` (bottlenecks per stage res2..res5; ResNet-50's (3, 4, 6, 3) by default, (1, 1, 1, 1)
for CPU demos and tests). ``tsi_r50`` additionally takes every
:class:`~tsi_model.temporal.unit.TemporalUnitConfig` switch plus ``stages`` (which of res2..res5
get TSI blocks) and ``blocks`` ("all", or how many leading blocks of each of those stages get one:
Table 6's placement, counted within whatever ``layers`` builds, so a stage shallower than
``blocks`` has all of its blocks converted).

Every builder records its options (``layers`` included) in ``model.builder_options``, which
:func:`~tsi_model.weights.save_checkpoint` stores so :func:`build_from_checkpoint` rebuilds the
same network. Ablation rows (``ABLATIONS``) are ``tsi_r50`` with fixed options; the table in
``temporal/unit.py`` maps them to the paper and says where a row changes more than its module
(w/o CA's initialisation, concat's fusion conv, MTA's convs, summation's 2X start under
``identity_init``).
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from tsi_model.resnet import RESNET50_LAYERS, VideoResNet
from tsi_model.temporal.shift import TemporalShift
from tsi_model.temporal.unit import TemporalUnit, TemporalUnitConfig
from tsi_model.weights import load_weights

_UNIT_FIELDS = {f.name for f in dataclasses.fields(TemporalUnitConfig)}


def _check_layers(layers: Sequence[int]) -> tuple[int, ...]:
    """Bottlenecks per stage: exactly four positive ints (res2..res5), returned as a tuple."""
    values = tuple(layers)
    positive = all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in values)
    if len(values) != 4 or not positive:
        raise ValueError(f"layers must be 4 positive ints (blocks in res2..res5), got {layers!r}")
    return values


def _finish(model: VideoResNet, name: str, options: dict[str, Any], pretrained: str | None) -> VideoResNet:
    """Attach the builder name/options (for self-describing checkpoints) and load weights."""
    model.builder_name = name
    model.builder_options = dict(options)
    if pretrained:
        model.load_report = load_weights(model, pretrained)
    return model


def tsn_r50(
    *,
    num_classes: int = 400,
    num_frames: int = 8,
    dropout: float = 0.5,
    pretrained: str | None = None,
    width: int = 64,
    layers: Sequence[int] = RESNET50_LAYERS,
) -> VideoResNet:
    """TSN: a 2D ResNet-50 per frame and averaged scores; no temporal modelling."""
    layers = _check_layers(layers)
    options = dict(
        num_classes=num_classes, num_frames=num_frames, dropout=dropout, width=width, layers=layers
    )
    model = VideoResNet(**options)
    return _finish(model, "tsn_r50", options, pretrained)


def tsm_r50(
    *,
    num_classes: int = 400,
    num_frames: int = 8,
    dropout: float = 0.5,
    pretrained: str | None = None,
    width: int = 64,
    layers: Sequence[int] = RESNET50_LAYERS,
    shift_div: int = 8,
) -> VideoResNet:
    """TSM: residual shift of 1/``shift_div`` of the channels each way in every bottleneck."""
    layers = _check_layers(layers)
    model = VideoResNet(
        num_classes=num_classes,
        num_frames=num_frames,
        dropout=dropout,
        width=width,
        layers=layers,
        shift_factory=lambda stage, block, channels: TemporalShift(num_frames, shift_div),
    )
    options = dict(
        num_classes=num_classes,
        num_frames=num_frames,
        dropout=dropout,
        width=width,
        layers=layers,
        shift_div=shift_div,
    )
    return _finish(model, "tsm_r50", options, pretrained)


def _block_selected(stages: Sequence[int], blocks: str | int, stage: int, block: int) -> bool:
    return stage in stages and (blocks == "all" or block < int(blocks))


def tsi_r50(
    *,
    num_classes: int = 400,
    num_frames: int = 8,
    dropout: float = 0.5,
    pretrained: str | None = None,
    width: int = 64,
    layers: Sequence[int] = RESNET50_LAYERS,
    stages: Sequence[int] = (2, 3, 4, 5),
    blocks: str | int = "all",
    _name: str = "tsi_r50",
    **unit_options: Any,
) -> VideoResNet:
    """TSI: SME then CTI after the 3x3 conv of the selected bottlenecks (Sec. 3.4; all by default)."""
    unknown = sorted(set(unit_options) - _UNIT_FIELDS)
    if unknown:
        raise TypeError(f"tsi_r50 got unknown option(s) {unknown}; valid: {sorted(_UNIT_FIELDS)}")
    if not set(stages) <= {2, 3, 4, 5}:
        raise ValueError(f"stages must be within res2..res5 (2..5), got {tuple(stages)}")
    if blocks != "all" and (not isinstance(blocks, int) or blocks < 1):
        raise ValueError(f"blocks must be 'all' or a positive int, got {blocks!r}")
    layers = _check_layers(layers)
    config = TemporalUnitConfig(**unit_options)

    def unit(stage: int, block: int, channels: int) -> nn.Module | None:
        if not _block_selected(stages, blocks, stage, block):
            return None
        return TemporalUnit(channels, num_frames, config)

    model = VideoResNet(
        num_classes=num_classes,
        num_frames=num_frames,
        dropout=dropout,
        width=width,
        layers=layers,
        temporal_factory=unit,
    )
    options = dict(
        num_classes=num_classes,
        num_frames=num_frames,
        dropout=dropout,
        width=width,
        layers=layers,
        stages=tuple(stages),
        blocks=blocks,
        **dataclasses.asdict(config),
    )
    return _finish(model, _name, options, pretrained)


# Ablation rows of the paper's Tables 4-7, as fixed options of tsi_r50 (see temporal/unit.py).
ABLATIONS: dict[str, dict[str, Any]] = {
    # Table 4 (baseline R50 + TIM; the TSI row is tsi_r50 itself)
    "r50_tim": dict(motion=None, aggregation="tim"),
    "r50_tim_sme": dict(motion="sme", aggregation="tim"),
    "r50_tim_sme_no_sa": dict(motion="sme", aggregation="tim", saliency_alignment=False),
    # w/o CA also zero-initialises SME's expansion BN (motion added as features, see temporal/sme.py)
    "r50_tim_sme_no_ca": dict(motion="sme", aggregation="tim", channel_attention=False),
    "r50_cti": dict(motion=None, aggregation="cti"),
    # Table 5 (its "+ SME" row is r50_tim_sme, "Res50 + CTI" is r50_cti)
    "r50_tim_me": dict(motion="me", aggregation="tim"),
    "r50_mta": dict(motion=None, aggregation="mta"),
    # Table 6 (the 16-block row is tsi_r50)
    "tsi_r50_res2_1block": dict(stages=(2,), blocks=1),
    "tsi_r50_res3_1block": dict(stages=(3,), blocks=1),
    "tsi_r50_res4_1block": dict(stages=(4,), blocks=1),
    "tsi_r50_res5_1block": dict(stages=(5,), blocks=1),
    "tsi_r50_res2to5_4blocks": dict(stages=(2, 3, 4, 5), blocks=1),
    # Table 7 (cascade is tsi_r50). sum starts as 2X under identity_init (SME(X) + CTI(X), both
    # the identity); concat adds a 2C -> C 1x1 conv: +2.51 M params, +3.29 GMACs at 8x224x224
    "tsi_r50_fusion_sum": dict(fusion="sum"),
    "tsi_r50_fusion_concat": dict(fusion="concat"),
    # Fast saliency alignment (not a paper row): keys/values pooled 2x2 on res2/res3 maps
    "tsi_r50_fast_align": dict(alignment_kv_pool=2, alignment_pool_min_hw=400),
}

_REGISTRY: dict[str, Callable[..., VideoResNet]] = {
    "tsn_r50": tsn_r50,
    "tsm_r50": tsm_r50,
    "tsi_r50": tsi_r50,
}


def _ablation_builder(name: str, fixed: dict[str, Any]) -> Callable[..., VideoResNet]:
    def build(**kwargs: Any) -> VideoResNet:
        clash = sorted(k for k in set(fixed) & set(kwargs) if kwargs[k] != fixed[k])
        if clash:
            raise TypeError(f"{name} fixes {clash}; use tsi_r50 to set them freely")
        return tsi_r50(**{**fixed, **kwargs, "_name": name})

    build.__name__ = name
    build.__doc__ = f"Ablation row {name}: tsi_r50 with {fixed}."
    return build


for _name, _fixed in ABLATIONS.items():
    _REGISTRY[_name] = _ablation_builder(_name, _fixed)


# Options the training config sets from its own fields (model.width, data.clip.frames…).
PLATFORM_OPTIONS = frozenset({"num_classes", "num_frames", "dropout", "pretrained", "width",
                              "layers"})


def model_options(name: str) -> frozenset[str]:
    """The further keyword options ``get_model(name, ...)`` accepts, from its builder's signature.

    ``tsi_r50`` and its ablation rows also take the temporal unit's fields; the options the
    platform sets itself (:data:`PLATFORM_OPTIONS`) are left out.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    builder = tsi_r50 if name in ABLATIONS else _REGISTRY[name]
    params = inspect.signature(builder).parameters.values()
    names = {p.name for p in params if p.kind is p.KEYWORD_ONLY and not p.name.startswith("_")}
    if any(p.kind is p.VAR_KEYWORD for p in params):  # tsi_r50's **unit_options
        names |= _UNIT_FIELDS
    return frozenset(names - PLATFORM_OPTIONS)


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`."""
    return sorted(_REGISTRY)


def get_model(name: str, **kwargs: Any) -> VideoResNet:
    """Build a registered network by name, e.g. ``get_model("tsi_r50", num_classes=174, width=16)``."""
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
    return builder(**kwargs)


def build_from_checkpoint(path: str, **overrides: Any) -> VideoResNet:
    """Rebuild the network a project checkpoint describes and load its weights.

    ``overrides`` (e.g. ``num_classes`` for a new dataset) replace stored options; a different class
    count re-initialises the head.
    """
    from tsi_model.weights import read_state_dict

    _, meta = read_state_dict(path)
    if not meta:
        raise ValueError(f"{path} is not a project checkpoint (no model name/options inside)")
    options = {**meta["options"], **overrides}
    options.pop("pretrained", None)
    return get_model(meta["model"], pretrained=path, **options)
