"""The paper's ablations on data nobody tuned for: TSN, TSM, TSI and TSI's parts, several seeds.

    python -m benchmarks.ablation [--seeds 0 1 2] [--epochs 10] [--size 96] [--variants ...]

Every variant trains with the platform's own trainer (``run_training``, in-process:
``scaling.num_workers=0``) on the main job's generated dataset with the ``synthetic_demo``
recipe, the same steps, data and seeds, then its export is scored on the eval split:

- ``top1``: over all classes; ``within_pair``: top-1 / pair accuracy (0.5 = blind to order);
- ``reversal``: every eval clip's frames reversed, scored against its twin's label (the twin is
  the exact reversal): a model that uses order moves its prediction to the twin;
  ``reversal_flip``: the reversed clip's prediction is the twin of the forward one
  (``pipelines.evaluation.reversal``).

The input size is chosen so fast alignment really pools keys: res2 is size/4 on a side and
``tsi_r50_fast_align`` pools maps above 400 positions (size 96: res2 24x24 = 576 > 400).
Prints a table (mean ± std over seeds) and writes ``benchmarks/results/ablation.json``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import format_table, machine_state, write_result

VARIANTS = ("tsn_r50", "tsm_r50", "tsi_r50", "r50_tim_sme", "r50_cti", "r50_tim_sme_no_sa",
            "tsi_r50_fast_align")


def score(export: str, shards: str, split: str) -> dict[str, float]:
    """top1, pair accuracy, within_pair, and the reversal probe of the platform's evaluation."""
    from pipelines.data.twins import twins_in
    from pipelines.evaluation import pair_metrics
    from pipelines.evaluation.exported import evaluate_export

    evaluation = evaluate_export(export, shards, split)
    result = pair_metrics(evaluation.predictions, evaluation.classes, twins_in(evaluation.classes))
    result["reversal"] = evaluation.reversal["reversal_to_twin"]
    result["reversal_flip"] = evaluation.reversal["reversal_flip"]
    return result


def _shards(args: argparse.Namespace) -> Path:
    """The main job's shards (made once by ``jobs.demo`` or here, same generator settings)."""
    from pipelines.demo import DemoConfig, preprocess_dataset
    from pipelines.synthetic import write_dataset

    root = Path(args.data).resolve()
    shards = root / "shards"
    if not (shards / "eval" / "manifest.parquet").exists():
        cfg = DemoConfig(output=str(root))
        csv_path = write_dataset(cfg.synthetic, root / "videos", workers=2)
        preprocess_dataset(cfg, csv_path, root / "videos", shards)
    return shards


def _earlier_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Runs of an interrupted earlier invocation with the same recipe (epochs, size, threads)."""
    from benchmarks.common import earlier_runs

    return earlier_runs(args.output, vars(args), ("epochs", "size", "threads"),
                        lambda r: r["variant"] in args.variants and r["seed"] in args.seeds)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default="runs/demo", help="the main job's output folder")
    parser.add_argument("--storage", default="/tmp/tsi-bench-ablation")
    parser.add_argument("--output", default="ablation")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in results/OUTPUT.json made with the same "
                             "epochs, size and threads, and run only the missing ones")
    args = parser.parse_args(argv)
    if args.size // 4 * (args.size // 4) <= 400:
        print(f"note: at size {args.size} res2 has <= 400 positions: fast alignment does not pool")

    import ray

    from pipelines.config import load_config
    from pipelines.train.config import TrainConfig
    from pipelines.train.trainer import run_training

    before = machine_state()
    runs = _earlier_runs(args) if args.resume else []
    done = {(r["variant"], r["seed"]) for r in runs}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    shards = _shards(args)
    for seed in args.seeds:  # seeds outermost: a load change hits every variant alike
        for variant in args.variants:
            if (variant, seed) in done:
                continue
            began = time.perf_counter()
            cfg = load_config(TrainConfig, "jobs/configs/train/synthetic_demo.yaml", [
                f"model.name={variant}", f"seed={seed}", f"epochs={args.epochs}",
                f"data.root={shards}", f"data.clip.size={args.size}",
                f"data.clip.resize={args.size}", f"data.eval_every={args.epochs}",
                "scaling.num_workers=0", f"scaling.torch_threads={args.threads}",
                "data.batch_size=16", "tracking.backend=none", f"run.storage_path={args.storage}",
                f"run.name=ablation-{variant}-s{seed}-{args.size}px-{args.epochs}ep"])
            result = run_training(cfg)
            metrics = score(result.export_path, str(shards), "eval")
            runs.append({"variant": variant, "seed": seed, **metrics,
                         "seconds": time.perf_counter() - began})
            write_result(args.output, {"benchmark": "ablation", "settings": vars(args),
                                       "machine_before": before, "partial": True, "runs": runs})
            print(f"{variant} seed {seed}: top1 {metrics['top1']:.3f} within "
                  f"{metrics['within_pair']:.3f} reversal {metrics['reversal']:.3f}", flush=True)
    ray.shutdown()

    def stat(variant: str, key: str) -> str:
        values = [r[key] for r in runs if r["variant"] == variant]
        if not values:
            return "—"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {spread:.3f}"

    rows = [{"variant": v, "top1": stat(v, "top1"), "within pair": stat(v, "within_pair"),
             "reversal": stat(v, "reversal"), "pair accuracy": stat(v, "pair_accuracy")}
            for v in args.variants]
    print(format_table(rows))
    payload = {"benchmark": "ablation", "settings": vars(args), "machine_before": before,
               "machine_after": machine_state(), "runs": runs, "rows": rows,
               "res2_positions": (args.size // 4) ** 2}
    print(f"wrote {write_result(args.output, payload)}")
    return payload


if __name__ == "__main__":
    main()
