"""The driver side of a training run: name it, check it, fit it on Ray Train, export the model.

``run_training(cfg)`` is what ``python -m jobs.train`` calls. Order matters for a platform: the
cheap checks (dataset readable, tracking backend reachable, resume compatible) come before any
worker starts; the export comes from the run's own storage after ``fit``, so a model is never
lost once its last checkpoint is written.
"""
from __future__ import annotations

import json
import platform
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.cluster import ensure_ray
from pipelines.config import flatten_keys, to_dict
from pipelines.io import Storage, is_uri, storage_env
from pipelines.train import checkpoint, layout
from pipelines.train.config import TrainConfig
from pipelines.train.data import DatasetView, open_dataset
from pipelines.train.engine import build_model, builder_options
from pipelines.train.layout import RunFolder, resolve_storage
from pipelines.train.loop import LoopInputs, injected_fault, steps_per_epoch, train_loop
from pipelines.train.tracking import Tracking, builtin_tracking
from pipelines.train.weights import (
    SIDECAR, PretrainedWeights, WeightsMismatch, WeightsUnavailable, check_pretrained,
    sha256_file, stage, write_sidecar,
)



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


class ExportCheckFailed(TrainingError):
    """The export does not reproduce the engine: kept for inspection, not published (exit 3)."""


# settings a resume may change: how fast or where it runs and is recorded, not what it trains
RESUME_MAY_CHANGE = ("run.name", "run.max_failures", "run.resume_with_changes", "tracking",
                     "scaling.cpus_per_worker", "scaling.torch_threads", "data.loader_workers", "data.eval_loader_workers",
                     "data.root")


def config_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Settings that differ between a checkpoint's config and this one (``key: (old, new)``)."""
    old = flatten_keys(json.loads(json.dumps(before, default=str)))
    new = flatten_keys(json.loads(json.dumps(after, default=str)))
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and not any(
                k == allowed or k.startswith(allowed + ".") for allowed in RESUME_MAY_CHANGE)}


def _check_resume(run: RunFolder, world: int, cfg: TrainConfig
                  ) -> tuple[str, checkpoint.TrainState] | None:
    """The run's latest checkpoint in its storage (local or object store), if it may resume.

    Checked on the driver before any worker starts: the world size (ZeRO state is per rank) and
    the config that trained it (a resumed run with another recipe is not the run it claims).
    """
    found = run.checkpoints()
    if not found:
        return None
    folder, raw = found[-1]
    state = checkpoint.TrainState(**raw)
    if state.world_size != world:
        raise ResumeRefused(
            f"run {run.name} was trained with {state.world_size} workers; resuming with "
            f"{world} is refused (ZeRO optimiser state is partitioned per rank). Use "
            f"scaling.num_workers={state.world_size} or a new run name")
    config_rel = f"{folder}/{checkpoint.CONFIG_FILE}"
    if run.files.exists(config_rel):
        changes = config_changes(json.loads(run.files.read_bytes(config_rel)), to_dict(cfg))
        if changes and not cfg.run.resume_with_changes:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(changes.items())[:6])
            raise ResumeRefused(f"run {run.name} was trained with another config ({shown}); "
                                "use a new run name, or run.resume_with_changes=true to resume "
                                "with these changes recorded")
        if changes:
            print(f"[train] resuming {run.name} with config changes: {changes}", flush=True)
    return folder, state


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
    storage = Storage.open(resolve_storage(cfg.run.storage_path))
    return RunConfig(name=run_name, storage_path=storage.root,
                     storage_filesystem=None if storage.is_local else storage.fs,
                     failure_config=FailureConfig(max_failures=cfg.run.max_failures),
                     checkpoint_config=checkpoints)


def _stage_on_nodes(weights: PretrainedWeights | None) -> None:
    """One Ray task per alive node stages and checks the weights before the workers start, so a
    wrong hash fails the job here, once (a worker would be retried by ``FailureConfig``)."""
    if weights is None or not is_uri(weights.location):
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray = ensure_ray()  # a `ray job submit` driver is not connected until Ray Train's fit

    task = ray.remote(num_cpus=0, max_retries=0,
                      runtime_env={"env_vars": storage_env()})(stage)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            .remote(weights) for node in nodes]
    try:
        downloads = sum(fetched for _, fetched in ray.get(refs))
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        if isinstance(cause, WeightsMismatch):
            raise WeightsMismatch(str(cause).splitlines()[-1]) from None
        raise
    print(f"[train] pretrained {weights.location} staged on {len(nodes)} node(s) "
          f"({downloads} download(s))", flush=True)


def _registered_weights(cfg: TrainConfig, run: RunFolder, tracking: Tracking) -> str | None:
    """Where ``model.pretrained`` is, with a ``models:/`` source pinned into the run folder.

    The registry is read once, on the driver, through the tracking backend, which verifies the
    version's files (a production version against the promoter's hashes, a candidate against
    its export hash). The verified checkpoint is copied into run storage, which every node
    reads, with its sha256 sidecar, and a resumed run uses that copy: moving ``@champion``
    during a run does not change the weights it started from.
    """
    source = cfg.model.pretrained
    if not source or not source.startswith("models:/"):
        return source
    pinned = run.location(layout.PRETRAINED)
    if run.files.exists(layout.PRETRAINED + SIDECAR):
        origin = json.loads(run.files.read_bytes(layout.PRETRAINED_SOURCE))
        print(f"[train] model.pretrained {source}: the run's pinned copy of {origin['version']} "
              f"({pinned})", flush=True)
        return pinned
    with tempfile.TemporaryDirectory(prefix="tsi-pretrained-") as tmp:
        try:
            path, version = tracking.resolve_weights(source, tmp)
        except LookupError as exc:
            raise WeightsUnavailable(f"model.pretrained {source}: {exc}") from None
        digest = sha256_file(path)
        wanted = cfg.model.pretrained_sha256
        if wanted and digest != wanted.lower():
            raise WeightsMismatch(f"model.pretrained {source} ({version}): sha256 {digest} is "
                                  f"not model.pretrained_sha256 {wanted}")
        run.files.upload(path, layout.PRETRAINED)
    run.files.write_bytes(layout.PRETRAINED_SOURCE, json.dumps(
        {"source": source, "version": version, "sha256": digest}).encode())
    run.files.write_bytes(layout.PRETRAINED + SIDECAR,  # last: it marks the copy complete
                          f"{digest}  {layout.PRETRAINED}\n".encode())
    print(f"[train] model.pretrained {source} is {version}: pinned at {pinned}", flush=True)
    return pinned


