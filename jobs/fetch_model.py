"""Download a production model version, verify every file, and leave it ready to serve.

    python -m jobs.fetch_model --model models:/tsi-kinetics400@champion --dest /srv/model \
        [--tracking-uri URI]
    mlflow models serve -m /srv/model --env-manager local --host 127.0.0.1 --port 5001

``mlflow models serve -m models:/...`` would import whatever code the artifact store holds;
this job first checks the set of files and each file's sha256 against the promoter-written tag
``tsi.served.sha256`` and refuses any difference. Serve only a folder it wrote. Candidates
(``{task}-candidates``) are not served. Details: docs/registry-and-operations.md.

Exit status: 0 fetched and verified; 1 failed; 2 bad input, unknown model, or a file that does
not match what the promoter recorded.
"""
from __future__ import annotations

import argparse
import sys

from pipelines import cli
from pipelines.ops import cli as ops_cli

# flag dest -> the config key it sets
FLAGS = {"model": "model", "dest": "dest", **ops_cli.STORE_FLAGS}


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m jobs.fetch_model", __doc__)
    p.add_argument("--model", required=True, help="models:/NAME@ALIAS or models:/NAME/VERSION")
    p.add_argument("--dest", required=True, help="an empty or missing folder")
    ops_cli.add_shared_flags(p, eval_flags=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from pipelines.ops.fetch import FetchConfig, fetch_served_model

        ref, dest = fetch_served_model(cli.resolve_config(FetchConfig, args, FLAGS))
        print(f"{ref.label}: every file verified; serve with\n  mlflow models serve -m {dest} "
              "--env-manager local")
        return cli.EXIT_OK

    return cli.run(body, ops_cli.exit_codes(), explain=ops_cli.permission_denied)


if __name__ == "__main__":
    sys.exit(main())
