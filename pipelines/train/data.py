"""What the trainer reads: shard lists, class names, split sizes and dataset hashes of one root.

The selection split is carved from the training split by key hash
(:class:`pipelines.loader.selection.SelectionFilter`), so train and selection never share a
video and the carving is the same on every rank, every run and every machine.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from pipelines.data.classes import ClassMap
from pipelines.io import Storage
from pipelines.loader.selection import SelectionFilter
from pipelines.shards import contract, manifest
from pipelines.shards.check import check_shards
from pipelines.shards.reader import list_shards
from pipelines.train.config import DataConfig


@dataclass(frozen=True)
class DatasetView:
    """The shards and facts of a dataset root that one training run uses."""

    root: str
    classes: tuple[str, ...]
    train_urls: tuple[str, ...]
    train_counts: tuple[int, ...]  # training videos (selection split excluded) per train shard
    eval_urls: tuple[str, ...]
    train_videos: int
    selection_videos: int
    eval_videos: int
    hashes: dict[str, str]
    media: dict  # how the shards were decoded (stats.json): a packaged model decodes raw video alike

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def keep_train(cfg: DataConfig) -> SelectionFilter | None:
    """Key filter of the training part of the train split (None when nothing is carved out)."""
    if not cfg.selection_fraction:
        return None
    return SelectionFilter(cfg.selection_fraction, selected=False)


def keep_selection(cfg: DataConfig) -> SelectionFilter:
    """Key filter of the selection split (chooses checkpoints; never the evaluation split)."""
    return SelectionFilter(cfg.selection_fraction, selected=True)


def open_dataset(cfg: DataConfig) -> DatasetView:
    """Read ``classes.json`` and the manifests once, on the driver, before workers start."""
    if not cfg.root:
        raise ValueError("data.root is not set: point it at a preprocessing output")
    storage = Storage.open(cfg.root)
    for rel in (contract.CLASSES, f"{cfg.train_split}/{contract.MANIFEST}",
                f"{cfg.eval_split}/{contract.MANIFEST}"):
        if not storage.exists(rel):
            raise FileNotFoundError(f"{storage.uri(rel)} does not exist: run jobs.preprocess "
                                    "for that split first")
    check_shards(cfg.root, cfg.train_split, cfg.eval_split)
    classes = ClassMap.parse(storage.read_bytes(contract.CLASSES).decode("utf-8"),
                             where=storage.uri(contract.CLASSES))
    train_table, train_keys = manifest.read_split(storage, cfg.train_split)
    eval_table, eval_keys = manifest.read_split(storage, cfg.eval_split)
    selection = keep_selection(cfg)
    n_selection = sum(1 for k in train_keys if selection(k)) if cfg.selection_fraction else 0
    keep = keep_train(cfg)
    hashes = {"train": manifest.dataset_hash(train_table, classes.names, keep),
              "eval": manifest.dataset_hash(eval_table, classes.names),
              "classes": classes.digest}
    if cfg.selection_fraction:
        hashes["selection"] = manifest.dataset_hash(train_table, classes.names, selection)
    train_urls = tuple(list_shards(cfg.root, cfg.train_split))
    return DatasetView(
        root=storage.uri(), classes=classes.names, train_urls=train_urls,
        train_counts=_counts_per_shard(train_table, train_urls, keep),
        eval_urls=tuple(list_shards(cfg.root, cfg.eval_split)),
        train_videos=len(train_keys) - n_selection, selection_videos=n_selection,
        eval_videos=len(eval_keys), hashes=hashes, media=_media(storage, cfg.train_split))


def _counts_per_shard(table, urls: tuple[str, ...], keep) -> tuple[int, ...]:
    """Stored videos per shard from the manifest (``keep``: the training part only), in the
    order of ``urls``: the loader plans every epoch from these, on every rank alike."""
    counts: dict[str, int] = {}
    for key, status, shard in zip(table.column("key").to_pylist(),
                                  table.column("status").to_pylist(),
                                  table.column("shard").to_pylist()):
        if status == manifest.OK and (keep is None or keep(key)):
            counts[shard] = counts.get(shard, 0) + 1
    names = [url.rstrip("/").rsplit("/", 1)[-1] for url in urls]
    unknown = sorted(set(counts) - set(names))
    if unknown:
        raise FileNotFoundError(f"the manifest lists shards that are not there: {unknown[:3]}: "
                                "re-run jobs.preprocess for that split")
    return tuple(counts.get(name, 0) for name in names)


def _media(storage: Storage, split: str) -> dict:
    """The preprocessing media settings recorded in ``{split}/stats.json`` ({} if absent)."""
    rel = f"{split}/{contract.STATS}"
    if not storage.exists(rel):
        return {}
    return dict(json.loads(storage.read_bytes(rel)).get("media") or {})
