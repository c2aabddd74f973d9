"""The main job end to end on embedded defaults: generate, preprocess, train TSI and TSN, compare.

    python -m jobs.demo [--config jobs/configs/demo.yaml] [output=runs/demo] [workers=2] ...

Runs on a local Ray instance unless ``RAY_ADDRESS`` is set. Steps (see ``pipelines/demo.py``):
the synthetic temporal dataset is written as real mp4 files, preprocessed into WebDataset shards
by the Ray job, TSI and then TSN are trained with Ray Train + DeepSpeed on the same data and
steps, and both exports are evaluated on the eval split. Every video there has a twin in another
class that is its exact frame reversal: TSN cannot tell them apart, TSI can.
The console shows one line per stage (a live progress line while one runs, on a terminal) and
ends with the summary table; everything else (Ray driver and worker output, library logs, a
failure's traceback) goes to ``{output}/logs/demo-{UTC time}.log``, named at the start and end.
Config: ``pipelines.demo.DemoConfig``. Exit status: 0 when the run completed; 1 when a step
failed (its message says which, and where the log is); 2 bad configuration (one line).
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
    from pipelines.demo import DemoConfig, MainJobFailed, run_demo_on_console

    args = parser().parse_args(argv)

    def body() -> int:
        run_demo_on_console(cli.resolve_config(DemoConfig, args, {}))
        return cli.EXIT_OK

    return cli.run(body, {MainJobFailed: cli.EXIT_FAILED})


if __name__ == "__main__":
    sys.exit(main())
