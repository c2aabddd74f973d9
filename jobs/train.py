"""Train a model on preprocessed shards with Ray Train + DeepSpeed (locally or `ray job submit`).

    python -m jobs.train --config jobs/configs/train/kinetics400_tsi_8f.yaml \
        --data /data/k400-shards [--name RUN] [--workers 8] [--gpu] [key.sub=value ...]

Connects to ``RAY_ADDRESS`` when set, else starts a local Ray instance. Each run gets a unique
name (task + UTC time) unless ``--name`` is given; an existing name resumes that run from its
last checkpoint (the job says so and from which step). ``{ray_job}`` in the name stands for the
KubeRay RayJob (or the ``ray job submit`` submission id) that runs it, so a retried RayJob
resumes and a new one starts afresh (``infra/k8s/rayjob-train-*.yaml``). The exported model is
written to ``{run.storage_path}/{name}/model.pt``.

Exit status: 0 trained, exported (and registered, with MLflow tracking); 1 training or the final
registration failed (re-run with the printed name to resume, or register the export with
``python -m jobs.register``); 2 bad configuration or data, missing or wrong pretrained weights,
a refused resume, or the tracking store does not answer (one line on stderr, in seconds, before
any worker starts); 3 the export does not reproduce the trained engine (``model.pt`` is kept
beside ``export_check_failed.json`` for inspection, the run is tagged and not registered).
"""
from __future__ import annotations

import argparse
import sys

from pipelines import cli

# flag dest -> the config key it sets
FLAGS = {"data": "data.root", "name": "run.name", "storage": "run.storage_path",
         "workers": "scaling.num_workers", "gpu": "scaling.use_gpu"}


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m jobs.train", __doc__, configs="jobs/configs/train/*.yaml")
    p.add_argument("--data", help="dataset root written by jobs.preprocess (data.root)")
    p.add_argument("--name", help="run name; an existing one resumes (run.name)")
    p.add_argument("--workers", type=int, help="Ray Train workers (scaling.num_workers)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, bf16 (scaling.use_gpu)")
    p.add_argument("--storage", help="where runs and checkpoints live (run.storage_path)")
    cli.add_overrides(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from pipelines.tracking import train_tracked
    from pipelines.tracking.connection import TrackingUnavailable
    from pipelines.train.config import TrainConfig
    from pipelines.train.trainer import ExportCheckFailed, TrainingError

    def body() -> int:
        result = train_tracked(cli.resolve_config(TrainConfig, args, FLAGS))
        print(f"[train] {result.run_name}: exported {result.export_path}")
        return cli.EXIT_OK

    return cli.run(body, {(FileNotFoundError, ValueError, TrackingUnavailable): cli.EXIT_BAD_INPUT,
                          ExportCheckFailed: cli.EXIT_DECISION, TrainingError: cli.EXIT_FAILED})


if __name__ == "__main__":
    sys.exit(main())
