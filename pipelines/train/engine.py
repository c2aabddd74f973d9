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
    """GPU when asked for and present (bf16 unless fp32 is forced), else CPU fp32."""
    if cfg.scaling.use_gpu and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        fp32 = cfg.deepspeed.precision == "fp32"
        return Device(torch.device("cuda", local), torch.float32 if fp32 else torch.bfloat16)
    if cfg.deepspeed.precision == "bf16":
        raise ValueError("deepspeed.precision=bf16 needs a GPU; CPU workers train in fp32")
    return Device(torch.device("cpu"), torch.float32)


def builder_options(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    """Keyword options of ``get_model`` for this run (stored in the export to rebuild it)."""
    return {"num_classes": num_classes, "num_frames": cfg.data.clip.frames,
            "dropout": cfg.model.dropout, "width": cfg.model.width,
            "layers": tuple(cfg.model.layers), **cfg.model.options}


def build_model(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    return get_model(cfg.model.name, pretrained=cfg.model.pretrained,
                     **builder_options(cfg, num_classes))


def param_groups(model: torch.nn.Module, base_lr: float, head_mult: float) -> list[dict]:
    """Backbone and classifier as two groups, so a new head may learn faster (fine-tuning)."""
    head = [p for n, p in model.named_parameters() if n.startswith("fc.")]
    body = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
    return [{"params": body, "lr": base_lr, "lr_mult": 1.0},
            {"params": head, "lr": base_lr * head_mult, "lr_mult": head_mult}]


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
    if device.bf16:
        config["bf16"] = {"enabled": True}
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


def make_engine(cfg: TrainConfig, model: torch.nn.Module, base_lr: float, device: Device) -> Any:
    """``deepspeed.initialize`` with our SGD; returns the engine."""
    import deepspeed

    ensure_process_group()
    backend = "nccl" if device.device.type == "cuda" else "gloo"
    deepspeed.init_distributed(dist_backend=backend)
    model = model.to(device.device)
    optimizer = torch.optim.SGD(param_groups(model, base_lr, cfg.optim.head_lr_mult), lr=base_lr,
                                momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov,
                                weight_decay=cfg.optim.weight_decay)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                           config=deepspeed_config(cfg, device))
    return engine


def set_lr(engine: Any, lr: float) -> None:
    """Apply this step's rate to every group (scaled by the group's ``lr_mult``)."""
    for group in engine.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
