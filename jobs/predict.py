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

import os
import re
import sys


_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")


def _is_override(arg: str) -> bool:
    """``key.sub=value``, unless a file of that name exists (``v=1.mp4`` is a video then)."""
    return bool(_OVERRIDE.match(arg)) and not os.path.lexists(arg)


def main(argv: list[str] | None = None) -> int:
    from pipelines.ops import cli

    p = cli.parser("python -m jobs.predict", __doc__)
    p.add_argument("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a model.pt")
    p.add_argument("--list", help="a CSV of video paths or a folder (Ray Data batch job)")
    p.add_argument("--output", help="parquet folder for --list")
    p.add_argument("--top-k", type=int, help="labels per video (top_k, default 5)")
    p.add_argument("--actors", type=int, help="model actors for --list (actors)")
    cli.add_store_flags(p)
    p.add_argument("inputs", nargs="*", metavar="VIDEO|key.sub=value",
                   help="video files and config overrides; everything after -- is a video")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    args.overrides = [a for a in args.inputs if _is_override(a)]
    args.videos = [a for a in args.inputs if not _is_override(a)] + argv[cut + 1:] or None

    def body() -> int:
        from pipelines.ops.predict import PredictConfig, run_predict
        from pipelines.report import format_table

        cfg = cli.resolve(PredictConfig, args, {
            "model": "model", "list": "list", "output": "output", "top_k": "top_k",
            "actors": "actors", "videos": "videos", **cli.STORE_FLAGS})
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

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
