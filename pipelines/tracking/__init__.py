"""MLflow for the platform: the trainer's tracking backend, the packaged model, the registry.

Layer 6 (docs/architecture.md): above ``pipelines.train`` (it implements its tracking protocol
and reads its export format); ``tsi_model`` never imports MLflow. ``train_tracked`` is training
with the backend the config names.
"""
from __future__ import annotations

from collections.abc import Callable

from typing import TYPE_CHECKING

from pipelines.train.config import TrainConfig
from pipelines.train.tracking import Tracking, builtin_tracking

if TYPE_CHECKING:
    from pipelines.train.trainer import TrainResult


def make_tracking(cfg: TrainConfig) -> Tracking:
    """The backend ``cfg.tracking.backend`` names, MLflow included."""
    if cfg.tracking.backend == "mlflow":
        from pipelines.tracking.backend import MlflowTracking

        return MlflowTracking(cfg.tracking, cfg.run.storage_path, cfg.task)
    return builtin_tracking(cfg.tracking.backend)


def train_tracked(cfg: TrainConfig,
                  wrap: Callable[[Tracking], Tracking] | None = None) -> TrainResult:
    """``run_training`` with the tracking backend the config names (what jobs and the demo run);
    ``wrap`` decorates that backend (the main job's progress line listens to its epochs)."""
    from pipelines.train.trainer import run_training

    tracking = make_tracking(cfg)
    return run_training(cfg, tracking=wrap(tracking) if wrap else tracking)
