"""Run shard tasks on Ray: one task per shard, bounded concurrency, one log line per shard.

Each shard's line carries ``extra={"progress": (done, total, unit)}`` for a caller's progress
display (``pipelines.console``); the line itself reads the same without one.

Tasks are plain :func:`~pipelines.preprocess.worker.write_shard` calls; Ray retries them when a
worker or node is lost (``max_retries``), never for an exception in our code (that would fail
again). A shard that still fails is reported, not fatal: the other shards finish and a re-run
resumes the failed ones.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from pipelines.cluster import ensure_ray
from pipelines.preprocess.config import PreprocessConfig
from pipelines.io import storage_env
from pipelines.preprocess.worker import ShardReport, ShardTask, write_shard

log = logging.getLogger("tsi.preprocess")


def task_options(cfg: PreprocessConfig, remote_io: bool) -> dict[str, Any]:
    """Ray options of a shard task: CPUs, memory, retries, and storage credentials to forward."""
    options: dict[str, Any] = {"num_cpus": cfg.ray.cpus_per_task,
                               "max_retries": cfg.ray.max_retries, "retry_exceptions": False}
    if cfg.ray.memory_per_task_mb:
        options["memory"] = cfg.ray.memory_per_task_mb * 2**20
    env = storage_env()
    if remote_io and env:  # tasks on this cluster may not share the driver's environment
        options["runtime_env"] = {"env_vars": env}
    return options


def concurrency(cfg: PreprocessConfig, ray: Any) -> int:
    """Shard tasks in flight: ``ray.workers``, else all cluster CPUs / ``cpus_per_task``."""
    if cfg.ray.workers:
        return max(1, cfg.ray.workers)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    return max(1, int(cpus // max(cfg.ray.cpus_per_task, 0.01)))


def run_tasks(
    tasks: list[ShardTask], cfg: PreprocessConfig, remote_io: bool, total_videos: int
) -> tuple[dict[str, ShardReport], dict[str, str]]:
    """Run shard tasks, at most ``workers`` at a time; log one line per finished shard."""
    if not tasks:
        return {}, {}
    ray = ensure_ray()
    remote = ray.remote(write_shard).options(**task_options(cfg, remote_io))
    limit = concurrency(cfg, ray)
    queue = list(tasks)
    pending: dict[Any, ShardTask] = {}
    reports: dict[str, ShardReport] = {}
    failures: dict[str, str] = {}
    videos_done = 0
    began = time.perf_counter()
    log.info("running %d shard tasks, %d at a time", len(tasks), limit)
    while queue or pending:
        while queue and len(pending) < limit:
            task = queue.pop(0)
            pending[remote.remote(task)] = task
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            task = pending.pop(ref)
            name = f"{task.split}/{task.spec.name}"
            try:
                report: ShardReport = ray.get(ref)
            except Exception as exc:  # RayTaskError, WorkerCrashedError, ...
                failures[task.spec.name] = f"{type(exc).__name__}: {str(exc)[-300:]}"
                log.error("%s FAILED: %s", name, failures[task.spec.name], extra={
                    "progress": (len(reports) + len(failures), len(tasks), f"{task.split} shards")})
                continue
            reports[task.spec.name] = report
            videos_done += len(task.spec.samples)
            finished = len(reports) + len(failures)
            elapsed = time.perf_counter() - began
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(report.rejected_by_reason.items()))
            log.info(
                "%s done: %d ok, %d rejected%s, %.1f MB in %.1f s (%d/%d shards, %d/%d videos, "
                "%.2f videos/s)", name, report.ok, report.rejected,
                f" ({reasons})" if reasons else "", report.tar_bytes / 1e6, report.seconds,
                finished, len(tasks), videos_done, total_videos, videos_done / max(elapsed, 1e-9),
                extra={"progress": (finished, len(tasks), f"{task.split} shards")},
            )
    return reports, failures
