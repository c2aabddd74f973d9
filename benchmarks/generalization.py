"""Does the main job's recipe generalise? The same recipe on the train family and on held-out ones.

    python -m benchmarks.generalization [--families train heldout_a heldout_b heldout_c]
        [--seeds 0 1 2 3 4] [--train-per-class 64] [--eval-per-class 125] [--epochs N]

For every family (``pipelines/synthetic/families.py``: ``train`` is the one a recipe may be chosen
on, ``heldout_*`` have disjoint settings, some drawn by independent code) the main job's steps run
with its library functions and its recipe unchanged (``jobs/configs/train/synthetic_demo.yaml``,
2 Ray Train workers): generate the family's dataset (``pipelines.synthetic.write_dataset``, fixed
data seed), preprocess it (``pipelines.demo.preprocess_dataset``), then for every seed train TSI
and TSN and score each export on the eval split (``pipelines.demo.train_and_evaluate``): top-1,
pair accuracy, within-pair (top-1 / pair accuracy; 0.5 = blind to order), the reversal probe
(``reversal_flip``: the reversed clip's prediction is the twin of the forward one), training
seconds and the number of eval videos. The eval split should hold >= 1,000 videos for a study
(``--eval-per-class 125`` with 4 pairs): 192 videos alone give a top-1 sampling σ of ~0.03.

Prints a table (mean ± std over seeds per family and model) and writes
``benchmarks/results/{--output}.json`` with every run, the 1-minute load average at each run's
start and the machine's state before and after. Datasets are kept under ``--data`` and reused
by a later invocation with the same sizes. ``--resume`` keeps the runs already in the JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import earlier_runs, format_table, machine_state, write_result

MODELS = ("tsi_r50", "tsn_r50")
KEYS = ("top1", "within_pair", "pair_accuracy", "reversal_flip", "reversal_to_twin")


def _family_config(args: argparse.Namespace, family: str, seed: int):
    """The main job's config for one family and training seed, tracking off."""
    from pipelines.demo import DemoConfig

    base = DemoConfig()
    synthetic = dataclasses.replace(base.synthetic, family=family, seed=args.data_seed,
                                    num_pairs=args.pairs,
                                    videos_per_class=(args.train_per_class, args.eval_per_class))
    overrides = ["tracking.backend=none", f"seed={seed}"]
    if args.epochs:  # a smaller run than the recipe's (smoke runs only): say so in the JSON
        overrides += [f"epochs={args.epochs}", f"data.eval_every={args.epochs}",
                      f"run.checkpoint_every={args.epochs}"]
    return DemoConfig(output=str(Path(args.data) / family), synthetic=synthetic,
                      train_overrides=tuple(overrides), workers=args.workers)


def _shards(cfg) -> Path:
    """The family's shards: generated and preprocessed once per data settings."""
    from pipelines.demo import preprocess_dataset
    from pipelines.synthetic import write_dataset

    root = Path(cfg.output).resolve()
    shards = root / "shards"
    stamp = root / "settings.json"
    wanted = json.dumps(dataclasses.asdict(cfg.synthetic), sort_keys=True)
    if (shards / cfg.eval_split / "manifest.parquet").exists() and stamp.exists() \
            and stamp.read_text() == wanted:
        return shards
    if root.exists():
        shutil.rmtree(root)
    csv_path = write_dataset(cfg.synthetic, root / "videos", workers=cfg.workers)
    preprocess_dataset(cfg, csv_path, root / "videos", shards)
    stamp.write_text(wanted)
    return shards


def _earlier_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Runs of an interrupted earlier study with the same data sizes and epochs."""
    return earlier_runs(args.output, vars(args),
                        ("train_per_class", "eval_per_class", "epochs", "pairs", "data_seed"),
                        lambda r: r["family"] in args.families and r["seed"] in args.seeds
                        and r["model"] in args.models)


def summarise(runs: list[dict[str, Any]], families: list[str], models: list[str]
              ) -> list[dict[str, str]]:
    """One row per family and model: mean ± std over seeds of every figure."""
    def stat(values: list[float]) -> str:
        if not values:
            return "—"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {spread:.3f}"

    rows = []
    for family in families:
        for model in models:
            chosen = [r for r in runs if r["family"] == family and r["model"] == model]
            row = {"family": family, "model": model, "seeds": str(len(chosen))}
            row |= {key: stat([r[key] for r in chosen]) for key in KEYS}
            row["train s"] = stat([r["train_seconds"] for r in chosen])
            row["eval videos"] = ",".join(sorted({str(r["eval_videos"]) for r in chosen}))
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from pipelines.synthetic.families import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=sorted(FAMILIES), choices=sorted(FAMILIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--train-per-class", type=int, default=64)
    parser.add_argument("--eval-per-class", type=int, default=125)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=0, help="0: the recipe's own")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", default="/tmp/tsi-bench-generalization")
    parser.add_argument("--output", default="generalization")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    import ray

    from pipelines.demo import train_and_evaluate

    before = machine_state()
    runs = _earlier_runs(args) if args.resume else []
    done = {(r["family"], r["seed"], r["model"]) for r in runs}
    ray_temp = tempfile.mkdtemp(prefix="ray-generalization-")  # its own: others' Ray untouched
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
             configure_logging=False, _temp_dir=ray_temp)
    try:
        for family in args.families:
            shards = _shards(_family_config(args, family, args.seeds[0]))
            for seed in args.seeds:
                cfg = _family_config(args, family, seed)
                for model in args.models:
                    if (family, seed, model) in done:
                        continue
                    load = os.getloadavg()[0]
                    outcome = train_and_evaluate(cfg, model, shards,
                                                 Path(cfg.output).resolve() / "train")
                    m = outcome.metrics
                    runs.append({"family": family, "seed": seed, "model": model,
                                 **{key: m[key] for key in KEYS},
                                 "train_seconds": outcome.train_seconds,
                                 "eval_videos": m["videos"], "load_1min_at_start": load})
                    write_result(args.output, {"benchmark": "generalization",
                                               "settings": vars(args), "partial": True,
                                               "machine_before": before, "runs": runs})
                    print(f"{family} seed {seed} {model}: top1 {m['top1']:.3f} within "
                          f"{m['within_pair']:.3f} reversal flip {m['reversal_flip']:.3f} "
                          f"({outcome.train_seconds:.0f} s, load {load:.1f})", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_temp, ignore_errors=True)
    rows = summarise(runs, args.families, args.models)
    print(format_table(rows))
    payload = {"benchmark": "generalization", "settings": vars(args),
               "recipe": "jobs/configs/train/synthetic_demo.yaml", "machine_before": before,
               "machine_after": machine_state(), "runs": runs, "rows": rows}
    print(f"wrote {write_result(args.output, payload)}")
    return payload


if __name__ == "__main__":
    main()
