"""The training loop that runs in every Ray Train worker, readable top to bottom.

Per epoch: exactly ``steps_per_epoch`` optimiser steps on this rank's shards, then every rank
evaluates its share of the evaluation split (and of the selection split) and the predictions are
gathered, then a checkpoint is reported by every rank (a report is a barrier in Ray Train V2).
Rank 0 logs the epoch through the tracking protocol with the global step.
"""
from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipelines import distributed
from pipelines.evaluation import classification_metrics, gather_predictions, predict
from pipelines.loader.clips import label_swap_indices
from pipelines.loader.streams import eval_batches, train_batches
from pipelines.train import checkpoint
from pipelines.train.config import TrainConfig
from pipelines.train.data import DatasetView, keep_selection, keep_train
from pipelines.train.engine import build_model, make_engine, pick_device, set_lr
from pipelines.train.schedule import lr_at, scaled_lr
from pipelines.train.tracking import Tracking
from tsi_model import normalize_clip

FAULT_MARKER = ".tsi-fault-injected"


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


def _rank_world() -> tuple[int, int]:
    import ray.train

    context = ray.train.get_context()
    return context.get_world_rank(), context.get_world_size()


def _threads(cfg: TrainConfig) -> None:
    if not cfg.scaling.use_gpu:
        torch.set_num_threads(cfg.scaling.torch_threads or max(1, int(cfg.scaling.cpus_per_worker)))


def _maybe_fail(cfg: TrainConfig, run_dir: str, rank: int, step: int) -> None:
    """Test hook: rank ``fail_rank`` raises once, the first time it reaches ``fail_at_step``."""
    run = cfg.run
    if run.fail_at_step is None or rank != run.fail_rank or step != run.fail_at_step:
        return
    marker = Path(run_dir, FAULT_MARKER)
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(step))
    raise RuntimeError(f"injected failure at step {step} on rank {rank} (run.fail_at_step)")


def evaluate(engine: Any, inputs: LoopInputs, urls, *, protocol: str, keep, rank: int,
             world: int, device, dtype) -> Any:
    """Predictions of every video of ``urls`` (gathered on every rank) and their metrics."""
    cfg = inputs.config
    engine.eval()
    batches = eval_batches(urls, cfg.data.clip, protocol=protocol,
                           batch_size=cfg.data.eval_batch_size, rank=rank, world_size=world,
                           num_workers=min(cfg.data.loader_workers, 1), keep=keep)
    local = predict(engine, batches, num_classes=inputs.dataset.num_classes, device=device,
                    dtype=dtype)
    preds = gather_predictions(local, inputs.dataset.num_classes)
    engine.train()
    return preds, classification_metrics(preds, inputs.dataset.num_classes)


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
    folder = run_dir / f"checkpoint_local_{epoch:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    yield str(folder)
    for old in sorted(run_dir.glob("checkpoint_local_*"))[:-inputs.config.run.num_to_keep]:
        shutil.rmtree(old, ignore_errors=True)


def _checkpoint_to_resume(inputs: LoopInputs) -> Any:
    """Ray's latest checkpoint of this run (after a restart or a re-submission), if any.

    In local mode (``num_workers=0``) Ray keeps none: the run's own ``checkpoint_local_*``
    folders are used instead, so an in-process run resumes by name like a cluster run.
    """
    import ray.train
    from ray.train import Checkpoint

    found = ray.train.get_checkpoint()
    if found is not None or inputs.config.scaling.num_workers > 0:
        return found
    local = sorted(Path(inputs.run_dir).glob("checkpoint_local_*"))
    return Checkpoint.from_directory(str(local[-1])) if local else None


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


