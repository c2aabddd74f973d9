"""The training loop that runs in every Ray Train worker, readable top to bottom.

Per epoch: exactly ``steps_per_epoch`` optimiser steps on this rank's shards, then every rank
evaluates its share of the evaluation split (and of the selection split) and the predictions are
gathered, then a checkpoint is reported by every rank (a report is a barrier in Ray Train V2).
Rank 0 logs the epoch through the tracking protocol with the global step.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipelines import distributed
from pipelines.io import Storage
from pipelines.data.twins import twin_indices
from pipelines.evaluation import (
    classification_metrics, gather_predictions, predict, predict_with_reversal, reversal_probe,
)
from pipelines.loader.clips import label_swap_indices
from pipelines.loader.streams import eval_batches, train_batches
from pipelines.train import checkpoint, layout
from pipelines.train.config import TrainConfig
from pipelines.train.data import DatasetView, keep_selection, keep_train
from pipelines.train.engine import build_model, make_engine, pick_device, set_lr
from pipelines.train.layout import RunFolder
from pipelines.train.schedule import lr_at, scaled_lr
from pipelines.train.tracking import Tracking
from tsi_model import normalize_clip

FAULT_MARKER = ".tsi-fault-injected"
FAULT_STEP_ENV, FAULT_RANK_ENV = "TSI_TEST_FAIL_AT_STEP", "TSI_TEST_FAIL_RANK"


@dataclass(frozen=True)
class LoopInputs:
    """What the driver hands every worker (plain, picklable)."""

    config: TrainConfig
    dataset: DatasetView
    run_name: str
    run_dir: str
    steps_per_epoch: int
    tracking: Tracking
    tracking_handle: dict[str, Any]
    weights: Any = None  # pipelines.train.weights.PretrainedWeights: staged on each node
    storage_env: dict[str, str] = field(default_factory=dict)  # object-store client settings
    fault: tuple[int, int] | None = None  # tests only: (step, rank) that raises once


def _rank_world() -> tuple[int, int]:
    import ray.train

    context = ray.train.get_context()
    return context.get_world_rank(), context.get_world_size()


def _threads(cfg: TrainConfig) -> None:
    if not cfg.scaling.use_gpu:
        torch.set_num_threads(cfg.scaling.torch_threads or max(1, int(cfg.scaling.cpus_per_worker)))


def injected_fault(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``(step, rank)`` from ``TSI_TEST_FAIL_AT_STEP`` / ``TSI_TEST_FAIL_RANK`` (default rank 1):
    the tests' way to make one worker raise once mid-run, read on the driver and handed to the
    workers. Not a config setting: no recipe can carry it."""
    env = os.environ if environ is None else environ
    step = env.get(FAULT_STEP_ENV)
    return (int(step), int(env.get(FAULT_RANK_ENV, "1"))) if step else None


def _maybe_fail(fault: tuple[int, int] | None, run_dir: str, rank: int, step: int) -> None:
    """Rank ``fault[1]`` raises once, the first time it reaches step ``fault[0]``."""
    if fault is None or (step, rank) != fault:
        return
    folder = Storage.open(run_dir)
    if folder.exists(FAULT_MARKER):
        return
    folder.write_bytes(FAULT_MARKER, str(step).encode())
    raise RuntimeError(f"injected failure at step {step} on rank {rank} ({FAULT_STEP_ENV})")


def evaluate(engine: Any, inputs: LoopInputs, urls, *, protocol: str, keep, rank: int,
             world: int, device, dtype, probe: bool = False) -> Any:
    """Predictions of every video of ``urls`` (gathered on every rank) and their metrics.

    With ``probe`` and declared order twins among the classes, every clip is scored reversed in
    time too and the metrics carry the reversal probe (``pipelines.evaluation.reversal``).
    """
    cfg = inputs.config
    num_classes = inputs.dataset.num_classes
    twins = twin_indices(inputs.dataset.classes) if probe else {}
    engine.eval()
    batches = eval_batches(urls, cfg.data.clip, protocol=protocol,
                           batch_size=cfg.data.eval_batch_size, rank=rank, world_size=world,
                           num_workers=cfg.data.eval_loader_workers, keep=keep,
                           pin_memory=device.type == "cuda")
    options = dict(num_classes=num_classes, device=device, dtype=dtype)
    if twins:
        local, local_reversed = predict_with_reversal(engine, batches, **options)
    else:
        local = predict(engine, batches, **options)
    preds = gather_predictions(local, num_classes)
    engine.train()
    metrics = classification_metrics(preds, num_classes).as_dict()
    if twins:
        metrics |= reversal_probe(preds, gather_predictions(local_reversed, num_classes), twins)
    return preds, metrics


