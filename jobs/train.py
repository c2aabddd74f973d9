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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jobs.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (jobs/configs/train/*.yaml)")
    p.add_argument("--data", help="dataset root written by jobs.preprocess (data.root)")
    p.add_argument("--name", help="run name; an existing one resumes (run.name)")
    p.add_argument("--workers", type=int, help="Ray Train workers (scaling.num_workers)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, bf16 (scaling.use_gpu)")
    p.add_argument("--storage", help="where runs and checkpoints live (run.storage_path)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    return p.parse_args(argv)


def _flags(args: argparse.Namespace) -> dict:
    flags: dict = {}
    if args.data:
        flags.setdefault("data", {})["root"] = args.data
    if args.name:
        flags.setdefault("run", {})["name"] = args.name
    if args.storage:
        flags.setdefault("run", {})["storage_path"] = args.storage
    if args.workers is not None:
        flags.setdefault("scaling", {})["num_workers"] = args.workers
    if args.gpu:
        flags.setdefault("scaling", {})["use_gpu"] = True
    return flags


def main(argv: list[str] | None = None) -> int:
    from pipelines.report import start_job_logging

    args = parse_args(argv)
    start_job_logging()
    from pipelines.config import ConfigError
    from pipelines.train.config import resolve_config
    from pipelines.tracking import make_tracking
    from pipelines.tracking.connection import TrackingUnavailable
    from pipelines.train.trainer import ExportCheckFailed, TrainingError, run_training

    try:
        cfg = resolve_config(args.config, args.overrides, flags=_flags(args))
        result = run_training(cfg, tracking=make_tracking(cfg))
    except (ConfigError, FileNotFoundError, ValueError, TrackingUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ExportCheckFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"[train] {result.run_name}: exported {result.export_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
