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

import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from pipelines.ops import cli

    p = cli.parser("python -m jobs.fetch_model", __doc__)
    p.add_argument("--model", required=True, help="models:/NAME@ALIAS or models:/NAME/VERSION")
    p.add_argument("--dest", required=True, help="an empty or missing folder")
    args = cli.parse(p, argv, eval_flags=False)

    def body() -> int:
        from pipelines.tracking.models import resolve_model
        from pipelines.ops.store import StoreSettings, open_store

        dest = Path(args.dest)
        if dest.exists() and any(dest.iterdir()):
            raise ValueError(f"{dest} is not empty")
        store, client = open_store(StoreSettings(tracking_uri=args.tracking_uri,
                                                 storage=args.storage or "runs/train"))
        ref = resolve_model(args.model, client, store.uri)
        if ref.served_dir is None:
            raise ValueError(f"{args.model}: only production versions built by promotion are "
                             "served")
        shutil.copytree(ref.served_dir, dest, dirs_exist_ok=True)
        print(f"{ref.label}: every file verified; serve with\n  mlflow models serve -m {dest} "
              "--env-manager local")
        return cli.EXIT_OK

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
