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

STATE_FILE = "tsi_state.json"
METRICS_FILE = "metrics.json"  # the epoch's metrics, as reported with this checkpoint
PROBE_FILE = "export_probe.pt"  # a few evaluation clips and the engine's logits on them
PREDICTIONS_FILE = "eval_predictions.npz"  # per-video scores of the epoch's evaluation
TAG = "model"  # one DeepSpeed tag per Ray checkpoint folder
EXPORT_FORMAT = "tsi-export-v1"


@dataclass(frozen=True)
class TrainState:
    """Where a run is: the next epoch to run, optimiser steps done, and who trained it."""

    epoch: int = 0
    global_step: int = 0
    world_size: int = 1
    run_name: str = ""

    @classmethod
    def read(cls, folder: str | Path) -> "TrainState | None":
        path = Path(folder) / STATE_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def write(self, folder: str | Path) -> None:
        Path(folder, STATE_FILE).write_text(json.dumps(asdict(self)))


def save(engine: Any, folder: str, state: TrainState, rank: int,
         metrics: dict[str, float]) -> None:
    """Every rank saves its DeepSpeed part (DeepSpeed hangs if only one does); rank 0 the state
    and the epoch's metrics (so an export made from this folder alone can carry them)."""
    engine.save_checkpoint(folder, tag=TAG, client_state={"epoch": state.epoch,
                                                          "global_step": state.global_step})
    if rank == 0:
        state.write(folder)
        Path(folder, METRICS_FILE).write_text(json.dumps(metrics))


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


def latest(run_dir: str | Path) -> tuple[Path, TrainState] | None:
    """A run's newest checkpoint folder in its storage (Ray's or local mode's) and its state."""
    found = [(f, TrainState.read(f)) for f in Path(run_dir).glob("checkpoint_*") if f.is_dir()]
    found = [(f, s) for f, s in found if s is not None]
    return max(found, key=lambda pair: pair[1].global_step) if found else None


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
    """Keep uint8 clips and the trained engine's logits beside the last checkpoint."""
    torch.save({"clips": clips.cpu(), "logits": logits.float().cpu()}, Path(folder) / PROBE_FILE)


def check_export(folder: str, export_path: str | Path, tolerance: float) -> float:
    """Max |logit difference| between the engine (probe) and the export rebuilt by tsi_model.

    The export is only trusted if it reproduces what was trained: a wrong merge of ZeRO
    partitions or a missing BatchNorm buffer shows up here, not in a registry weeks later.
    """
    from tsi_model import build_from_checkpoint, normalize_clip

    probe_path = Path(folder) / PROBE_FILE
    if not probe_path.exists():
        raise FileNotFoundError(f"{probe_path} missing: the checkpoint has no probe")
    probe = torch.load(probe_path, map_location="cpu", weights_only=True)
    model = build_from_checkpoint(str(export_path)).eval()
    with torch.no_grad():
        logits = model(normalize_clip(probe["clips"]))
    diff = float((logits - probe["logits"]).abs().max())
    scale = float(probe["logits"].abs().max()) or 1.0
    if diff > tolerance * max(scale, 1.0):
        raise RuntimeError(f"exported model differs from the trained engine by {diff:.3g} "
                           f"(logit scale {scale:.3g}); refusing to publish {export_path}")
    return diff


def save_predictions(folder: str | Path, preds: Any) -> None:
    """The evaluation split's per-video predictions (keys, labels, probabilities) of this epoch."""
    import numpy as np

    np.savez_compressed(Path(folder) / PREDICTIONS_FILE, keys=np.array(preds.keys, dtype=str),
                        labels=preds.labels, probs=preds.probs)
