"""Evaluate an exported model on a split of shards, in this process, with the platform's code.

The export's own metadata says how its clips were cut (``clip``) and which classes it predicts
(``classes``); a model whose class map differs from the shards' ``classes.json`` is refused, not
scored on mismatched indices. Weights are read with ``weights_only`` (no code from the file).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipelines.data.classes import ClassMap
from pipelines.data.twins import twin_indices
from pipelines.evaluation.metrics import ClassificationMetrics, Predictions, classification_metrics
from pipelines.evaluation.predict import predict, predict_with_reversal
from pipelines.evaluation.reversal import reversal_probe
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
    reversal: dict[str, float] = field(default_factory=dict)  # the probe, with declared twins


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


def _open_export(path: str | Path, urls: list[str], protocol: str, batch_size: int, rank: int,
                 world_size: int, num_workers: int, device: str):
    """The export's model (eval mode, on ``device``), class count and evaluation batches."""
    meta = export_metadata(path)
    model = build_from_checkpoint(str(path)).eval().to(device)
    clip = ClipSettings.from_dict(meta["clip"])
    batches = eval_batches(urls, clip, protocol=protocol, batch_size=batch_size, rank=rank,
                           world_size=world_size, num_workers=num_workers)
    return model, len(meta["classes"]), batches


def predict_export(path: str | Path, urls: list[str], *, protocol: str = "1x1",
                   batch_size: int = 16, rank: int = 0, world_size: int = 1,
                   num_workers: int = 1, device: str = "cpu") -> Predictions:
    """Part ``rank`` of ``world_size`` of an export's predictions on the shards ``urls``."""
    model, num_classes, batches = _open_export(path, urls, protocol, batch_size, rank,
                                               world_size, num_workers, device)
    with torch.inference_mode():
        return predict(model, batches, num_classes=num_classes, device=device)


def predict_export_with_reversal(path: str | Path, urls: list[str], *, protocol: str = "1x1",
                                 batch_size: int = 16, rank: int = 0, world_size: int = 1,
                                 num_workers: int = 1, device: str = "cpu"
                                 ) -> tuple[Predictions, Predictions]:
    """:func:`predict_export`, and the same clips with their frames reversed (the probe)."""
    model, num_classes, batches = _open_export(path, urls, protocol, batch_size, rank,
                                               world_size, num_workers, device)
    with torch.inference_mode():
        return predict_with_reversal(model, batches, num_classes=num_classes, device=device)


def evaluate_export(path: str | Path, dataset_root: str, split: str, *, protocol: str = "1x1",
                    batch_size: int = 16, num_workers: int = 1,
                    device: str = "cpu") -> Evaluation:
    """Top-1/top-5/mean-class accuracy of an exported model on ``{dataset_root}/{split}``.

    When the class map declares order twins (``pipelines.data.twins``), ``reversal`` holds the
    temporal probe (``pipelines.evaluation.reversal``), at one more forward pass per clip.
    """
    names = check_class_map(export_metadata(path), dataset_root, str(path))
    urls = list_shards(dataset_root, split)
    options = dict(protocol=protocol, batch_size=batch_size, num_workers=num_workers,
                   device=device)
    twins = twin_indices(names)
    if not twins:
        preds = predict_export(path, urls, **options).sorted()
        return Evaluation(preds, classification_metrics(preds, len(names)), names, protocol)
    forward, backward = predict_export_with_reversal(path, urls, **options)
    preds = forward.sorted()
    return Evaluation(preds, classification_metrics(preds, len(names)), names, protocol,
                      reversal_probe(preds, backward.sorted(), twins))
