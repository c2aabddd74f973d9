"""Promote a candidate to champion through the statistical gate, or roll the champion back.

    python -m jobs.promote --task tsi-kinetics400 --data /data/k400-shards [--split val]
        [--candidate models:/tsi-kinetics400-candidates/7] [--new-task] [key.sub=value ...]
    python -m jobs.promote --task tsi-kinetics400 --rollback

Compares ``{task}-candidates@candidate`` (or ``--candidate``) with ``{task}@champion`` on the
same evaluation split, which neither model trained or selected on (their dataset-hash tags are
checked), after refusing a candidate whose class map or input settings differ from the
champion's (unless ``--new-task``). The gate: top-1 gain >= ``gate.min_gain`` and the lower
bound of a seeded paired bootstrap over the videos > ``gate.min_lower_bound``; with no champion
yet, top-1 >= ``gate.absolute_floor``. On a pass the version is copied into ``{task}`` with its
lineage tags, gets ``@champion``, and the replaced one ``@previous-champion``. Every decision is
written to the candidate version's tags and printed. ``--rollback`` makes
``@previous-champion`` the champion again. Config: ``pipelines.ops.promote.PromoteConfig``.

Exit status: 0 promoted (or rolled back); 1 failed; 2 bad input or an incomparable candidate;
3 not promoted (the gate said no, or another promotion won a race).
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from pipelines.ops import cli

    p = cli.parser("python -m jobs.promote", __doc__)
    cli.add_task_flag(p)
    p.add_argument("--candidate", help="a candidate version URI (default @candidate)")
    p.add_argument("--new-task", action="store_true", help="accept another class map / inputs")
    p.add_argument("--rollback", action="store_true", help="restore @previous-champion")
    args = cli.parse(p, argv)

    def body() -> int:
        from pipelines.ops.promote import PromoteConfig, promote, rollback
        cfg = cli.resolve(PromoteConfig, args, {
            "task": "task", "candidate": "candidate", "new_task": "new_task",
            "rollback": "rollback", **cli.EVAL_FLAGS, **cli.STORE_FLAGS})
        if cfg.rollback:
            print(rollback(cfg))
            return cli.EXIT_OK
        result = promote(cfg)
        print(result.table())
        return cli.EXIT_OK if result.promoted else cli.EXIT_DECISION

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
