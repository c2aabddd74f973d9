"""Shards -> batches inside one training process (rank ``r`` of ``w``), with webdataset.

Training (:func:`train_batches`): every rank yields exactly ``batches`` full batches per epoch,
so DDP ranks never wait on each other at an epoch's end, whatever the shard sizes:

- shards >= ranks x readers (a reader is a DataLoader worker, or the process itself with
  ``num_workers=0``): the sorted shard list is shuffled with ``(seed, epoch)`` (the same on every
  rank) and dealt out ``split_by_node``-style by the explicit ``rank``/``world_size``, then by
  worker, so each (rank, worker) reads its own disjoint shards, a different deal every epoch;
- fewer shards: every (rank, worker) reads all shards, in its own seeded order. Ranks then do not
  read disjoint samples (each sees the whole set, in a different order and augmentation);
  :func:`shard_assignment_note` says so, and it is logged on ``tsi.loader``;
- when a reader's shards run out before the epoch's batches are done it starts over on them in a
  new shuffled order (resampling); the loader's ``with_epoch`` cuts the endless stream at
  ``batches``.

All randomness (deal, shard order, shuffle buffer, frame sampling, crops, flips) comes from
``random.Random`` seeded by SHA-256 of ``(seed, epoch, rank, worker, purpose)``: a run is
reproducible for the same ``num_workers`` and every epoch differs.

Evaluation (:func:`eval_batches`): every sample exactly once over all ranks and workers, with
no resampling and no padding. Shards >= ranks x readers: (rank, worker) reads
``sorted(urls)[rank::world][worker::readers]``; fewer shards: every reader reads all shards in
sorted order and keeps kept-sample number ``i`` when ``i % (world x readers)`` is its slot.
Both are exact partitions; the last batch may be short and a rank may get none.

Clips leave DataLoader workers as uint8 (normalising there would send 4x the bytes between
processes; ``tsi_model.normalize_clip`` runs on the training device), written straight into
shared memory so the hand-over to the main process copies nothing.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from pipelines.loader.augment import (
    channels_first,
    flipped_label,
    resample,
    train_params,
)
from pipelines.loader.clips import ClipSettings
from pipelines.loader.decode import read_frames, stored_frame_count
from pipelines.loader.sampling import protocol_views, segment_indices
from pipelines.loader.selection import SelectionFilter, in_selection
from pipelines.loader.views import eval_views
from pipelines.shards.reader import open_shards, sample_label

__all__ = ["EvalBatch", "SelectionFilter", "derive_seed", "eval_assignment_note", "eval_batches",
           "in_selection", "shard_assignment_note", "train_batches"]

logger = logging.getLogger("tsi.loader")


_LOGGED: set[str] = set()


def _log_once(message: str) -> None:
    """Say what the shard assignment does once per process, not every epoch."""
    if message not in _LOGGED:
        _LOGGED.add(message)
        logger.info(message)


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from ``parts`` (SHA-256 of their ``str``s: the same in every process)."""
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _readers(num_shards: int, world_size: int, num_workers: int) -> tuple[int, str]:
    readers = max(1, num_workers)
    slots = world_size * readers
    return slots, (f"{num_shards} shards {'>=' if num_shards >= slots else '<'} "
                   f"{world_size} ranks x {readers} readers each = {slots}")


def shard_assignment_note(num_shards: int, world_size: int, num_workers: int) -> str:
    """What :func:`train_batches` does with this many shards (logged at start)."""
    slots, counts = _readers(num_shards, world_size, num_workers)
    if num_shards >= slots:
        return (f"train: {counts}: every (rank, worker) streams its own disjoint shards, dealt "
                "anew each epoch; a reader whose shards run out before the epoch's batches "
                "reads them again in a new order")
    return (f"train: {counts}: every (rank, worker) resamples from all {num_shards} shards in "
            "its own seeded order, so ranks do NOT read disjoint samples (write at least "
            f"{slots} shards for disjoint ones)")


