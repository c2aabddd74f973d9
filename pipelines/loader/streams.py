"""Shards -> batches inside one training process (rank ``r`` of ``w``), with webdataset.

Training (:func:`train_batches`): every video exactly once per pass, for any shard count. A pass
orders the shards by ``(seed, epoch, pass)`` (the same on every rank) and concatenates their
kept videos; each rank takes an equal range of whole batches and its DataLoader workers split
that range again, so (rank, worker) readers never read the same video, shards fewer than readers
are split inside (each reader decodes only its slice), and every rank yields exactly the same
number of batches. The remainder (fewer than ranks x batch videos) is dropped and counted
(:class:`EpochPlan`); nothing is resampled. Batches carry their videos' keys, so the trainer
can log how many distinct videos an epoch saw.

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
from typing import Any, NamedTuple

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
from pipelines.loader.decode import PickedFrames, decode_picked, pick_frames
from pipelines.loader.sampling import protocol_views, segment_indices
from pipelines.loader.selection import SelectionFilter, in_selection
from pipelines.loader.views import eval_views
from pipelines.shards.reader import open_shards, sample_label

__all__ = ["EpochPlan", "EvalBatch", "SelectionFilter", "TrainBatch", "count_samples",
           "derive_seed", "eval_assignment_note", "eval_batches", "in_selection", "plan_epoch",
           "shard_assignment_note", "train_batches"]

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
    how = ("most readers stream whole shards of their own" if num_shards >= slots else
           "readers share shards, each decoding only its own slice of them")
    return (f"train: {counts}: each pass gives every (rank, worker) a disjoint range of the "
            f"videos in a new shard order; {how}; every video once per pass, the remainder "
            "(fewer than ranks x batch) dropped and counted")


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


def count_samples(urls: Sequence[str], keep: Callable[[str], bool] | None = None) -> list[int]:
    """Kept samples per shard, read from the tar headers (no decoding). The trainer passes the
    manifest's counts instead; this is for callers that have only shards."""
    counts = []
    for url in urls:
        keys = {s["__key__"] for s in _read([url])}
        counts.append(sum(1 for k in keys if keep is None or keep(k)))
    return counts


