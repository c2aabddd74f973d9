"""Preprocess a video dataset into WebDataset shards (locally or with ``ray job submit``).

    python -m jobs.preprocess --format kinetics --annotations train.csv --videos s3://bucket/k400 \
        --output s3://bucket/k400-shards --config jobs/configs/preprocess/kinetics400.yaml \
        [--split train] [--workers 64] [--classes classes.txt] [--untrimmed] [media.fps_cap=8]

Connects to ``RAY_ADDRESS`` when set (``ray job submit`` sets it), else to a Ray instance
started on this machine with ``ray start``, else starts a local one. Exit status: 0 when every
shard completed (rejected videos are listed in the manifest, not errors), 1 when some shard
failed (re-run the same command to resume), 2 for a bad configuration or input.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

FORMATS = ("kinetics", "ssv1", "ssv2", "ucf101", "hmdb51", "csv")


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
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(message)s")
    from pipelines.config import ConfigError
    from pipelines.data.annotations import AnnotationError
    from pipelines.data.classes import ClassMapError
    from pipelines.preprocess.config import resolve_config
    from pipelines.preprocess.job import PreprocessError, run_preprocess, summary_dict

    try:
        cfg = resolve_config(args.config, _flags(args), args.overrides)
        if cfg.missing():
            raise ConfigError(f"missing: {', '.join('--' + m for m in cfg.missing())}")
        import ray

        if not ray.is_initialized():  # no runtime_env here: `ray job submit` sets the job's
            ray.init(address=os.environ.get("RAY_ADDRESS") or None)
        summary = run_preprocess(cfg)
    except (ConfigError, AnnotationError, ClassMapError, PreprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.format())
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as fh:
            json.dump(summary_dict(summary), fh, indent=1, ensure_ascii=False)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