def eval_assignment_note(num_shards: int, world_size: int, num_workers: int) -> str:
    """What :func:`eval_batches` does with this many shards (logged at start)."""
    slots, counts = _readers(num_shards, world_size, num_workers)
    if num_shards >= slots:
        return f"eval: {counts}: shards split by (rank, worker), each sample read once"
    return (f"eval: {counts}: every (rank, worker) reads all shards and keeps kept sample i "
            f"when i % {slots} is its slot, each sample once")


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def _uint8_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """A uint8 tensor; in a DataLoader worker, allocated in shared memory (no copy on hand-over)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    try:  # what torch's own default_collate does in a worker
        storage = torch.UntypedStorage._new_shared(math.prod(shape))
    except AttributeError:  # a torch without the private helper: allocate, then move (a copy)
        return torch.empty(shape, dtype=torch.uint8).share_memory_()
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, shape)


def _read(urls: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Raw samples of ``urls`` in that order (no splitting, no shuffling: the caller decides)."""
    if not urls:
        return iter(())
    return iter(open_shards(list(urls), shardshuffle=False, nodesplitter=None,
                            workersplitter=None, empty_check=False))


def _check_urls(urls: Sequence[str]) -> list[str]:
    if isinstance(urls, str):
        urls = [urls]
    ordered = sorted(urls)
    if not ordered:
        raise ValueError("no shards given")
    if len(set(ordered)) != len(ordered):
        raise ValueError("the shard list names a shard twice")
    return ordered