@contextlib.contextmanager
def _checkpoint_folder(inputs: LoopInputs, epoch: int) -> Iterator[str]:
    """Where a checkpoint is assembled before ``ray.train.report`` copies it to storage.

    With ``num_workers=0`` (the loop runs in the driver) Ray keeps no copy, so the folder is
    the run's own ``checkpoint_local_{epoch}``, kept like Ray's checkpoints would be.
    """
    if inputs.config.scaling.num_workers > 0:
        with tempfile.TemporaryDirectory(prefix="tsi-ckpt-") as folder:
            yield folder
        return
    run_dir = Path(inputs.run_dir)
    folder = run_dir / f"{layout.LOCAL_CHECKPOINT}{epoch:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    yield str(folder)
    for old in sorted(run_dir.glob(layout.LOCAL_CHECKPOINT + "*"))[:-inputs.config.run.num_to_keep]:
        shutil.rmtree(old, ignore_errors=True)


def _checkpoint_to_resume(inputs: LoopInputs) -> Any:
    """The run's latest complete checkpoint (after a restart or a re-submission), if any.

    Ray Train offers the last checkpoint its controller registered; a worker killed right after
    reporting can leave a newer one in run storage that the controller never heard of (seen
    when a node was killed: the run restarted at epoch 0 and logged epoch 1 twice). Run
    storage, where a checkpoint is marked complete once every rank uploaded it, decides. In
    local mode (``num_workers=0``) Ray keeps none: the run's own folders are used.
    """
    import ray.train
    from ray.train import Checkpoint

    offered = ray.train.get_checkpoint()
    run = RunFolder(inputs.config.run.storage_path, inputs.run_name)
    complete = run.checkpoints()
    if not complete:
        return offered
    folder, _ = complete[-1]
    if offered is not None and offered.path.rstrip("/").rsplit("/", 1)[-1] == folder:
        return offered
    storage = Storage.open(run.location(folder))
    return Checkpoint(storage.root, filesystem=None if storage.is_local else storage.fs)


@torch.no_grad()
def _save_probe(engine: Any, inputs: LoopInputs, folder: str, device) -> None:
    """The engine's eval-mode logits on the first evaluation batch, for the export check."""
    cfg = inputs.config
    batch = next(iter(eval_batches(inputs.dataset.eval_urls, cfg.data.clip, protocol="1x1",
                                   batch_size=min(cfg.data.eval_batch_size, 4), rank=0,
                                   world_size=1, num_workers=0)), None)
    if batch is None:
        return
    clips = batch.clips[:, 0]
    engine.eval()
    logits = engine(normalize_clip(clips.to(device.device), dtype=device.dtype))
    engine.train()
    checkpoint.save_probe(folder, clips, logits)


@dataclass
class _Worker:
    """What one worker holds across epochs: its place, device, engine and where the run is."""

    rank: int
    world: int
    device: Any
    engine: Any
    base_lr: float
    state: checkpoint.TrainState


def _start(inputs: LoopInputs) -> _Worker:
    """Threads, seed, device and engine; the run's latest checkpoint restored if there is one."""
    cfg = inputs.config
    rank, world = _rank_world()
    _threads(cfg)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg)
    global_batch = cfg.data.batch_size * world * cfg.optim.grad_accum
    base_lr = scaled_lr(cfg.optim, global_batch)
    model = build_model(cfg, inputs.dataset.num_classes, weights=inputs.weights)
    engine = make_engine(cfg, model, base_lr, device)
    state = checkpoint.TrainState(world_size=world, run_name=inputs.run_name,
                                  config_hash=cfg.digest())
    resumed = _checkpoint_to_resume(inputs)
    if resumed is not None:
        with resumed.as_directory() as folder:
            state = checkpoint.restore(engine, folder)
        if state.world_size != world:
            raise RuntimeError(f"run {inputs.run_name} was checkpointed with {state.world_size} "
                               f"workers, not {world}: ZeRO optimiser state is per rank")
        if rank == 0:
            print(f"[train] resuming {inputs.run_name} at epoch {state.epoch}, step "
                  f"{state.global_step}", flush=True)
    return _Worker(rank, world, device, engine, base_lr, state)


