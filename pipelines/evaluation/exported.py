"""Evaluate an exported model on a split of shards, in this process, with the platform's code.

The export's own metadata says how its clips were cut (``clip``) and which classes it predicts
(``classes``); a model whose class map differs from the shards' ``classes.json`` is refused, not
scored on mismatched indices. Weights are read with ``weights_only`` (no code from the file).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.data.classes import ClassMap
from pipelines.evaluation.metrics import ClassificationMetrics, Predictions, classification_metrics
from pipelines.evaluation.predict import predict
from pipelines.io import Storage
from pipelines.loader.clips import ClipSettings
from pipelines.loader.streams import eval_batches
from pipelines.shards import contract
from pipelines.shards.reader import list_shards
from tsi_model import build_from_checkpoint
from tsi_model.weights import read_state_dict


class ClassMapMismatch(ValueError):
    """The model predicts other classes (or in another order) than the shards are labelled with."""


@dataclass(frozen=True)
class Evaluation:
    predictions: Predictions
    metrics: ClassificationMetrics
    classes: tuple[str, ...]
    protocol: str


def export_metadata(path: str | Path) -> dict:
    """The metadata an export carries (model, options, classes, clip settings, hashes…)."""
    _, meta = read_state_dict(str(path))
    if "classes" not in meta or "clip" not in meta:
        raise ValueError(f"{path} is not an exported training checkpoint (no classes/clip)")
    return meta


def check_class_map(meta: dict, dataset_root: str, what: str) -> tuple[str, ...]:
    """The shards' class names, if ``meta`` predicts exactly them (in order); else refused."""
    storage = Storage.open(dataset_root)
    shards = ClassMap.parse(storage.read_bytes(contract.CLASSES).decode("utf-8"),
                            where=storage.uri(contract.CLASSES))
    if tuple(meta["classes"]) != shards.names:
        same_set = sorted(meta["classes"]) == sorted(shards.names)
        how = "the same classes in another order" if same_set else (
            f"{len(meta['classes'])} classes that differ")
        raise ClassMapMismatch(f"{what} predicts {how} than {storage.uri(contract.CLASSES)} "
                               f"({len(shards)} classes)")
    return shards.names


def predict_export(path: str | Path, urls: list[str], *, protocol: str = "1x1",
                   batch_size: int = 16, rank: int = 0, world_size: int = 1,
                   num_workers: int = 1, device: str = "cpu") -> Predictions:
    """Part ``rank`` of ``world_size`` of an export's predictions on the shards ``urls``."""
    meta = export_metadata(path)
    model = build_from_checkpoint(str(path)).eval().to(device)
    clip = ClipSettings.from_dict(meta["clip"])
    batches = eval_batches(urls, clip, protocol=protocol, batch_size=batch_size, rank=rank,
                           world_size=world_size, num_workers=num_workers)
    with torch.inference_mode():
        return predict(model, batches, num_classes=len(meta["classes"]), device=device)


def evaluate_export(path: str | Path, dataset_root: str, split: str, *, protocol: str = "1x1",
                    batch_size: int = 16, num_workers: int = 1,
                    device: str = "cpu") -> Evaluation:
    """Top-1/top-5/mean-class accuracy of an exported model on ``{dataset_root}/{split}``."""
    names = check_class_map(export_metadata(path), dataset_root, str(path))
    preds = predict_export(path, list_shards(dataset_root, split), protocol=protocol,
                           batch_size=batch_size, num_workers=num_workers, device=device).sorted()
    return Evaluation(preds, classification_metrics(preds, len(names)), names, protocol)
