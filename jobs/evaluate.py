"""Evaluate a registered model or an export on a split of shards, and record it in MLflow.

    python -m jobs.evaluate --model models:/tsi-kinetics400@champion --data /data/k400-shards \
        [--split val] [--protocol 1x1|10x3] [--parts 4] [--tracking-uri URI] [key.sub=value ...]

``--model`` is ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or an exported ``model.pt``. Its
checkpoint is read with the platform's own code (never code shipped with the model) and scored
by Ray tasks, each video exactly once; a model whose classes differ from the shards'
``classes.json`` is refused. One MLflow run (experiment ``{task}-evaluation``) holds top-1,
top-5, mean class accuracy, the confusion matrix, the per-class table and every video's
prediction (``predictions.parquet``). Config: ``pipelines.ops.evaluate.EvaluateConfig``.

Exit status: 0 evaluated; 1 failed; 2 bad input (config, data, model, store, class map).
"""
from __future__ import annotations

import argparse
import sys

from pipelines import cli
from pipelines.ops import cli as ops_cli

# flag dest -> the config key it sets
FLAGS = {"model": "model", "experiment": "experiment", **ops_cli.EVAL_FLAGS, **ops_cli.STORE_FLAGS}


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m jobs.evaluate", __doc__, configs="jobs/configs/ops/evaluate_*.yaml")
    p.add_argument("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a model.pt")
    p.add_argument("--experiment", help="MLflow experiment (default {task}-evaluation)")
    ops_cli.add_shared_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from pipelines.ops.evaluate import EvaluateConfig, evaluate_model
        from pipelines.report import format_table

        scored = evaluate_model(cli.resolve_config(EvaluateConfig, args, FLAGS))
        m = scored.metrics
        print(format_table([{"model": scored.model.label, "split": scored.split.split,
                             "protocol": scored.protocol, "videos": m.videos, "top-1": m.top1,
                             "top-5": m.top5, "mean class": m.mean_class_accuracy,
                             "MLflow run": scored.run_id}]))
        return cli.EXIT_OK

    return cli.run(body, ops_cli.exit_codes(), explain=ops_cli.permission_denied)


if __name__ == "__main__":
    sys.exit(main())
