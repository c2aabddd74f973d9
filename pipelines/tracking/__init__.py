"""MLflow for the platform: the trainer's tracking backend, the packaged model, the registry.

Layer 6 (docs/architecture.md): above ``pipelines.train`` (it implements its tracking protocol
and reads its export format); ``tsi_model`` never imports MLflow. ``make_tracking`` is what jobs
hand to ``run_training``.
"""
from __future__ import annotations

from pipelines.train.config import TrainConfig
from pipelines.train.tracking import Tracking, builtin_tracking


def make_tracking(cfg: TrainConfig) -> Tracking:
    """The backend ``cfg.tracking.backend`` names, MLflow included."""
    if cfg.tracking.backend == "mlflow":
        from pipelines.tracking.backend import MlflowTracking

        return MlflowTracking(cfg.tracking, cfg.run.storage_path, cfg.task)
    return builtin_tracking(cfg.tracking.backend)
