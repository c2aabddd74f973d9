"""Preprocess a video dataset into WebDataset shards (locally or with ``ray job submit``).

    python -m jobs.preprocess --format kinetics --annotations train.csv --videos s3://bucket/k400 \
        --output s3://bucket/k400-shards --config jobs/configs/preprocess/kinetics400.yaml \
        [--split train] [--workers 64] [--classes classes.txt] [--untrimmed] [media.fps_cap=8]

Connects to ``RAY_ADDRESS`` when set (``ray job submit`` sets it), else to a Ray instance
started on this machine with ``ray start``, else starts a local one -- only once the settings,
paths and the output's lock have been checked.

Exit status:
  0  every shard completed (rejected videos are manifest rows, not errors)
  1  some shard failed: re-run the same command to resume
  2  bad configuration or input (one line on stderr), found before Ray starts or any file is written
  3  nothing was stored: every input row was rejected (see the manifest; a wrong --videos?)
  4  another run holds the output's lock: wait for it or stop it, then re-run
"""
from __future__ import annotations

import argparse
import json
import sys

from pipelines import cli
from pipelines.cli import EXIT_BAD_INPUT, EXIT_OK

FORMATS = ("kinetics", "ssv1", "ssv2", "ucf101", "hmdb51", "csv")
# this job's own meanings of 1 and 3, and its 4
EXIT_SHARD_FAILED, EXIT_NOTHING_STORED, EXIT_LOCKED = 1, 3, 4
# flag dest -> the config key it sets
FLAGS = {"format": "format", "annotations": "annotations", "videos": "videos",
         "output": "output", "split": "split", "classes": "classes", "dataset": "dataset",
         "untrimmed": "untrimmed", "overwrite": "overwrite", "workers": "ray.workers"}


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m jobs.preprocess", __doc__,
                   configs="jobs/configs/preprocess/*.yaml")
    p.add_argument("--format", choices=FORMATS, help="annotation format")
    p.add_argument("--annotations", nargs="+", metavar="PATH",
                   help="annotation file(s), folder or glob; local or URI")
    p.add_argument("--videos", help="videos root: local folder or s3://, gs:// URI")
    p.add_argument("--output", help="dataset root for shards: local folder or URI")
    p.add_argument("--split", help="only this split (default: every split in the annotations)")
    p.add_argument("--workers", type=int, help="shard tasks running at once (ray.workers)")
    p.add_argument("--classes", help="class list file (default: classes.json in the output, "
                   "else the dataset's own list, else sorted labels)")
    p.add_argument("--untrimmed", action="store_true",
                   help="videos are whole source videos: cut [time_start, time_end] (Kinetics)")
    p.add_argument("--dataset", help="dataset name recorded in every sample")
    p.add_argument("--overwrite", action="store_true",
                   help="delete a split's existing output when its plan differs")
    p.add_argument("--summary-json", help="also write the job summary to this local file")
    cli.add_overrides(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from pipelines.data.annotations import AnnotationError
    from pipelines.data.classes import ClassMapError
    from pipelines.preprocess.config import PreprocessConfig
    from pipelines.preprocess.job import OutputLocked, PreprocessError, run_preprocess, summary_dict

    def body() -> int:
        summary = run_preprocess(cli.resolve_config(PreprocessConfig, args, FLAGS))
        print(summary.format())
        if args.summary_json:
            with open(args.summary_json, "w", encoding="utf-8") as fh:
                json.dump(summary_dict(summary), fh, indent=1, ensure_ascii=False)
        if not summary.ok:
            return EXIT_SHARD_FAILED
        if summary.stored == 0:
            print("error: nothing was stored: every input row was rejected (reasons above and "
                  "in the manifest); check --videos and --annotations", file=sys.stderr)
            return EXIT_NOTHING_STORED
        return EXIT_OK

    return cli.run(body, {OutputLocked: EXIT_LOCKED,
                          (AnnotationError, ClassMapError, PreprocessError): EXIT_BAD_INPUT})


if __name__ == "__main__":
    sys.exit(main())
