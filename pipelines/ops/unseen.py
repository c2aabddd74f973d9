"""Proof, per video, that an evaluation split holds none of a model's training or selection data.

Tags on a candidate version are the trainer's to edit, so they decide nothing here. The promoter
reads the facts from the checkpoint it verified itself: the export's metadata names the dataset
root, the training split, the selection fraction and the dataset hashes. From those it re-reads
the training split's ``manifest.parquet``, recomputes the hashes (the training part and the
selection part, each with the same key filter training used) and requires them to equal the
export's: the manifest is then exactly what the model saw. Its stored keys are the videos the
model trained or selected on; any of them in the evaluation split is a refusal, and so is any
missing or unmatched piece of evidence (no dataset root, an unreadable manifest, another hash).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.data.classes import ClassMap
from pipelines.io import Storage
from pipelines.loader.selection import SelectionFilter
from pipelines.shards import contract, manifest


class NotProvenUnseen(ValueError):
    """The evaluation split overlaps the model's data, or the evidence for it is missing."""


def seen_keys(meta: Mapping[str, Any], label: str) -> set[str]:
    """Keys of the videos ``meta``'s model trained or selected on, proven by the dataset hashes."""
    data = (meta.get("config") or {}).get("data") or {}
    hashes = meta.get("dataset_hashes") or {}
    root, split = meta.get("dataset_root"), data.get("train_split")
    fraction = float(data.get("selection_fraction") or 0.0)
    if not root or not split or not hashes.get("train"):
        raise NotProvenUnseen(f"{label}: its export names no dataset root, training split or "
                              "training dataset hash, so its training videos cannot be checked")
    try:
        storage = Storage.open(str(root))
        classes = ClassMap.parse(storage.read_bytes(contract.CLASSES).decode("utf-8"),
                                 where=storage.uri(contract.CLASSES))
        table, keys = manifest.read_split(storage, split)
    except Exception as exc:  # missing, unreadable or unreachable: no evidence is a refusal
        raise NotProvenUnseen(f"{label}: cannot read the manifest of its training split "
                              f"{root}/{split} ({type(exc).__name__}: {str(exc)[:200]})") from None
    parts = {"train": SelectionFilter(fraction, selected=False) if fraction else None}
    if fraction:
        parts["selection"] = SelectionFilter(fraction, selected=True)
    for part, keep in parts.items():
        recomputed = manifest.dataset_hash(table, classes.names, keep)
        if recomputed != hashes.get(part):
            raise NotProvenUnseen(
                f"{label}: the {part} dataset hash in its export ({str(hashes.get(part))[:12]}) "
                f"does not match {root}/{split}/{contract.MANIFEST} ({recomputed[:12]}): the "
                "manifest is not what it trained on, so its videos are unknown")
    return set(keys)


def require_unseen(meta: Mapping[str, Any], label: str, eval_keys: Iterable[str],
                   where: str) -> None:
    """Refuse when any evaluation video is one ``meta``'s model trained or selected on."""
    overlap = sorted(seen_keys(meta, label) & set(eval_keys))
    if overlap:
        raise NotProvenUnseen(f"{len(overlap)} videos of the evaluation split {where} are "
                              f"{label}'s training or selection data (e.g. "
                              f"{', '.join(overlap[:3])}): it cannot judge that model")
