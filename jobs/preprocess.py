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

FORMATS = ("kinetics", "ssv1", "ssv2", "ucf101", "hmdb51", "csv")
EXIT_OK, EXIT_SHARD_FAILED, EXIT_BAD_INPUT, EXIT_NOTHING_STORED, EXIT_LOCKED = 0, 1, 2, 3, 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jobs.preprocess", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--config", help="YAML config (jobs/configs/preprocess/*.yaml)")
    p.add_argument("--summary-json", help="also write the job summary to this local file")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    return p.parse_args(argv)


def _flags(args: argparse.Namespace) -> dict:
    flags: dict = {}
    for name in ("format", "videos", "output", "split", "classes", "dataset"):
        if getattr(args, name) is not None:
            flags[name] = getattr(args, name)
    if args.annotations:
        flags["annotations"] = list(args.annotations)
    if args.untrimmed:
        flags["untrimmed"] = True
    if args.overwrite:
        flags["overwrite"] = True
    if args.workers is not None:
        flags["ray"] = {"workers": args.workers}
    return flags


def main(argv: list[str] | None = None) -> int:
    from pipelines.report import start_job_logging

    args = parse_args(argv)
    start_job_logging()
    from pipelines.config import ConfigError
    from pipelines.data.annotations import AnnotationError
    from pipelines.data.classes import ClassMapError
    from pipelines.preprocess.config import resolve_config
    from pipelines.preprocess.job import OutputLocked, PreprocessError, run_preprocess, summary_dict

    try:
        summary = run_preprocess(resolve_config(args.config, _flags(args), args.overrides))
    except OutputLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (ConfigError, AnnotationError, ClassMapError, PreprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(summary.format())
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as fh:
            json.dump(summary_dict(summary), fh, indent=1, ensure_ascii=False)
    if not summary.ok:
        return EXIT_SHARD_FAILED
    if summary.stored == 0:
        print("error: nothing was stored: every input row was rejected (reasons above and in the "
              "manifest); check --videos and --annotations", file=sys.stderr)
        return EXIT_NOTHING_STORED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