def micro_step(engine: Any, clips: torch.Tensor, labels: torch.Tensor, device: Any
               ) -> tuple[float, int, bool]:
    """Forward, backward and DeepSpeed's step for one micro-batch: (loss, correct, stepped).

    ``stepped`` says whether the optimiser stepped on this micro-batch: DeepSpeed's
    ``is_gradient_accumulation_boundary()`` describes the micro-batch about to run, so it is
    read before ``engine.step()``, which moves its counter on.
    """
    boundary = engine.is_gradient_accumulation_boundary()
    x = normalize_clip(clips.to(device.device, non_blocking=True), dtype=device.dtype)
    y = labels.to(device.device, non_blocking=True)
    logits = engine(x)
    loss = F.cross_entropy(logits.float(), y)
    engine.backward(loss)
    engine.step()
    return float(loss.detach()), int((logits.argmax(1) == y).sum()), boundary


def _video_ids(keys: list[str]) -> np.ndarray:
    """64-bit ids of video keys (the same in every process, unlike ``hash``)."""
    return np.array([int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big",
                                    signed=True) for k in keys], dtype=np.int64)


def _train_epoch(work: _Worker, inputs: LoopInputs, epoch: int) -> dict[str, float]:
    """One epoch of optimiser steps on this rank's part of the videos; its metrics, reduced."""
    cfg, data = inputs.config, inputs.dataset
    swap = label_swap_indices(cfg.data.clip.flip_label_swap, data.classes)
    micro_batches = inputs.steps_per_epoch * cfg.optim.grad_accum
    batches = train_batches(
        data.train_urls, cfg.data.clip, batch_size=cfg.data.batch_size, batches=micro_batches,
        counts=data.train_counts, rank=work.rank, world_size=work.world, seed=cfg.seed,
        epoch=epoch, num_workers=cfg.data.loader_workers, shuffle_buffer=cfg.data.shuffle_buffer,
        keep=keep_train(cfg.data), label_swap=swap, pin_memory=work.device.device.type == "cuda")
    began, waited, seen, correct, losses, ids = time.perf_counter(), 0.0, 0, 0, [], []
    stream = iter(batches)
    for _ in range(micro_batches):
        wait_start = time.perf_counter()
        clips, labels, keys = next(stream)
        waited += time.perf_counter() - wait_start
        lr = lr_at(cfg.optim, work.state.global_step, inputs.steps_per_epoch, cfg.epochs,
                   work.base_lr)
        set_lr(work.engine, lr)
        loss, right, stepped = micro_step(work.engine, clips, labels, work.device)
        if stepped:
            work.state = replace(work.state, global_step=work.state.global_step + 1)
            _maybe_fail(inputs.fault, inputs.run_dir, work.rank, work.state.global_step)
        losses.append(loss)
        correct += right
        seen += len(labels)
        ids.append(_video_ids(keys))
    seconds = time.perf_counter() - began
    del stream, batches  # stop this epoch's loader workers (and free their buffers)
    loss_mean, top1_mean, wait_share = distributed.mean_over_ranks(
        [float(np.mean(losses)), correct / max(seen, 1), waited / max(seconds, 1e-9)])
    everyone = np.concatenate(distributed.all_gather_objects(np.concatenate(ids)))
    distinct = int(np.unique(everyone).size)
    return {
        "epoch": float(epoch + 1), "train_loss": loss_mean, "train_top1": top1_mean,
        "lr": lr, "clips_per_s": seen * work.world / seconds, "data_wait_share": wait_share,
        "epoch_seconds": seconds, "train/videos_seen": float(everyone.size),
        "train/distinct_videos": float(distinct),
        "train/videos_dropped": float(max(data.train_videos - distinct, 0)),
    }


