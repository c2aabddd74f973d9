"""The training job's config: frozen dataclasses, resolved like every job config.

One YAML per recipe (``jobs/configs/train/*.yaml``) says what the paper says (Sec. 4.2); the
same file runs on 2 CPU workers or 64 GPUs because the learning rate is given for a
``reference_batch`` and scaled linearly with the real global batch.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pipelines.cluster import RAY_JOB_PLACEHOLDER, expand_ray_job
from pipelines.config import to_dict
from pipelines.loader.clips import ClipSettings

Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class ModelConfig:
    """Which network: a ``tsi_model.get_model`` name and its builder options.

    ``pretrained`` is a torchvision ResNet-50 state dict or a project export (e.g. a Kinetics
    model for UCF-101 fine-tuning; a head of another size is replaced), by local path or URI
    (``s3://``, ``gs://``, ``file://``; see :mod:`pipelines.train.weights`) or registered
    version (``models:/NAME@ALIAS``, ``models:/NAME/N``: verified by the registry's hashes and
    pinned into the run folder at its first start), checked against ``pretrained_sha256`` when
    each node stages it.
    ``options`` are further builder switches (``temporal_init``, ``fusion``…).
    """

    name: str = "tsi_r50"
    width: int = 64
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    dropout: float = 0.5
    pretrained: str | None = None
    pretrained_sha256: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from tsi_model.models import model_options  # the builder's own signature decides

        unknown = sorted(set(self.options) - model_options(self.name))
        if unknown:
            raise ValueError(f"model.options: unknown option(s) {unknown} for {self.name}; "
                             f"valid: {sorted(model_options(self.name))}")


@dataclass(frozen=True)
class DataConfig:
    """Where the shards are and how clips are cut from them.

    ``root`` is a preprocessing output (``classes.json`` + ``{split}/shard-*.tar``).
    ``selection_fraction`` carves a selection split out of ``train_split`` by key hash: it may
    choose checkpoints; ``eval_split`` never chooses anything and is what reports use.
    ``batch_size`` is clips per worker per step (the paper: 8 at T=8, 4 at T=16).
    """

    root: str | None = None
    train_split: str = "train"
    eval_split: str = "val"
    selection_fraction: float = 0.0
    clip: ClipSettings = field(default_factory=ClipSettings)
    batch_size: int = 8
    eval_batch_size: int = 8
    loader_workers: int = 2
    eval_loader_workers: int = 1  # per rank, for validation and the final protocol
    shuffle_buffer: int = 256
    eval_protocol: str = "1x1"
    eval_every: int = 1  # epochs between evaluations (the last epoch is always evaluated)
    final_protocol: str | None = None  # e.g. "10x3" after the last epoch

    def __post_init__(self) -> None:
        if not 0.0 <= self.selection_fraction < 1.0:
            raise ValueError("data.selection_fraction must be in [0, 1)")
        if self.batch_size < 1 or self.eval_batch_size < 1 or min(self.loader_workers,
                                                                  self.eval_loader_workers) < 0:
            raise ValueError("data.batch_size/eval_batch_size must be >= 1, loader_workers and "
                             "eval_loader_workers >= 0")
        if self.eval_every < 1:
            raise ValueError("data.eval_every must be >= 1")


@dataclass(frozen=True)
class OptimConfig:
    """SGD and its schedule (Sec. 4.2: momentum 0.9, wd 5e-4, lr 0.01 /10 at 30, 40, 45 of 50).

    ``lr`` is the rate for a global batch of ``reference_batch`` clips (the paper's 8 GPUs × 8);
    the trainer uses ``lr * global_batch / reference_batch``. ``head_lr_mult`` multiplies the
    classifier's rate (a new head when fine-tuning). ``warmup_epochs`` ramps linearly from 0;
    ``scaled_warmup_epochs`` ramps only when the global batch is larger than ``reference_batch``
    (the linear scaling rule's warm-up, Goyal et al. 2017: the paper's 8 GPUs run without one, 64
    GPUs at 8x the rate start with it).
    ``decay_norm_and_bias``: weight decay on biases and normalisation weights too (the paper's
    plain SGD decays every parameter); off exempts them.
    ``grad_accum`` micro-batches make one optimiser step; an epoch runs whole steps only.
    """

    lr: float = 0.01
    reference_batch: int = 64
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: Literal["step", "cosine", "constant"] = "step"
    milestones: tuple[float, ...] = (30, 40, 45)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    scaled_warmup_epochs: float = 0.0
    head_lr_mult: float = 1.0
    grad_clip: float | None = 20.0
    grad_accum: int = 1
    decay_norm_and_bias: bool = True

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.reference_batch < 1 or self.grad_accum < 1:
            raise ValueError("optim.lr must be > 0, reference_batch and grad_accum >= 1")


@dataclass(frozen=True)
class ScalingSettings:
    """Ray Train workers. ``num_workers=0`` runs the loop in the driver (unit tests)."""

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    torch_threads: int | None = None  # None: cpus_per_worker on CPU


@dataclass(frozen=True)
class DeepSpeedSettings:
    """ZeRO stage and precision; ``auto`` is bf16 (fp32 master weights) on GPU, fp32 on CPU."""

    zero_stage: Literal[1, 2] = 2
    precision: Precision = "auto"


@dataclass(frozen=True)
class RunSettings:
    """Naming, checkpoints, retries, export.

    ``name``: null gives ``{task}-{model}-{UTC time}``; an explicit name that exists resumes it;
    ``{ray_job}`` in it stands for the RayJob (or Ray job) that runs the training.
    ``keep_best_by``: a metric reported with each checkpoint (e.g. ``selection_top1``) kept
    beside the latest; ``export`` chooses ``last`` (the paper's fixed schedule) or ``best``.
    ``resume_with_changes``: resume a run whose checkpoint was made with another config (the
    differences are printed and recorded); without it such a resume is refused.
    """

    name: str | None = None
    storage_path: str = "runs/train"
    checkpoint_every: int = 1
    num_to_keep: int = 2
    keep_best_by: str | None = None
    export: Literal["last", "best"] = "last"
    max_failures: int = 1
    resume_with_changes: bool = False

    def __post_init__(self) -> None:
        if self.name:  # {ray_job} is expanded (and its result checked) when the run starts
            check_run_name(self.name.replace(RAY_JOB_PLACEHOLDER, "job"), shown=repr(self.name))


@dataclass(frozen=True)
class TrackingSettings:
    """Where the run is recorded (``backend``: none, stdout, jsonl or mlflow).

    MLflow: ``uri`` else ``MLFLOW_TRACKING_URI`` else the embedded default, ``sqlite`` under
    ``{run.storage_path}/mlflow`` with artifacts beside it; ``experiment`` defaults to the task;
    ``register`` puts the export into ``{task}-candidates`` with alias ``candidate``.
    ``probe_timeout_s`` bounds the check before any work; ``retries``/``backoff_s`` the final
    logging and registration (an outage mid-run only delays logging, it never loses the export).
    """

    backend: Literal["none", "stdout", "jsonl", "mlflow"] = "stdout"
    uri: str | None = None
    experiment: str | None = None
    register: bool = True
    probe_timeout_s: float = 10.0
    retries: int = 5
    backoff_s: float = 2.0


_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_run_name(name: str, shown: str | None = None) -> str:
    """``name`` if it is safe as one folder under the storage path and as an MLflow run name."""
    if not _RUN_NAME.fullmatch(name):
        raise ValueError(f"run name {shown or repr(name)}: use 1-128 letters, digits, '.', '_' "
                         "or '-', starting with a letter or digit (it names a folder and a run)")
    return name


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs."""

    task: str = "tsi-synthetic"
    seed: int = 0
    epochs: int = 50
    batches_per_epoch: int | None = None  # None: training videos / global batch
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    deepspeed: DeepSpeedSettings = field(default_factory=DeepSpeedSettings)
    run: RunSettings = field(default_factory=RunSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.batches_per_epoch is not None and self.batches_per_epoch < 1:
            raise ValueError("batches_per_epoch must be >= 1 or null")

    def run_name(self, now: dt.datetime | None = None) -> str:
        """The configured name, else a new unique one: ``{task}-{model}-{YYYYmmdd-HHMMSS-mmm}``
        (the model named, so runs of one task, e.g. the main job's TSI and TSN, read apart).

        ``{ray_job}`` in the name becomes the submitting RayJob's name (``pipelines.cluster``):
        a retried RayJob resumes its run, a new RayJob starts a new one.
        """
        if self.run.name:
            return check_run_name(expand_ray_job(self.run.name))
        stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d-%H%M%S-%f")[:-3]
        return f"{self.task}-{self.model.name}-{stamp}"

    def digest(self) -> str:
        """Config hash recorded in the export (the resolved config, canonical JSON)."""
        text = json.dumps(to_dict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

