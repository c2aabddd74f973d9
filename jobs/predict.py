"""Top-k labels for raw videos from a registered model or an export.

    python -m jobs.predict --model models:/tsi-kinetics400@champion a.mp4 b.mkv [-- v=1.mp4]
    python -m jobs.predict --model models:/tsi-kinetics400@champion \
        --list s3://bucket/videos.csv --output s3://bucket/predictions/ [--actors 4]

Videos are decoded with the media settings the model's training shards were made with and
sampled as evaluation samples them (``1x1``), so a prediction matches the evaluation of the
video's shard, the packaged pyfunc, and ``mlflow models serve``. Named videos are predicted in
this process; ``--list`` (a CSV with a ``path`` column, paths relative to the CSV, or a folder;
local or ``s3://``) runs a streaming Ray Data job (decode on CPU tasks, the model in an actor
pool, GPUs when present) that writes parquet (path, labels, probabilities, error). Config:
``pipelines.ops.predict.PredictConfig``.

Exit status: 0 every video predicted; 1 failed; 2 bad input (model, flags, store); 3 some
videos could not be read (each has its error; the others are predicted).
"""
from __future__ import annotations

import argparse
import sys

from pipelines import cli
from pipelines.ops import cli as ops_cli

# flag dest -> the config key it sets (``videos``: the inputs that are not overrides)
FLAGS = {"model": "model", "list": "list", "output": "output", "top_k": "top_k",
         "actors": "actors", "videos": "videos", **ops_cli.STORE_FLAGS}


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m jobs.predict", __doc__)
    p.add_argument("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a model.pt")
    p.add_argument("--list", help="a CSV of video paths or a folder (Ray Data batch job)")
    p.add_argument("--output", help="parquet folder for --list")
    p.add_argument("--top-k", type=int, help="labels per video (top_k, default 5)")
    p.add_argument("--actors", type=int, help="model actors for --list (actors)")
    ops_cli.add_videos(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = ops_cli.parse_videos(parser(), argv)

    def body() -> int:
        from pipelines.ops.predict import PredictConfig, run_predict
        from pipelines.report import format_table

        cfg = cli.resolve_config(PredictConfig, args, FLAGS)
        result = run_predict(cfg)
        if isinstance(result, dict):
            print(f"predicted {result['videos'] - result['failed']} of {result['videos']} videos "
                  f"into {cfg.output}")
            return cli.EXIT_DECISION if result["failed"] else cli.EXIT_OK
        print(format_table([{"video": r.path, "top-1": r.labels[0] if r.labels else "",
                             "p": r.probabilities[0] if r.probabilities else None,
                             f"top-{cfg.top_k}": ", ".join(
                                 f"{label} {p:.3f}" for label, p in zip(r.labels, r.probabilities)),
                             "error": r.error or ""} for r in result]))
        return cli.EXIT_DECISION if any(r.error for r in result) else cli.EXIT_OK

    return cli.run(body, ops_cli.exit_codes(), explain=ops_cli.permission_denied)


if __name__ == "__main__":
    sys.exit(main())