@dataclass(frozen=True)
class EpochPlan:
    """How one epoch's training videos are cut into equal, disjoint parts.

    A *pass* is one walk over every kept video: the shards in a ``(seed, epoch, pass)`` order,
    each shard's videos in tar order, as one sequence of positions. Rank ``r`` takes positions
    ``[r * B * batch, (r + 1) * B * batch)`` with ``B = videos // (ranks * batch)`` batches per
    rank, and its readers (DataLoader workers) split that range in whole batches, so each video
    is read by exactly one reader of one rank; the last ``videos - ranks * B * batch`` positions
    (fewer than ``ranks * batch``) are dropped and counted. An epoch of more batches than a pass
    holds continues with the next pass (a new order); one of fewer stops early (counted too).
    """

    videos: int
    world_size: int
    batch_size: int
    batches: int  # this epoch's batches per rank

    @property
    def batches_per_pass(self) -> int:
        return self.videos // (self.world_size * self.batch_size)

    @property
    def dropped_per_pass(self) -> int:
        return self.videos - self.world_size * self.batches_per_pass * self.batch_size

    def reader_ranges(self, rank: int, reader: int, readers: int) -> list[tuple[int, int, int]]:
        """``(pass, start, stop)`` positions this reader reads, pass by pass."""
        per_pass, out, left, pass_ = self.batches_per_pass, [], self.batches, 0
        while left > 0:
            quota = min(per_pass, left)
            share = [quota // readers + (w < quota % readers) for w in range(readers)]
            start = (rank * per_pass + sum(share[:reader])) * self.batch_size
            if share[reader]:
                out.append((pass_, start, start + share[reader] * self.batch_size))
            left -= quota
            pass_ += 1
        return out

    def videos_read(self) -> int:
        """Videos read by all ranks this epoch (= ranks x batches x batch size)."""
        return self.world_size * self.batches * self.batch_size


def plan_epoch(videos: int, *, world_size: int, batch_size: int,
               batches: int | None = None) -> EpochPlan:
    """The epoch plan for ``videos`` kept training videos (``batches=None``: one exact pass)."""
    per_pass = videos // (world_size * batch_size)
    if per_pass < 1:
        raise ValueError(f"{videos} training videos cannot give {world_size} rank(s) one batch "
                         f"of {batch_size} each: use a smaller batch or fewer workers")
    return EpochPlan(videos, world_size, batch_size, per_pass if batches is None else batches)


@dataclass(frozen=True)
class _TrainPlan:
    urls: tuple[str, ...]
    counts: tuple[int, ...]
    epoch_plan: EpochPlan
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

    def pass_order(self, pass_: int) -> list[int]:
        """Shard indices in this pass's order (the same on every rank and reader)."""
        order = list(range(len(self.urls)))
        random.Random(derive_seed(self.seed, self.epoch, pass_, "deal")).shuffle(order)
        return order


class _TrainSamples(IterableDataset):
    """This reader's raw samples: its positions of each pass (see :class:`EpochPlan`)."""

    def __init__(self, plan: _TrainPlan) -> None:
        super().__init__()
        self.plan = plan

    def __iter__(self) -> Iterator[dict[str, Any]]:
        p = self.plan
        worker, workers = _worker()
        for pass_, start, stop in p.epoch_plan.reader_ranges(p.rank, worker, workers):
            yield from self._positions(p.pass_order(pass_), start, stop)

    def _positions(self, order: list[int], start: int, stop: int) -> Iterator[dict[str, Any]]:
        p, offset = self.plan, 0
        for index in order:
            count = p.counts[index]
            if count and offset + count > start and offset < stop:
                yield from self._slice(index, max(start - offset, 0), min(stop - offset, count))
            offset += count
            if offset >= stop:
                return

    def _slice(self, index: int, first: int, last: int) -> Iterator[dict[str, Any]]:
        """Kept samples ``first..last-1`` of one shard (the others are skipped undecoded)."""
        p, kept = self.plan, 0
        for sample in _read([p.urls[index]]):
            if p.keep is not None and not p.keep(sample["__key__"]):
                continue
            if kept >= first:
                yield sample
            kept += 1
            if kept >= last:
                return
        raise RuntimeError(f"{p.urls[index]} holds {kept} kept samples, fewer than the "
                           f"{p.counts[index]} its manifest lists: re-run jobs.preprocess")


@dataclass(frozen=True)
class _TrainClips:
    """Raw samples -> (the TSN-sampled frames, still JPEG, label, key).

    Decoding waits for the batcher, after the shuffle buffer: the buffer holds ~0.2 MB of JPEG
    per clip (8 frames), and each clip is decoded, cropped and laid out while it is in cache.
    """

    plan: _TrainPlan

    def __call__(self, samples: Iterable[dict[str, Any]]
                 ) -> Iterator[tuple[PickedFrames, int, str]]:
        frames = self.plan.clip.frames
        rng = self.plan.rng(_worker()[0], "frames")

        def sampler(count: int) -> list[int]:
            return segment_indices(count, frames, rng=rng)[0]

        for sample in samples:
            yield pick_frames(sample, sampler), sample_label(sample), sample["__key__"]


@dataclass(frozen=True)
class _Shuffle:
    plan: _TrainPlan

    def __call__(self, items: Iterable[Any]) -> Iterator[Any]:
        size = self.plan.shuffle_buffer
        if size <= 1:
            return iter(items)
        rng = self.plan.rng(_worker()[0], "shuffle")
        return wds.shuffle(size, size, rng=rng)(iter(items))


class TrainBatch(NamedTuple):
    """One training batch: uint8 clips ``(B, T, 3, S, S)``, int64 labels, the videos' keys."""

    clips: torch.Tensor
    labels: torch.Tensor
    keys: list[str]


@dataclass(frozen=True)
class _TrainBatches:
    """(picked frames, label, key) -> :class:`TrainBatch`: each clip decoded, cropped, resized
    and flipped, then written once, channels first, into the (shared-memory) batch."""

    plan: _TrainPlan

    def __call__(self, items: Iterable[tuple[PickedFrames, int, str]]
                 ) -> Iterator[TrainBatch]:
        p, clip, size = self.plan, self.plan.clip, self.plan.batch_size
        rng = p.rng(_worker()[0], "augment")
        it = iter(items)
        while chunk := list(itertools.islice(it, size)):
            if len(chunk) < size:
                raise RuntimeError(f"a reader's range ended with {len(chunk)} clips, not a whole "
                                   f"batch of {size}: the epoch plan is broken")
            clips = _uint8_buffer((size, clip.frames, 3, clip.size, clip.size))
            view, labels = clips.numpy(), []
            for b, (picked, label, _) in enumerate(chunk):
                frames = decode_picked(picked)
                box, flipped = train_params(frames.shape[2], frames.shape[1], clip, rng)
                channels_first(resample(frames, box, clip.size), flip=flipped, out=view[b])
                labels.append(flipped_label(label, flipped, p.label_swap))
            yield TrainBatch(clips, torch.tensor(labels, dtype=torch.int64),
                             [key for _, _, key in chunk])


class _Epoch:
    """Exactly ``batches`` batches when iterated (each iteration replays the same epoch)."""

    def __init__(self, loader: Any, plan: EpochPlan) -> None:
        self._loader = loader
        self.plan = plan

    def __len__(self) -> int:
        return self.plan.batches

    def __iter__(self) -> Iterator[TrainBatch]:
        return iter(self._loader)


def train_batches(urls: Sequence[str], clip: ClipSettings, *, batch_size: int,
                  batches: int | None, rank: int, world_size: int, seed: int, epoch: int,
                  counts: Sequence[int] | None = None, num_workers: int = 2,
                  shuffle_buffer: int = 256, keep: Callable[[str], bool] | None = None,
                  label_swap: Mapping[int, int] | None = None, pin_memory: bool = False,
                  multiprocessing_context: str | None = None) -> _Epoch:
    """One epoch of training batches for this rank: exactly ``batches`` :class:`TrainBatch`
    (``batches=None``: one exact pass over the videos), every video read by one reader of one
    rank per pass, for any number of shards (see :class:`EpochPlan`).

    ``counts`` are the kept samples of each shard of ``urls`` (the manifest's; read from the
    tars when omitted); the same on every rank. ``keep(key)`` filters samples before decoding
    (e.g. ``SelectionFilter(f, selected=False)`` for train minus the selection split; picklable).
    ``label_swap`` maps a label to its mirror class when a clip is flipped; it is required when
    ``clip.flip_label_swap`` names pairs (see :func:`pipelines.loader.clips.label_swap_indices`).
    Each reader fills its ``shuffle_buffer`` (clips' sampled frames, still JPEG: ~0.2 MB each
    at 8 frames of 340x256, read but not decoded) before its first batch. ``num_workers=0``
    decodes in this process, with this process's torch threads.
    The result has ``len()`` and its :class:`EpochPlan` (``.plan``); iterating it again replays
    the same epoch.
    """
    _check_rank(rank, world_size, num_workers)
    urls = [urls] if isinstance(urls, str) else list(urls)
    _check_urls(urls)
    counts = list(count_samples(urls, keep) if counts is None else counts)
    if len(counts) != len(urls) or min(counts) < 0:
        raise ValueError("counts must give each shard's kept samples (one non-negative each)")
    pairs = sorted(zip(urls, counts))
    if batch_size < 1 or (batches is not None and batches < 1):
        raise ValueError("batch_size and batches must be >= 1")
    if shuffle_buffer < 0:
        raise ValueError("shuffle_buffer must be >= 0")
    if clip.flip and clip.flip_label_swap and not label_swap:
        raise ValueError("clip.flip_label_swap names class pairs but no label_swap was given: "
                         "pass label_swap=label_swap_indices(clip.flip_label_swap, classes)")
    if sum(counts) == 0:
        raise RuntimeError(f"the {len(urls)} shards hold no sample that passes keep(): an epoch "
                           "of batches cannot be made from them")
    epoch_plan = plan_epoch(sum(counts), world_size=world_size, batch_size=batch_size,
                            batches=batches)
    plan = _TrainPlan(tuple(u for u, _ in pairs), tuple(c for _, c in pairs), epoch_plan, clip,
                      batch_size, rank, world_size, int(seed), int(epoch), shuffle_buffer, keep,
                      dict(label_swap or {}))
    _log_once(f"rank {rank}: {shard_assignment_note(len(urls), world_size, num_workers)}")
    pipeline = wds.DataPipeline(_TrainSamples(plan), _TrainClips(plan), _Shuffle(plan),
                                _TrainBatches(plan))
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=num_workers,
                           pin_memory=pin_memory, multiprocessing_context=multiprocessing_context,
                           persistent_workers=False)
    return _Epoch(loader, epoch_plan)


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
