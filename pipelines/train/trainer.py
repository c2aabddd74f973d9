"""The driver side of a training run: name it, check it, fit it on Ray Train, export the model.

``run_training(cfg)`` is what ``python -m jobs.train`` calls. Order matters for a platform: the
cheap checks (dataset readable, tracking backend reachable, resume compatible) come before any
worker starts; the export comes from the run's own storage after ``fit``, so a model is never
lost once its last checkpoint is written.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.config import to_dict
from pipelines.train import checkpoint
from pipelines.train.config import TrainConfig
from pipelines.train.data import DatasetView, open_dataset
from pipelines.train.engine import build_model, builder_options
from pipelines.train.loop import LoopInputs, steps_per_epoch, train_loop
from pipelines.train.tracking import Tracking, builtin_tracking

EXPORT_NAME = "model.pt"


class TrainingError(RuntimeError):
    """A run that did not finish (its checkpoints stay; re-running with its name resumes)."""


class ResumeRefused(ValueError):
    """An existing run cannot be continued with this config (e.g. another world size)."""


@dataclass(frozen=True)
class TrainResult:
    run_name: str
    run_dir: str
    export_path: str
    checkpoint_path: str  # the training checkpoint the export was made from
    metrics: dict[str, Any]
    resumed_from_step: int | None


def code_version(root: Path | None = None) -> str:
    """``{package version}+g{commit}`` from git, else ``+src{hash of the source tree}``.

    A ``ray job submit --working-dir`` upload has no ``.git``; the hash of the Python sources
    still tells two code versions apart.
    """
    import hashlib
    from importlib import metadata

    root = root or Path(__file__).resolve().parents[2]
    try:
        version = metadata.version("tsi-platform")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=5, check=True).stdout.strip()

        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return f"{version}+g{commit}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        digest = hashlib.sha256()
        for path in sorted(p for d in ("tsi_model", "pipelines", "jobs")
                           for p in (root / d).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
        return f"{version}+src{digest.hexdigest()[:12]}"


def _storage(cfg: TrainConfig) -> str:
    path = cfg.run.storage_path
    return path if "://" in path else os.path.abspath(path)


def _check_resume(run_dir: Path, world: int) -> tuple[Path, checkpoint.TrainState] | None:
    found = checkpoint.latest(run_dir)
    if found is not None and found[1].world_size != world:
        raise ResumeRefused(
            f"run {run_dir.name} was trained with {found[1].world_size} workers; resuming with "
            f"{world} is refused (ZeRO optimiser state is partitioned per rank). Use "
            f"scaling.num_workers={found[1].world_size} or a new run name")
    return found


def _export_metadata(cfg: TrainConfig, data: DatasetView, run_name: str, world: int,
                     state: checkpoint.TrainState, metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "classes": list(data.classes), "clip": to_dict(cfg.data.clip), "media": dict(data.media),
        "dataset_hashes": dict(data.hashes), "dataset_root": data.root,
        "config_hash": cfg.digest(), "config": json.loads(json.dumps(to_dict(cfg), default=str)),
        "code_version": code_version(), "run_name": run_name, "world_size": world,
        "epoch": state.epoch, "global_step": state.global_step, "task": cfg.task,
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        "python": platform.python_version(),
    }


def _scaling(cfg: TrainConfig):
    from ray.train import ScalingConfig

    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if cfg.scaling.use_gpu:
        resources["GPU"] = 1
    return ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
                         resources_per_worker=resources)


def _run_config(cfg: TrainConfig, run_name: str):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    best = cfg.run.keep_best_by
    checkpoints = CheckpointConfig(num_to_keep=cfg.run.num_to_keep,
                                   checkpoint_score_attribute=best or "global_step",
                                   checkpoint_score_order="max")
    return RunConfig(name=run_name, storage_path=_storage(cfg),
                     failure_config=FailureConfig(max_failures=cfg.run.max_failures),
                     checkpoint_config=checkpoints)


def run_training(cfg: TrainConfig, tracking: Tracking | None = None) -> TrainResult:
    """Train ``cfg`` on Ray Train + DeepSpeed and export the model; see the module docstring.

    ``tracking`` is the backend to record the run with (default: the built-in one
    ``cfg.tracking.backend`` names); it must be picklable, rank 0 calls it inside the worker.
    """
    from ray.train import Checkpoint

    tracking = tracking or builtin_tracking(cfg.tracking.backend)
    tracking.check()  # an unreachable tracking server fails here, in seconds, before any data
    data = open_dataset(cfg.data)
    build_model(cfg, data.num_classes)  # a bad model name, option or weights file fails here
    world = max(cfg.scaling.num_workers, 1)
    run_name = cfg.run_name()
    run_dir = Path(_storage(cfg)) / run_name
    found = _check_resume(run_dir, world)
    previous = found[1] if found else None
    if previous is not None and previous.epoch >= cfg.epochs:
        print(f"[train] run {run_name} is complete (epoch {previous.epoch}, step "
              f"{previous.global_step}): exporting its last checkpoint", flush=True)
    elif previous is not None:
        print(f"[train] run {run_name} exists: resuming from step {previous.global_step} "
              f"(epoch {previous.epoch} of {cfg.epochs})", flush=True)
    elif cfg.run.name:
        print(f"[train] starting run {run_name}", flush=True)
    steps = steps_per_epoch(cfg, data.train_videos, world)
    handle = tracking.begin(run_name, to_dict(cfg), str(run_dir))
    print(f"[train] {run_name}: {cfg.model.name} on {data.train_videos} training videos "
          f"({len(data.train_urls)} shards), {steps} steps/epoch x {cfg.epochs} epochs, "
          f"{world} worker(s), ZeRO-{cfg.deepspeed.zero_stage}", flush=True)
    if previous is not None and previous.epoch >= cfg.epochs:
        chosen = Checkpoint.from_directory(str(found[0]))
    else:
        chosen = _fit(cfg, LoopInputs(cfg, data, run_name, str(run_dir), steps, tracking,
                                      handle))
    with chosen.as_directory() as folder:
        state = checkpoint.TrainState.read(folder)
        metrics = checkpoint.read_metrics(folder)
        export_path = run_dir / EXPORT_NAME
        checkpoint.export(folder, export_path, model_name=cfg.model.name,
                          options=builder_options(cfg, data.num_classes),
                          metadata=_export_metadata(cfg, data, run_name, world, state, metrics))
        predictions = Path(folder) / checkpoint.PREDICTIONS_FILE
        if predictions.exists():  # kept beside the export for reports (confusion matrix)
            shutil.copyfile(predictions, run_dir / checkpoint.PREDICTIONS_FILE)
        tolerance = 5e-2 if cfg.scaling.use_gpu else 1e-4  # bf16 engine vs fp32 master weights
        try:
            export_diff = checkpoint.check_export(folder, export_path, tolerance)
        except (RuntimeError, FileNotFoundError) as exc:
            export_path.unlink(missing_ok=True)
            raise TrainingError(str(exc)) from exc
    print(f"[train] exported {export_path} (reproduces the engine within {export_diff:.2g})",
          flush=True)
    summary = {"epochs": state.epoch, "global_step": state.global_step,
               "export_max_abs_diff": export_diff, "run_dir": str(run_dir), **{
        k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
    tracking.end(handle, str(export_path), summary)
    return TrainResult(run_name, str(run_dir), str(export_path), chosen.path, metrics,
                       previous.global_step if previous else None)


def _fit(cfg: TrainConfig, inputs: LoopInputs):
    """``TorchTrainer.fit`` and the checkpoint to export (the last, or the best if asked)."""
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(train_loop, train_loop_config={"inputs": inputs},
                           scaling_config=_scaling(cfg),
                           run_config=_run_config(cfg, inputs.run_name))
    try:
        result = trainer.fit()
    except Exception as exc:  # TrainingFailedError and friends: the checkpoints stay
        raise TrainingError(f"run {inputs.run_name} failed: {exc}; re-run with run.name="
                            f"{inputs.run_name} to resume from its last checkpoint") from exc
    return _chosen_checkpoint(cfg, result)


def _chosen_checkpoint(cfg: TrainConfig, result: Any):
    if cfg.run.export == "best" and cfg.run.keep_best_by:
        ranked = result.best_checkpoints or []
        if ranked:
            return max(ranked, key=lambda pair: pair[1].get(cfg.run.keep_best_by, float("-inf")))[0]
    if result.checkpoint is None:
        raise TrainingError("the run reported no checkpoint")
    return result.checkpoint


__all__ = ["ResumeRefused", "TrainResult", "TrainingError", "code_version", "run_training"]