def _evaluate_epoch(work: _Worker, inputs: LoopInputs, epoch: int,
                    metrics: dict[str, float]) -> Any:
    """Validation (and selection, and the final protocol) when due; the eval predictions."""
    cfg, data = inputs.config, inputs.dataset
    last = epoch + 1 == cfg.epochs
    where = {"rank": work.rank, "world": work.world, "device": work.device.device,
             "dtype": work.device.dtype}
    val_preds = None
    if last or (epoch + 1) % cfg.data.eval_every == 0:
        val_preds, val = evaluate(work.engine, inputs, data.eval_urls,
                                  protocol=cfg.data.eval_protocol, keep=None, probe=True, **where)
        metrics.update(_prefixed("val_", val))
    if cfg.data.selection_fraction:
        _, sel = evaluate(work.engine, inputs, data.train_urls, protocol=cfg.data.eval_protocol,
                          keep=keep_selection(cfg.data), **where)
        metrics.update(_prefixed("selection_", sel))
    if last and cfg.data.final_protocol:
        _, final = evaluate(work.engine, inputs, data.eval_urls, protocol=cfg.data.final_protocol,
                            keep=None, **where)
        metrics.update(_prefixed(f"val{cfg.data.final_protocol}_", final))
    return val_preds


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def _report(work: _Worker, inputs: LoopInputs, epoch: int, metrics: dict[str, float],
            val_preds: Any) -> None:
    """The epoch's checkpoint (when due) reported to Ray Train by every rank: a barrier."""
    import ray.train
    from ray.train import Checkpoint

    cfg = inputs.config
    if (epoch + 1) % cfg.run.checkpoint_every and epoch + 1 != cfg.epochs:
        ray.train.report(metrics)
        return
    with _checkpoint_folder(inputs, epoch + 1) as folder:
        checkpoint.save(work.engine, folder, work.state, work.rank, metrics, cfg)
        if work.rank == 0:
            _save_probe(work.engine, inputs, folder, work.device)
            if val_preds is not None:
                checkpoint.save_predictions(folder, val_preds)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))
    if cfg.scaling.num_workers > 0 and work.rank == 0:  # report returned on every rank
        RunFolder(cfg.run.storage_path, inputs.run_name).mark_complete(
            work.state.epoch, work.state.global_step)


def train_loop(config: dict[str, Any]) -> None:
    """The body of every Ray Train worker; ``config["inputs"]`` is the driver's inputs.

    Per epoch: train, reduce the epoch's metrics, make the ranks' BatchNorm statistics one,
    evaluate when due, checkpoint and report (every rank), and only then log the epoch: an epoch
    whose checkpoint was lost is redone after a restart and must not be logged twice.
    """
    inputs: LoopInputs = config["inputs"]
    cfg = inputs.config
    os.environ.update(inputs.storage_env)  # shards, weights and checkpoints in object storage
    work = _start(inputs)
    logger = inputs.tracking.epoch_logger(inputs.tracking_handle) if work.rank == 0 else None
    for epoch in range(work.state.epoch, cfg.epochs):
        metrics = _train_epoch(work, inputs, epoch)
        distributed.broadcast_buffers(work.engine.module)
        val_preds = _evaluate_epoch(work, inputs, epoch, metrics)
        metrics["global_step"] = float(work.state.global_step)
        work.state = replace(work.state, epoch=epoch + 1)
        _report(work, inputs, epoch, metrics, val_preds)
        if logger is not None:
            _print_epoch(cfg, epoch, work.state.global_step, metrics)
            logger.log_epoch(metrics, step=work.state.global_step, epoch=epoch + 1)
    if logger is not None:
        logger.close()


def _print_epoch(cfg: TrainConfig, epoch: int, step: int, metrics: dict[str, float]) -> None:
    val = f" val top1 {metrics['val_top1']:.3f}" if "val_top1" in metrics else ""
    if "val_reversal_flip" in metrics:
        val += f" (reversal flip {metrics['val_reversal_flip']:.3f})"
    print(f"[train] epoch {epoch + 1}/{cfg.epochs} step {step}: loss {metrics['train_loss']:.4f} "
          f"train top1 {metrics['train_top1']:.3f}{val} lr {metrics['lr']:.4g} "
          f"{metrics['clips_per_s']:.1f} clips/s (data wait {metrics['data_wait_share']:.0%}; "
          f"{metrics['train/distinct_videos']:.0f} distinct videos)", flush=True)


def steps_per_epoch(cfg: TrainConfig, train_videos: int, world: int) -> int:
    """Optimiser steps per epoch: configured, else one pass over the training videos."""
    if cfg.batches_per_epoch:
        return cfg.batches_per_epoch
    global_batch = cfg.data.batch_size * max(world, 1) * cfg.optim.grad_accum
    return max(1, math.floor(train_videos / global_batch))


__all__ = ["LoopInputs", "evaluate", "steps_per_epoch", "train_loop"]