def _check_rank(rank: int, world_size: int, num_workers: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    if num_workers < 0:
        raise ValueError("num_workers must be >= 0")


# ---------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class _TrainPlan:
    urls: tuple[str, ...]
    clip: ClipSettings
    batch_size: int
    rank: int
    world_size: int
    seed: int
    epoch: int
    shuffle_buffer: int
    keep: Callable[[str], bool] | None
    label_swap: dict[int, int] = field(default_factory=dict)

    def rng(self, worker: int, purpose: str) -> random.Random:
        return random.Random(derive_seed(self.seed, self.epoch, self.rank, worker, purpose))


class _TrainSamples(IterableDataset):
    """This reader's raw samples, endlessly: its shards, then again in a new order, and so on."""

    def __init__(self, plan: _TrainPlan) -> None:
        super().__init__()
        self.plan = plan

    def __iter__(self) -> Iterator[dict[str, Any]]:
        p = self.plan
        worker, workers = _worker()
        urls = list(p.urls)
        if len(urls) >= p.world_size * workers:
            random.Random(derive_seed(p.seed, p.epoch, "deal")).shuffle(urls)
            urls = urls[p.rank::p.world_size][worker::workers]
        rng = p.rng(worker, "shard-order")
        while True:
            order = list(urls)
            rng.shuffle(order)
            count = 0
            for sample in _read(order):
                if p.keep is None or p.keep(sample["__key__"]):
                    count += 1
                    yield sample
            if count == 0:
                raise RuntimeError(
                    f"rank {p.rank} worker {worker}: its {len(order)} shards hold no sample "
                    "that passes keep(); an epoch of batches cannot be made from them")


@dataclass(frozen=True)
class _TrainClips:
    """Raw samples -> (uint8 (T, S, S, 3) resampled clip, flipped, label).

    The layout copy to ``(T, 3, S, S)`` (with the flip) is left to the batcher, which writes it
    straight into the shared-memory batch: one copy per clip after the resample, not two.
    """

    plan: _TrainPlan

    def __call__(self, samples: Iterable[dict[str, Any]]
                 ) -> Iterator[tuple[np.ndarray, bool, int]]:
        p, clip = self.plan, self.plan.clip
        rng = p.rng(_worker()[0], "augment")
        for sample in samples:
            index = segment_indices(stored_frame_count(sample), clip.frames, rng=rng)[0]
            frames = read_frames(sample, index)
            box, flipped = train_params(frames.shape[2], frames.shape[1], clip, rng)
            yield (resample(frames, box, clip.size), flipped,
                   flipped_label(sample_label(sample), flipped, p.label_swap))


@dataclass(frozen=True)
class _Shuffle:
    plan: _TrainPlan

    def __call__(self, items: Iterable[Any]) -> Iterator[Any]:
        size = self.plan.shuffle_buffer
        if size <= 1:
            return iter(items)
        rng = self.plan.rng(_worker()[0], "shuffle")
        return wds.shuffle(size, size, rng=rng)(iter(items))


@dataclass(frozen=True)
class _TrainBatches:
    batch_size: int

    def __call__(self, items: Iterable[tuple[np.ndarray, bool, int]]
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        it = iter(items)
        while True:
            chunk = list(itertools.islice(it, self.batch_size))
            if len(chunk) < self.batch_size:
                return  # only reachable if the endless stream ended: the loader restarts it
            t, s = chunk[0][0].shape[:2]
            clips = _uint8_buffer((self.batch_size, t, 3, s, s))
            view = clips.numpy()
            for b, (frames, flipped, _) in enumerate(chunk):
                channels_first(frames, flip=flipped, out=view[b])
            yield clips, torch.tensor([label for _, _, label in chunk], dtype=torch.int64)


class _Epoch:
    """Exactly ``batches`` batches when iterated (each iteration replays the same epoch)."""

    def __init__(self, loader: Any, batches: int) -> None:
        self._loader = loader
        self._batches = batches

    def __len__(self) -> int:
        return self._batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self._loader)


def train_batches(urls: Sequence[str], clip: ClipSettings, *, batch_size: int, batches: int,
                  rank: int, world_size: int, seed: int, epoch: int, num_workers: int = 2,
                  shuffle_buffer: int = 256, keep: Callable[[str], bool] | None = None,
                  label_swap: Mapping[int, int] | None = None, pin_memory: bool = False,
                  multiprocessing_context: str | None = None,
                  ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of training batches for this rank: exactly ``batches`` of
    ``(clips uint8 (batch_size, T, 3, size, size), labels int64 (batch_size,))``.

    ``keep(key)`` filters samples before decoding (e.g. ``SelectionFilter(f, selected=False)``
    for train minus the selection split; picklable, unlike a lambda, if workers are spawned).
    ``label_swap`` maps a label to its mirror class when a clip is flipped; it is required when
    ``clip.flip_label_swap`` names pairs (see :func:`pipelines.loader.clips.label_swap_indices`).
    Each reader fills its ``shuffle_buffer`` (clips, ~1.2 MB each at 8 x 224²) before its first
    batch. ``num_workers=0`` decodes in this process, with this process's torch threads.
    The result has ``len()``; iterating it again replays the same epoch.
    """
    ordered = _check_urls(urls)
    _check_rank(rank, world_size, num_workers)
    if batch_size < 1 or batches < 1:
        raise ValueError("batch_size and batches must be >= 1")
    if shuffle_buffer < 0:
        raise ValueError("shuffle_buffer must be >= 0")
    if clip.flip and clip.flip_label_swap and not label_swap:
        raise ValueError("clip.flip_label_swap names class pairs but no label_swap was given: "
                         "pass label_swap=label_swap_indices(clip.flip_label_swap, classes)")
    plan = _TrainPlan(tuple(ordered), clip, batch_size, rank, world_size, int(seed), int(epoch),
                      shuffle_buffer, keep, dict(label_swap or {}))
    _log_once(f"rank {rank}: {shard_assignment_note(len(ordered), world_size, num_workers)}")
    pipeline = wds.DataPipeline(_TrainSamples(plan), _TrainClips(plan), _Shuffle(plan),
                                _TrainBatches(batch_size))
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=num_workers,
                           pin_memory=pin_memory, multiprocessing_context=multiprocessing_context,
                           persistent_workers=False)
    return _Epoch(loader.with_epoch(batches), batches)


# -------------------------------------------------------------------------------- evaluation


@dataclass
class EvalBatch:
    """Test views of up to ``batch_size`` videos; view ``v = clip * crops + crop``."""

    keys: list[str]
    labels: torch.Tensor  # int64 (B,)
    clips: torch.Tensor  # uint8 (B, V, T, 3, size, size), V = temporal clips x spatial crops


@dataclass(frozen=True)
class _EvalPlan:
    urls: tuple[str, ...]
    clip: ClipSettings
    protocol: str
    batch_size: int
    rank: int
    world_size: int
    keep: Callable[[str], bool] | None


class _EvalSamples(IterableDataset):
    """This reader's share of the samples: its shards, or every n-th sample of all of them."""

    def __init__(self, plan: _EvalPlan) -> None:
        super().__init__()
        self.plan = plan

    def __iter__(self) -> Iterator[dict[str, Any]]:
        p = self.plan
        worker, workers = _worker()
        slots = p.world_size * workers
        if len(p.urls) >= slots:
            yield from (s for s in _read(p.urls[p.rank::p.world_size][worker::workers])
                        if p.keep is None or p.keep(s["__key__"]))
            return
        slot = p.rank * workers + worker
        kept = (s for s in _read(p.urls) if p.keep is None or p.keep(s["__key__"]))
        for i, sample in enumerate(kept):
            if i % slots == slot:
                yield sample


@dataclass(frozen=True)
class _EvalViews:
    """Raw samples -> (key, label, uint8 (V, T, 3, S, S)) for the plan's protocol."""

    plan: _EvalPlan

    def __call__(self, samples: Iterable[dict[str, Any]]
                 ) -> Iterator[tuple[str, int, np.ndarray]]:
        for sample in samples:
            views = eval_views(sample, self.plan.clip, self.plan.protocol)
            yield sample["__key__"], sample_label(sample), views


@dataclass(frozen=True)
class _EvalBatches:
    batch_size: int

    def __call__(self, items: Iterable[tuple[str, int, np.ndarray]]
                 ) -> Iterator[tuple[list[str], torch.Tensor, torch.Tensor]]:
        it = iter(items)
        while chunk := list(itertools.islice(it, self.batch_size)):
            clips = _uint8_buffer((len(chunk), *chunk[0][2].shape))
            view = clips.numpy()
            for b, (_, _, views) in enumerate(chunk):
                view[b] = views
            yield ([key for key, _, _ in chunk],
                   torch.tensor([label for _, label, _ in chunk], dtype=torch.int64), clips)


def _as_is(item: Any) -> Any:
    return item


class _EvalEpoch:
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __iter__(self) -> Iterator[EvalBatch]:
        for keys, labels, clips in self._loader:
            yield EvalBatch(list(keys), labels, clips)


def eval_batches(urls: Sequence[str], clip: ClipSettings, *, protocol: str = "1x1",
                 batch_size: int, rank: int, world_size: int, num_workers: int = 1,
                 keep: Callable[[str], bool] | None = None, pin_memory: bool = False,
                 multiprocessing_context: str | None = None) -> Iterable[EvalBatch]:
    """This rank's share of the test views: every kept sample exactly once over all ranks.

    ``protocol`` is a key of :data:`pipelines.loader.sampling.PROTOCOLS` (``1x1``: segment
    centres, centre crop; ``10x3``: 10 clips x 3 crops). Batches hold up to ``batch_size``
    videos; the last may be smaller, and a rank may get none.
    """
    ordered = _check_urls(urls)
    _check_rank(rank, world_size, num_workers)
    protocol_views(protocol)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    plan = _EvalPlan(tuple(ordered), clip, protocol, batch_size, rank, world_size, keep)
    _log_once(f"rank {rank}: {eval_assignment_note(len(ordered), world_size, num_workers)}")
    pipeline = wds.DataPipeline(_EvalSamples(plan), _EvalViews(plan), _EvalBatches(batch_size))
    loader = torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=num_workers,
                                         collate_fn=_as_is, pin_memory=pin_memory,
                                         multiprocessing_context=multiprocessing_context)
    return _EvalEpoch(loader)