def train_loop(config: dict[str, Any]) -> None:
    """The body of every Ray Train worker; ``config["inputs"]`` is the driver's inputs."""
    import ray.train
    from ray.train import Checkpoint

    inputs: LoopInputs = config["inputs"]
    cfg, data = inputs.config, inputs.dataset
    rank, world = _rank_world()
    _threads(cfg)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg)
    global_batch = cfg.data.batch_size * world * cfg.optim.grad_accum
    base_lr = scaled_lr(cfg.optim, global_batch)
    engine = make_engine(cfg, build_model(cfg, data.num_classes), base_lr, device)

    state = checkpoint.TrainState(world_size=world, run_name=inputs.run_name)
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
    logger = inputs.tracking.epoch_logger(inputs.tracking_handle) if rank == 0 else None
    micro_batches = inputs.steps_per_epoch * cfg.optim.grad_accum
    step = state.global_step
    swap = label_swap_indices(cfg.data.clip.flip_label_swap, data.classes)

    for epoch in range(state.epoch, cfg.epochs):
        began, waited, seen = time.perf_counter(), 0.0, 0
        losses, correct = [], 0
        batches = iter(train_batches(
            data.train_urls, cfg.data.clip, batch_size=cfg.data.batch_size,
            batches=micro_batches, rank=rank, world_size=world, seed=cfg.seed, epoch=epoch,
            num_workers=cfg.data.loader_workers, shuffle_buffer=cfg.data.shuffle_buffer,
            keep=keep_train(cfg.data), label_swap=swap))
        for micro in range(micro_batches):
            wait_start = time.perf_counter()
            clips, labels = next(batches)
            waited += time.perf_counter() - wait_start
            set_lr(engine, lr_at(cfg.optim, step, inputs.steps_per_epoch, cfg.epochs, base_lr))
            x = normalize_clip(clips.to(device.device, non_blocking=True), dtype=device.dtype)
            y = labels.to(device.device)
            logits = engine(x)
            loss = F.cross_entropy(logits.float(), y)
            engine.backward(loss)
            engine.step()
            if engine.is_gradient_accumulation_boundary():
                step += 1
                _maybe_fail(cfg, inputs.run_dir, rank, step)
            losses.append(float(loss.detach()))
            correct += int((logits.argmax(1) == y).sum())
            seen += len(labels)
        train_seconds = time.perf_counter() - began
        del batches  # stop this epoch's loader workers (and free their buffers) before evaluating
        loss_mean, top1_mean, wait_share = distributed.mean_over_ranks(
            [float(np.mean(losses)), correct / max(seen, 1), waited / max(train_seconds, 1e-9)],
        )
        metrics: dict[str, float] = {
            "epoch": float(epoch + 1), "train_loss": loss_mean, "train_top1": top1_mean,
            "lr": lr_at(cfg.optim, max(step - 1, 0), inputs.steps_per_epoch, cfg.epochs, base_lr),
            "clips_per_s": seen * world / train_seconds, "data_wait_share": wait_share,
            "epoch_seconds": train_seconds,
        }
        distributed.broadcast_buffers(engine.module)
        last = epoch + 1 == cfg.epochs
        val_preds = None
        if last or (epoch + 1) % cfg.data.eval_every == 0:
            val_preds, val = evaluate(engine, inputs, data.eval_urls,
                                      protocol=cfg.data.eval_protocol, keep=None, rank=rank,
                                      world=world, device=device.device, dtype=device.dtype)
            metrics.update(val.as_dict("val_"))
        if cfg.data.selection_fraction:
            _, sel = evaluate(engine, inputs, data.train_urls, protocol=cfg.data.eval_protocol,
                              keep=keep_selection(cfg.data), rank=rank, world=world,
                              device=device.device, dtype=device.dtype)
            metrics.update(sel.as_dict("selection_"))
        if last and cfg.data.final_protocol:
            _, final = evaluate(engine, inputs, data.eval_urls, protocol=cfg.data.final_protocol,
                                keep=None, rank=rank, world=world, device=device.device,
                                dtype=device.dtype)
            metrics.update(final.as_dict(f"val{cfg.data.final_protocol}_"))
        metrics["global_step"] = float(step)
        if rank == 0:
            val_top1 = metrics.get("val_top1", float("nan"))
            print(f"[train] epoch {epoch + 1}/{cfg.epochs} step {step}: loss {loss_mean:.4f} "
                  f"train top1 {top1_mean:.3f} val top1 {val_top1:.3f} "
                  f"lr {metrics['lr']:.4g} {metrics['clips_per_s']:.1f} clips/s "
                  f"(data wait {wait_share:.0%})", flush=True)
            logger.log_epoch(metrics, step=step, epoch=epoch + 1)
        state = checkpoint.TrainState(epoch + 1, step, world, inputs.run_name)
        if (epoch + 1) % cfg.run.checkpoint_every == 0 or last:
            with _checkpoint_folder(inputs, epoch + 1) as folder:
                checkpoint.save(engine, folder, state, rank, metrics)
                if rank == 0:
                    _save_probe(engine, inputs, folder, device)
                    if val_preds is not None:
                        checkpoint.save_predictions(folder, val_preds)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics)
    if logger is not None:
        logger.close()


def steps_per_epoch(cfg: TrainConfig, train_videos: int, world: int) -> int:
    """Optimiser steps per epoch: configured, else one pass over the training videos."""
    if cfg.batches_per_epoch:
        return cfg.batches_per_epoch
    global_batch = cfg.data.batch_size * max(world, 1) * cfg.optim.grad_accum
    return max(1, math.floor(train_videos / global_batch))


__all__ = ["LoopInputs", "evaluate", "steps_per_epoch", "train_loop"]
