"""Promote a candidate to champion through the statistical gate, or roll the champion back.

    python -m jobs.promote --task tsi-kinetics400 --data /data/k400-shards [--split val]
        [--candidate models:/tsi-kinetics400-candidates/7] [--new-task] [--allow-rejected]
        [key.sub=value ...]
    python -m jobs.promote --task tsi-kinetics400 --rollback [--reason "why"]

Compares ``{task}-candidates@candidate`` (or ``--candidate``) with ``{task}@champion`` on the
same evaluation split, proven per video to hold none of either model's training or selection
data, after refusing a candidate whose class map or input settings differ from the champion's
(unless ``--new-task``) or whose weights a rollback rejected (unless ``--allow-rejected``,
recorded). The gate (``pipelines.ops.gate``) needs enough finite evidence, then a top-1 and
mean-class gain, no class dropping too far, an exact sign test and a bootstrap bound. On a pass
the promoter builds the served model in ``{task}`` from platform code and the verified weights,
with every file's sha256 in its tags; it gets ``@champion``, the replaced one
``@previous-champion``. Every decision is recorded in the ``{task}-promotion`` experiment and
printed. ``--rollback`` restores ``@previous-champion`` and rejects the rolled-back version.
Details: docs/registry-and-operations.md. Config: ``pipelines.ops.promote.PromoteConfig``.

Exit status: 0 promoted (or rolled back); 1 failed; 2 bad input or an incomparable candidate;
3 not promoted (the gate said no, or another promotion won a race).
"""
from __future__ import annotations

import argparse
import sys

from pipelines import cli
from pipelines.ops import cli as ops_cli

# flag dest -> the config key it sets
FLAGS = {"task": "task", "candidate": "candidate", "new_task": "new_task", "rollback": "rollback",
         "allow_rejected": "allow_rejected", **ops_cli.EVAL_FLAGS, **ops_cli.STORE_FLAGS}


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m jobs.promote", __doc__, configs="jobs/configs/ops/promote_*.yaml")
    ops_cli.add_task_flag(p)
    p.add_argument("--candidate", help="a candidate version URI (default @candidate)")
    p.add_argument("--new-task", action="store_true", help="accept another class map / inputs")
    p.add_argument("--allow-rejected", action="store_true",
                   help="evaluate weights a rollback rejected (recorded with the decision)")
    p.add_argument("--rollback", action="store_true", help="restore @previous-champion")
    p.add_argument("--reason", default="rolled back", help="why (recorded on a rollback)")
    ops_cli.add_shared_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from pipelines.ops.promote import PromoteConfig, promote, rollback

        cfg = cli.resolve_config(PromoteConfig, args, FLAGS)
        if cfg.rollback:
            print(rollback(cfg, args.reason))
            return cli.EXIT_OK
        result = promote(cfg)
        print(result.table())
        return cli.EXIT_OK if result.promoted else cli.EXIT_DECISION

    return cli.run(body, ops_cli.exit_codes(), explain=ops_cli.permission_denied)


if __name__ == "__main__":
    sys.exit(main())
