"""The model, its SGD optimiser and the DeepSpeed engine around them, inside one worker.

``deepspeed.initialize`` is called here, in the worker (Ray Train has already made the process
group; DeepSpeed reuses it), with a ``torch.optim.SGD`` passed in: DeepSpeed's own optimisers
JIT-compile at start. Precision: fp32 on CPU; on GPU DeepSpeed's bf16 mode (the whole model in
bf16, fp32 master weights in the optimiser), which ``tsi_model`` supports for every variant.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from pipelines import distributed
from pipelines.train.config import TrainConfig
from pipelines.train.weights import PretrainedWeights, stage
from tsi_model import get_model


@dataclass(frozen=True)
class Device:
    """Where a worker runs and in which dtype its activations are."""

    device: torch.device
    dtype: torch.dtype

    @property
    def bf16(self) -> bool:
        return self.dtype == torch.bfloat16


def pick_device(cfg: TrainConfig) -> Device:
    """GPU when asked for and present, else CPU fp32.

    On a GPU ``auto`` is bf16 where the device supports it (Ampere and later) and fp16 with
    DeepSpeed's dynamic loss scaling otherwise (V100, T4); ``bf16`` on a GPU without it is
    refused rather than emulated.
    """
    precision = cfg.deepspeed.precision
    if cfg.scaling.use_gpu and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        bf16_ok = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not bf16_ok:
            raise ValueError(f"deepspeed.precision=bf16: {torch.cuda.get_device_name(local)} "
                             "does not support bf16; use fp16 or auto")
        if precision == "auto":
            precision = "bf16" if bf16_ok else "fp16"
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        return Device(torch.device("cuda", local), dtype)
    if precision in ("bf16", "fp16"):
        raise ValueError(f"deepspeed.precision={precision} needs a GPU; CPU workers train in fp32")
    return Device(torch.device("cpu"), torch.float32)


def builder_options(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    """Keyword options of ``get_model`` for this run (stored in the export to rebuild it)."""
    return {"num_classes": num_classes, "num_frames": cfg.data.clip.frames,
            "dropout": cfg.model.dropout, "width": cfg.model.width,
            "layers": tuple(cfg.model.layers), **cfg.model.options}


def build_model(cfg: TrainConfig, num_classes: int, *,
                weights: PretrainedWeights | None = None) -> torch.nn.Module:
    """The network; ``weights`` (checked by the driver) staged on this node and loaded. The
    driver builds it without weights to check the name and options before workers start."""
    path = stage(weights)[0] if weights is not None else None
    return get_model(cfg.model.name, pretrained=path, **builder_options(cfg, num_classes))


def _no_decay(name: str, param: torch.nn.Parameter) -> bool:
    """Biases and normalisation weights (1-d tensors): no weight decay when the config says so."""
    return param.ndim <= 1 or name.endswith(".bias")


def param_groups(model: torch.nn.Module, base_lr: float, head_mult: float,
                 weight_decay: float, decay_norm_and_bias: bool = True) -> list[dict]:
    """Backbone and classifier (a new head may learn faster when fine-tuning), each split into
    decayed and not-decayed parameters when ``decay_norm_and_bias`` is off (the paper decays
    every parameter: 5e-4). Empty groups are left out."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        exempt = not decay_norm_and_bias and _no_decay(name, param)
        groups.setdefault((name.startswith("fc."), exempt), []).append(param)
    return [{"params": params, "lr": base_lr * (head_mult if head else 1.0),
             "lr_mult": head_mult if head else 1.0, "weight_decay": 0.0 if exempt else weight_decay}
            for (head, exempt), params in sorted(groups.items())]


def deepspeed_config(cfg: TrainConfig, device: Device) -> dict[str, Any]:
    """DeepSpeed's JSON config from ours (micro batch per worker, ZeRO stage, clipping, bf16)."""
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": cfg.optim.grad_accum,
        "zero_optimization": {"stage": cfg.deepspeed.zero_stage},
        "zero_allow_untested_optimizer": True,  # torch.optim.SGD: nothing to JIT-compile
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.optim.grad_clip:
        config["gradient_clipping"] = cfg.optim.grad_clip
    if device.dtype == torch.bfloat16:
        config["bf16"] = {"enabled": True}
    elif device.dtype == torch.float16:  # dynamic loss scaling (loss_scale 0), from 2**16
        config["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16,
                          "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1}
    return config


def ensure_process_group() -> None:
    """A one-process gloo group when Ray Train made none (``num_workers=0``: the driver itself)."""
    if distributed.ensure_process_group():
        _forget_deepspeed_groups()


def _forget_deepspeed_groups() -> None:
    """Drop DeepSpeed's cached process groups before a new in-process run.

    Ray's local mode destroys the process group after each run, but DeepSpeed caches its
    backend and group handles in module globals; a second run in the same process would use
    the dead ones ("Group ... is not registered").
    """
    import deepspeed.comm.comm as deepspeed_comm
    import deepspeed.utils.groups as deepspeed_groups

    deepspeed_comm.cdb = None
    for name, value in vars(deepspeed_groups).copy().items():
        if name.isupper() and name.endswith("_GROUP") or name.endswith("_GROUPS"):
            if isinstance(value, dict):
                value.clear()
            elif value is not None and not isinstance(value, (int, str)):
                setattr(deepspeed_groups, name, None)


def _skip_inference_shm_op() -> None:
    """Do not JIT-build DeepSpeed's CPU shared-memory all-reduce (~95 s of g++ on 2 cores).

    Its CPU backend builds the op when the communication backend starts, but only its inference
    all-reduce (tensor-parallel inference) calls it; training collectives go through the process
    group. DeepSpeed reads the op's availability from ``deepspeed.ops.__compatible_ops__``, a
    dict it keeps for this kind of edit.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def make_engine(cfg: TrainConfig, model: torch.nn.Module, base_lr: float, device: Device) -> Any:
    """``deepspeed.initialize`` with our SGD; returns the engine."""
    import deepspeed

    ensure_process_group()
    backend = "nccl" if device.device.type == "cuda" else "gloo"
    if backend == "gloo":
        _skip_inference_shm_op()
    deepspeed.init_distributed(dist_backend=backend)
    model = model.to(device.device)
    groups = param_groups(model, base_lr, cfg.optim.head_lr_mult, cfg.optim.weight_decay,
                          cfg.optim.decay_norm_and_bias)
    optimizer = torch.optim.SGD(groups, lr=base_lr,
                                momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov,
                                weight_decay=cfg.optim.weight_decay)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                           config=deepspeed_config(cfg, device))
    return engine


def set_lr(engine: Any, lr: float) -> None:
    """Apply this step's rate to every group (scaled by the group's ``lr_mult``)."""
    for group in engine.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
