"""Training checkpoints (DeepSpeed, every rank) and the exported model (one self-describing file).

A training checkpoint is what Ray Train stores for a run: each rank's DeepSpeed files under one
folder plus ``tsi_state.json`` (epoch, global step, world size) written by rank 0. The trainer
checkpoints at epoch ends, so a run restarted after a failure redoes at most the epoch it was in
(its batches are a function of (seed, epoch), so it sees the same data again and the epoch is
reported once, when it completes).

The **export** is a ``tsi_model`` checkpoint: the consolidated fp32 state dict (ZeRO partitions
merged), the builder name and options, and the metadata a registry needs (classes, clip
settings, dataset hashes, config hash, code version, run name, world size). It loads with
``tsi_model.build_from_checkpoint`` alone: no DeepSpeed, no Ray. Never optimiser state.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from pipelines.config import to_dict
from pipelines.train import layout

STATE_FILE = layout.STATE
CONFIG_FILE = layout.CONFIG
METRICS_FILE = "metrics.json"  # the epoch's metrics, as reported with this checkpoint
PROBE_FILE = "export_probe.pt"  # a few evaluation clips and the engine's logits on them
PREDICTIONS_FILE = layout.PREDICTIONS  # per-video scores of the epoch's evaluation
TAG = "model"  # one DeepSpeed tag per Ray checkpoint folder
EXPORT_FORMAT = "tsi-export-v1"


@dataclass(frozen=True)
class TrainState:
    """Where a run is: the next epoch to run, optimiser steps done, and who trained it."""

    epoch: int = 0
    global_step: int = 0
    world_size: int = 1
    run_name: str = ""
    config_hash: str = ""  # of the resolved config that trained it (resume compares it)

    @classmethod
    def read(cls, folder: str | Path) -> "TrainState | None":
        path = Path(folder) / STATE_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def write(self, folder: str | Path) -> None:
        Path(folder, STATE_FILE).write_text(json.dumps(asdict(self)))


def save(engine: Any, folder: str, state: TrainState, rank: int,
         metrics: dict[str, float], config: Any) -> None:
    """Every rank saves its DeepSpeed part (DeepSpeed hangs if only one does); rank 0 the
    epoch's metrics, the resolved config and, last, the state (its presence marks the folder
    complete)."""
    engine.save_checkpoint(folder, tag=TAG, client_state={"epoch": state.epoch,
                                                          "global_step": state.global_step})
    if rank == 0:
        Path(folder, METRICS_FILE).write_text(json.dumps(metrics))
        Path(folder, CONFIG_FILE).write_text(json.dumps(to_dict(config), default=str))
        state.write(folder)


def read_metrics(folder: str | Path) -> dict[str, float]:
    path = Path(folder) / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def restore(engine: Any, folder: str) -> TrainState:
    """Load a checkpoint folder into ``engine`` (module, optimiser, DeepSpeed counters)."""
    state = TrainState.read(folder)
    if state is None:
        raise FileNotFoundError(f"{folder} has no {STATE_FILE}: not a checkpoint of this trainer")
    engine.load_checkpoint(folder, tag=TAG)
    return state


def consolidated_state_dict(folder: str) -> dict[str, torch.Tensor]:
    """The fp32 model weights of a DeepSpeed checkpoint folder, ZeRO partitions merged."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    state = get_fp32_state_dict_from_zero_checkpoint(folder, tag=TAG)
    # buffers (BatchNorm statistics) live in the model-states file, not in the ZeRO partitions
    module = torch.load(os.path.join(folder, TAG, "mp_rank_00_model_states.pt"),
                        map_location="cpu", weights_only=False)["module"]
    merged = {k: v.float() if v.is_floating_point() else v for k, v in module.items()}
    merged.update({k: v.float() for k, v in state.items()})
    return merged


def export(folder: str, path: str | Path, *, model_name: str, options: dict[str, Any],
           metadata: dict[str, Any]) -> Path:
    """Write the exported model of a training checkpoint folder (see the module docstring)."""
    from tsi_model import get_model, save_checkpoint

    model = get_model(model_name, **options)
    model.load_state_dict(consolidated_state_dict(folder), strict=True)
    return save_checkpoint(model, path, model_name=model_name, options=options,
                           export_format=EXPORT_FORMAT, **metadata)


def save_probe(folder: str, clips: torch.Tensor, logits: torch.Tensor) -> None:
    """Keep uint8 clips and the trained engine's logits (in its dtype) beside the checkpoint."""
    torch.save({"clips": clips.cpu(), "logits": logits.detach().cpu(),
                "dtype": str(logits.dtype).removeprefix("torch.")}, Path(folder) / PROBE_FILE)


# Like-with-like tolerance, relative to the largest logit: fp32 is exact up to summation order;
# a half-precision engine on a GPU against the same model in that dtype on the driver's CPU
# differs by kernel accumulation order only.
EXPORT_TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 1e-2}


@dataclass(frozen=True)
class ExportCheck:
    """How the export reproduces the engine: like with like, and fp32 against the engine."""

    dtype: str
    max_abs_diff: float  # export run in the engine's dtype vs the engine
    logit_scale: float
    tolerance: float  # relative to max(logit_scale, 1)
    fp32_max_abs_diff: float  # export in fp32 vs the engine (information: the dtype's cost)

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance * max(self.logit_scale, 1.0)

    def describe(self) -> str:
        return (f"export vs engine in {self.dtype}: max |logit diff| {self.max_abs_diff:.3g} "
                f"(limit {self.tolerance * max(self.logit_scale, 1.0):.3g}, logit scale "
                f"{self.logit_scale:.3g}); fp32 export vs engine {self.fp32_max_abs_diff:.3g}")


def check_export(folder: str, export_path: str | Path) -> ExportCheck:
    """Compare the export rebuilt by ``tsi_model`` with the engine's logits on the probe clips.

    The export is only trusted if it reproduces what was trained: a wrong merge of ZeRO
    partitions or a missing BatchNorm buffer shows up here, not in a registry weeks later.
    """
    from tsi_model import build_from_checkpoint, normalize_clip

    probe_path = Path(folder) / PROBE_FILE
    if not probe_path.exists():
        raise FileNotFoundError(f"{probe_path} missing: the checkpoint has no probe")
    probe = torch.load(probe_path, map_location="cpu", weights_only=True)
    name = probe.get("dtype", "float32")
    dtype = getattr(torch, name)
    engine = probe["logits"].float()
    model = build_from_checkpoint(str(export_path)).eval()
    with torch.no_grad():
        fp32 = model(normalize_clip(probe["clips"])).float()
        same = fp32 if dtype == torch.float32 else model.to(dtype)(
            normalize_clip(probe["clips"], dtype=dtype)).float()
    return ExportCheck(name, float((same - engine).abs().max()), float(engine.abs().max()),
                       EXPORT_TOLERANCE.get(name, 1e-2), float((fp32 - engine).abs().max()))


def save_predictions(folder: str | Path, preds: Any) -> None:
    """The evaluation split's per-video predictions (keys, labels, probabilities) of this epoch."""
    import numpy as np

    np.savez_compressed(Path(folder) / PREDICTIONS_FILE, keys=np.array(preds.keys, dtype=str),
                        labels=preds.labels, probs=preds.probs)
