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
Exit status: 0 when the run completed; 1 when a step failed (its message says which).
"""
from __future__ import annotations

import sys

from pipelines.config import ConfigError, parse_job_config
from pipelines.console import Console, say
from pipelines.demo import DemoConfig, log_folder, run_demo
from pipelines.report import start_job_logging


def main(argv: list[str] | None = None) -> int:
    start_job_logging()
    try:
        config = parse_job_config(DemoConfig, __doc__, argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console = Console(log_folder(config), name="demo")
    print(f"full logs (Ray driver and workers, libraries): {console.log_path}", flush=True)
    try:
        with console:
            report = run_demo(config)
            for line in report.summary(console.log_path):
                say(line)
    except Exception as exc:  # one line for the user; the traceback is in the log
        print(f"error: {type(exc).__name__}: {exc} (details: {console.log_path})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
