"""The preprocessing job's config: frozen dataclasses, resolved like every job config.

One YAML per dataset (``jobs/configs/preprocess/*.yaml``) sets what differs between datasets
(frame-rate cap, short side, output mode, shard size); the CLI fills in the inputs and outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipelines.media.decode import DecodeOptions
from pipelines.preprocess.plan import (
    TARGET_SHARD_BYTES, default_videos_per_shard, videos_per_shard_for,
)


@dataclass(frozen=True)
class ShardingConfig:
    """Shard plan: ``videos_per_shard`` or, when null, ~``target_shard_bytes`` per shard.

    ``bytes_per_video`` overrides the measured estimate used for that default.
    """

    videos_per_shard: int | None = None
    target_shard_bytes: int = TARGET_SHARD_BYTES
    bytes_per_video: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.videos_per_shard is not None and self.videos_per_shard < 1:
            raise ValueError(f"sharding.videos_per_shard must be >= 1, got {self.videos_per_shard}")
        if self.target_shard_bytes < 1:
            raise ValueError("sharding.target_shard_bytes must be >= 1")
        if self.bytes_per_video is not None and self.bytes_per_video <= 0:
            raise ValueError("sharding.bytes_per_video must be positive")


@dataclass(frozen=True)
class RayConfig:
    """Task layout: one task per shard, ``workers`` of them at a time (null: as many as CPUs allow).

    ``cpus_per_task`` reserves Ray CPUs per task; keep it equal to ``media.threads``.
    ``max_retries`` covers lost workers/nodes; ``staging_dir`` is where remote outputs are
    assembled and remote videos downloaded (node-local disk; null: the system temp dir).
    """

    workers: int | None = None
    cpus_per_task: float = 1.0
    memory_per_task_mb: int | None = None
    max_retries: int = 3
    staging_dir: str | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"ray.workers (--workers) must be >= 1, got {self.workers}")
        if self.cpus_per_task <= 0:
            raise ValueError(f"ray.cpus_per_task must be positive, got {self.cpus_per_task}")
        if self.memory_per_task_mb is not None and self.memory_per_task_mb < 1:
            raise ValueError("ray.memory_per_task_mb must be >= 1")
        if self.max_retries < 0:
            raise ValueError("ray.max_retries must be >= 0")


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything one run needs. Inputs/outputs may come from YAML or the CLI flags."""

    dataset: str = "dataset"
    format: Literal["kinetics", "ssv1", "ssv2", "ucf101", "hmdb51", "csv"] | None = None
    annotations: tuple[str, ...] = ()
    videos: str | None = None
    output: str | None = None
    split: str | None = None
    classes: str | None = None
    untrimmed: bool = False
    overwrite: bool = False
    media: DecodeOptions = field(default_factory=DecodeOptions)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def videos_per_shard(self, videos: int = 0) -> int:
        """The configured shard size, else the byte target's, capped so ``videos`` videos make
        at least ``MIN_SHARDS`` shards when there are enough of them (``plan.py``)."""
        if self.sharding.videos_per_shard is not None:
            return self.sharding.videos_per_shard
        return videos_per_shard_for(videos, default_videos_per_shard(
            self.media.mode, self.media.fps_cap, self.sharding.target_shard_bytes,
            self.sharding.bytes_per_video,
        ))

    def missing(self) -> list[str]:
        """Required settings still unset (format, annotations, videos, output)."""
        need = {"format": self.format, "annotations": self.annotations, "videos": self.videos,
                "output": self.output}
        return [name for name, value in need.items() if not value]

