"""Loading weights from local files: torchvision ImageNet state dicts and this project's checkpoints.

Nothing is downloaded: ``pretrained=PATH`` names a file on disk. Files are read with
``torch.load(..., weights_only=True)`` (no pickled code runs). Loading is strict about everything
but two documented cases, and any other mismatch is an error that names the offending keys:
- a 2D (torchvision) file has no temporal-module parameters: those keep their initialisation;
- a classifier of another size (e.g. Kinetics-400 -> UCF-101) is dropped and the head re-initialised.

A project checkpoint is a dict ``{"format": CHECKPOINT_FORMAT, "model": name, "options": {...},
"state_dict": {...}, ...extra}`` so it can rebuild the network it came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_FORMAT = "tsi-checkpoint/1"
TEMPORAL_KEY_MARKERS = (".temporal.",)


class WeightsError(ValueError):
    """A weights file that does not fit the network it is loaded into."""


@dataclass
class LoadReport:
    """What :func:`load_weights` did, for logs and tests."""

    source: str
    kind: str  # "torchvision" (2D) or "checkpoint"
    loaded: int = 0
    initialised_temporal: list[str] = field(default_factory=list)
    head_replaced: bool = False


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a weights file; returns (state dict, checkpoint metadata or {})."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise WeightsError(f"{path}: not a readable torch weights file ({exc})") from exc
    meta: dict[str, Any] = {}
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    return state, meta


def _is_temporal(key: str) -> bool:
    return any(marker in key for marker in TEMPORAL_KEY_MARKERS)


def load_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Load a torchvision ResNet-50 state dict or a project checkpoint into ``model``."""
    state, meta = read_state_dict(path)
    report = LoadReport(source=str(path), kind="checkpoint" if meta else "torchvision")
    own = model.state_dict()
    head = {k for k in state if k.startswith("fc.")}
    if head and any(k in own and own[k].shape != state[k].shape for k in head):
        state = {k: v for k, v in state.items() if k not in head}
        report.head_replaced = True

    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    )
    missing = sorted(set(own) - set(state))
    allowed_missing = {k for k in missing if _is_temporal(k) or (report.head_replaced and k.startswith("fc."))}
    if report.kind == "checkpoint":
        allowed_missing = {k for k in allowed_missing if k.startswith("fc.")}
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:5]}")
    if mismatched:
        problems.append(
            f"{len(mismatched)} shape mismatch(es), e.g. {mismatched[:3]} "
            "(a torchvision ResNet-50 file needs width=64)"
        )
    if set(missing) - allowed_missing:
        problems.append(f"missing key(s), e.g. {sorted(set(missing) - allowed_missing)[:5]}")
    if problems:
        raise WeightsError(f"{path} does not fit {type(model).__name__}: " + "; ".join(problems))

    model.load_state_dict(state, strict=False)
    report.loaded = len(state)
    report.initialised_temporal = sorted(k for k in missing if _is_temporal(k))
    return report


def save_checkpoint(
    model: nn.Module, path: str | Path, *, model_name: str, options: dict[str, Any], **extra: Any
) -> Path:
    """Write a self-describing checkpoint: weights plus what rebuilds the network."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": model_name,
        "options": dict(options),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    torch.save(payload, path)
    return path