def run_training(cfg: TrainConfig, tracking: Tracking | None = None) -> TrainResult:
    """Train ``cfg`` on Ray Train + DeepSpeed and export the model; see the module docstring.

    ``tracking`` is the backend to record the run with (default: the built-in one
    ``cfg.tracking.backend`` names); it must be picklable, rank 0 calls it inside the worker.
    """
    from ray.train import Checkpoint

    tracking = tracking or builtin_tracking(cfg.tracking.backend)
    tracking.check()  # an unreachable tracking server fails here, in seconds, before any data
    data = open_dataset(cfg.data)
    build_model(cfg, data.num_classes)  # a bad model name or option fails here
    world = max(cfg.scaling.num_workers, 1)
    run = RunFolder(cfg.run.storage_path, cfg.run_name())
    if not run.is_local and cfg.scaling.num_workers == 0:
        raise ValueError("run.storage_path on an object store needs Ray Train workers "
                         "(scaling.num_workers >= 1); num_workers=0 keeps checkpoints locally")
    found = _check_resume(run, world, cfg)
    weights = check_pretrained(_registered_weights(cfg, run, tracking),
                               cfg.model.pretrained_sha256)
    previous = found[1] if found else None
    if previous is not None and previous.epoch >= cfg.epochs:
        print(f"[train] run {run.name} is complete (epoch {previous.epoch}, step "
              f"{previous.global_step}): exporting its last checkpoint", flush=True)
    elif previous is not None:
        print(f"[train] run {run.name} exists: resuming from step {previous.global_step} "
              f"(epoch {previous.epoch} of {cfg.epochs})", flush=True)
    elif cfg.run.name:
        print(f"[train] starting run {run.name}", flush=True)
    steps = steps_per_epoch(cfg, data.train_videos, world)
    handle = tracking.begin(run.name, to_dict(cfg), run.uri)
    print(f"[train] {run.name}: {cfg.model.name} on {data.train_videos} training videos "
          f"({len(data.train_urls)} shards), {steps} steps/epoch x {cfg.epochs} epochs, "
          f"{world} worker(s), ZeRO-{cfg.deepspeed.zero_stage}", flush=True)
    if previous is not None and previous.epoch >= cfg.epochs:
        storage = Storage.open(run.location(found[0]))
        chosen = Checkpoint(storage.root, filesystem=storage.fs)
    else:
        _stage_on_nodes(weights)
        chosen = _fit(cfg, LoopInputs(cfg, data, run.name, run.uri, steps, tracking, handle,
                                      weights, storage_env(), injected_fault()))
    with chosen.as_directory() as folder, tempfile.TemporaryDirectory(prefix="tsi-export-") as tmp:
        state = checkpoint.TrainState.read(folder)
        metrics = checkpoint.read_metrics(folder)
        staged = Path(run.uri if run.is_local else tmp)
        staged.mkdir(parents=True, exist_ok=True)
        export_path = staged / layout.EXPORT
        checkpoint.export(folder, export_path, model_name=cfg.model.name,
                          options=builder_options(cfg, data.num_classes),
                          metadata=_export_metadata(cfg, data, run.name, world, state, metrics))
        write_sidecar(export_path)
        predictions = Path(folder) / layout.PREDICTIONS
        if predictions.exists():  # kept beside the export for reports (confusion matrix)
            shutil.copyfile(predictions, staged / layout.PREDICTIONS)
        check = checkpoint.check_export(folder, export_path)
        if not run.is_local:
            for name in (layout.EXPORT, layout.EXPORT + SIDECAR, layout.PREDICTIONS):
                if (staged / name).exists():
                    run.files.upload(str(staged / name), name)
        summary = {"epochs": state.epoch, "global_step": state.global_step,
                   "export": run.export_uri, "export_max_abs_diff": check.max_abs_diff,
                   "export_fp32_max_abs_diff": check.fp32_max_abs_diff,
                   "export_dtype": check.dtype, "run_dir": run.uri, **{
                       k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        if not check.passed:
            run.files.write_bytes(layout.EXPORT_CHECK_FAILED,
                                  json.dumps(asdict(check), indent=2).encode())
            tracking.fail(handle, f"export check failed: {check.describe()}", summary)
            raise ExportCheckFailed(f"run {run.name}: the export does not reproduce the trained "
                                    f"engine ({check.describe()}); kept at {run.export_uri} for "
                                    "inspection, not registered")
        print(f"[train] exported {run.export_uri} ({check.describe()})", flush=True)
        tracking.end(handle, str(export_path), summary)
    return TrainResult(run.name, run.uri, run.export_uri, chosen.path, metrics,
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


__all__ = ["ExportCheckFailed", "ResumeRefused", "TrainResult", "TrainingError", "code_version",
           "config_changes", "run_training"]
