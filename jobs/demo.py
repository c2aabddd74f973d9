"""The main job end to end on embedded defaults: generate, preprocess, train TSI and TSN, compare.

    python -m jobs.demo [--config jobs/configs/demo.yaml] [output=runs/demo] [workers=2] ...

Runs on a local Ray instance unless ``RAY_ADDRESS`` is set. Steps (see ``pipelines/demo.py``):
the synthetic temporal dataset is written as real mp4 files, preprocessed into WebDataset shards
by the Ray job, TSI and then TSN are trained with Ray Train + DeepSpeed on the same data and
steps, and both exports are evaluated on the eval split. Every video there has a twin in another
class that is its exact frame reversal: TSN cannot tell them apart, TSI can.
Config: ``pipelines.demo.DemoConfig``. Exit status: 0 when the run completed; 1 when a step
failed (its message says which); 2 bad configuration (one line).
"""
from __future__ import annotations

import argparse
import sys

from pipelines import cli


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m jobs.demo", __doc__, configs="jobs/configs/demo*.yaml")
    cli.add_overrides(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from pipelines.demo import DemoConfig, run_demo

        report = run_demo(cli.resolve_config(DemoConfig, args, {}))
        print("summary: eval split, 1x1 (top-1 over all classes; pair accuracy: the predicted "
              "class is in the true order-pair; within pair = top-1 / pair accuracy; reversal "
              "flip: with the clip's frames reversed the prediction moves to the twin class, "
              "0 = blind to order):")
        print(report.table())
        print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in report.seconds.items()))
        print(f"shards: {report.shards}")
        if report.champion:
            print(f"champion: {report.champion}; {report.prediction}")
        if report.tracking_uri:
            print(f"MLflow store: {report.tracking_uri}; open the UI with: mlflow ui "
                  f"--backend-store-uri '{report.tracking_uri}' --host 127.0.0.1 --port 5000")
        return cli.EXIT_OK

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
