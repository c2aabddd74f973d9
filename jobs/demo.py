"""The main job end to end on embedded defaults: generate, preprocess, train TSI and TSN, compare.

    python -m jobs.demo [--config jobs/configs/demo.yaml] [output=runs/demo] [workers=2] ...

Runs on a local Ray instance unless ``RAY_ADDRESS`` is set. Steps (see ``pipelines/demo.py``):
the synthetic temporal dataset is written as real mp4 files, preprocessed into WebDataset shards
by the Ray job, TSI and then TSN are trained with Ray Train + DeepSpeed on the same data and
steps, and both exports are evaluated on the eval split. Every video there has a twin in another
class that is its exact frame reversal: TSN cannot tell them apart, TSI can.
Exit status: 0 when the run completed; 1 when a step failed (its message says which).
"""
from __future__ import annotations

import sys

from pipelines.config import ConfigError, parse_job_config
from pipelines.demo import DemoConfig, run_demo
from pipelines.report import start_job_logging


def main(argv: list[str] | None = None) -> int:
    start_job_logging()
    try:
        config = parse_job_config(DemoConfig, __doc__, argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = run_demo(config)
    except Exception as exc:  # one line for the user; the traceback is in the log above
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("summary: eval split, 1x1 (top-1 over all classes; pair accuracy: the predicted class "
          "is in the true order-pair; within pair = top-1 / pair accuracy; reversal flip: with "
          "the clip's frames reversed the prediction moves to the twin class, 0 = blind to "
          "order):")
    print(report.table())
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in report.seconds.items()))
    print(f"shards: {report.shards}")
    if report.champion:
        print(f"champion: {report.champion}; {report.prediction}")
    if report.tracking_uri:
        print(f"MLflow store: {report.tracking_uri}; open the UI with: mlflow ui "
              f"--backend-store-uri '{report.tracking_uri}' --host 127.0.0.1 --port 5000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
