"""Nightly evaluation of the champion (and the candidate), with a regression alarm.

    python -m jobs.nightly_eval --task tsi-kinetics400 --data /data/k400-shards [--split val]
        [--tolerance 0.02] [--cumulative-tolerance 0.03] [--webhook-url URL]
        [--accept-data-change] [--promote] [key.sub=value ...]
    python -m jobs.nightly_eval --task tsi-kinetics400 --acknowledge RUN_ID --reason "why"

Scores ``{task}@champion`` and, if present, ``{task}-candidates@candidate`` on the configured
shards with the evaluation engine, one run per model in the ``{task}-nightly`` experiment, and
compares the champion with its promotion score on the same data and with the last accepted
night. An alarm stays raised (every later night exits 3) until acknowledged with
``--acknowledge RUN_ID --reason``, which is recorded; alarms are POSTed to ``--webhook-url``.
``--promote`` then sends the candidate through the promotion gate. Details:
docs/registry-and-operations.md. Config: ``pipelines.ops.nightly.NightlyConfig``.

Exit status: 0 no alarm (or the first night); 1 failed; 2 bad input or the store does not
answer; 3 alarm: top-1 fell by more than the tolerance since the last accepted night or by more than
the cumulative tolerance since promotion, the evaluation data changed (dataset hash) without
``--accept-data-change``, the champion cannot be loaded or verified, or an earlier alarm is not
acknowledged.
"""
from __future__ import annotations

import argparse
import sys

from pipelines import cli
from pipelines.ops import cli as ops_cli

# flag dest -> the config key it sets
FLAGS = {"task": "task", "tolerance": "tolerance", "accept_data_change": "accept_data_change",
         "cumulative_tolerance": "cumulative_tolerance", "webhook_url": "webhook_url",
         "acknowledge": "acknowledge", "reason": "reason", "promote": "promote",
         **ops_cli.EVAL_FLAGS, **ops_cli.STORE_FLAGS}


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m jobs.nightly_eval", __doc__,
                   configs="jobs/configs/ops/nightly_*.yaml")
    ops_cli.add_task_flag(p)
    p.add_argument("--tolerance", type=float, help="largest top-1 drop that is not an alarm")
    p.add_argument("--cumulative-tolerance", type=float,
                   help="largest top-1 drop against the promotion score")
    p.add_argument("--webhook-url", help="POST alarms here as JSON")
    p.add_argument("--acknowledge", metavar="RUN_ID", help="acknowledge an alarm (recorded)")
    p.add_argument("--reason", help="why the alarm is acknowledged")
    p.add_argument("--accept-data-change", action="store_true",
                   help="a changed evaluation set becomes the new baseline")
    p.add_argument("--promote", action="store_true", help="gate the candidate afterwards")
    ops_cli.add_shared_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from pipelines.ops.nightly import NightlyConfig, run_nightly
        from pipelines.report import format_table

        report = run_nightly(cli.resolve_config(NightlyConfig, args, FLAGS))
        rows = [{"alias": alias, "model": s.model.label, "top-1": s.metrics.top1,
                 "videos": s.metrics.videos, "MLflow run": s.run_id}
                for alias, s in (("champion", report.champion), ("candidate", report.candidate))
                if s is not None]
        if rows:
            print(format_table(rows))
        print(f"nightly {report.task}: {report.status}: {report.message}")
        if report.notified:
            print(f"alarm notification: {report.notified}")
        if report.promotion is not None:
            print(report.promotion.table())
        if report.alarm:
            print(f"error: nightly alarm for {report.task}: {report.message}", file=sys.stderr)
            return cli.EXIT_DECISION
        return cli.EXIT_OK

    return cli.run(body, ops_cli.exit_codes(), explain=ops_cli.permission_denied)


if __name__ == "__main__":
    sys.exit(main())
