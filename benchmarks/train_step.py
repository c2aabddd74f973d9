"""What Ray Train + DeepSpeed costs per training step, against a plain PyTorch loop.

    python -m benchmarks.train_step [--rounds 3] [--steps 30] [--model tsi_r50] [--width 16]

Same model, batch, data (clips held in memory, so the loader is not measured here: see
``benchmarks.loader``) and thread count on both sides:

- **plain**: one process, ``torch.optim.SGD``, forward/backward/step;
- **ray+deepspeed**: ``TorchTrainer`` with 1 worker running the platform's own engine
  (``pipelines.train.engine.make_engine``: DeepSpeed ZeRO-2 around the same SGD).

Runs are interleaved (plain, ray, plain, ray, ...) so a change of machine load hits both; each
reports the median step time after ``--warmup`` steps, and the fixed start-up cost of the Ray side
(``fit()`` to its first step) is reported separately. The same run measures TSI and TSN
training-step throughput in the plain loop and 1 → 2 worker ZeRO-2 scaling (clips/s over both
workers). Prints a table and writes ``benchmarks/results/train_step.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import format_table, machine_state, write_result


def _batch(args: argparse.Namespace, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    clips = torch.randint(0, 256, (args.batch, args.frames, 3, args.size, args.size),
                          dtype=torch.uint8, generator=g)
    labels = torch.randint(0, args.classes, (args.batch,), generator=g)
    return clips, labels


def _model(args: argparse.Namespace, name: str) -> torch.nn.Module:
    from tsi_model import get_model

    return get_model(name, num_classes=args.classes, num_frames=args.frames, width=args.width,
                     layers=tuple(args.layers), dropout=0.0)


def plain_steps(args: argparse.Namespace, name: str) -> list[float]:
    """Step times of the plain loop (seconds), warm-up included; first ``warmup`` are dropped."""
    from tsi_model import normalize_clip

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = _model(args, name).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    clips, labels = _batch(args)
    times = []
    for _ in range(args.warmup + args.steps):
        began = time.perf_counter()
        loss = F.cross_entropy(model(normalize_clip(clips)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - began)
    return times[args.warmup:]


def _ray_worker(config: dict[str, Any]) -> None:
    """Inside a Ray Train worker: the platform's engine, timed per step."""
    import ray.train

    from pipelines.config import load_config
    from pipelines.train.config import TrainConfig
    from pipelines.train.engine import make_engine, pick_device
    from tsi_model import normalize_clip

    args = argparse.Namespace(**config["args"])
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(TrainConfig, None, [f"data.batch_size={args.batch}", "optim.grad_clip=null",
                                f"deepspeed.zero_stage={args.zero}", "deepspeed.precision=fp32"])
    device = pick_device(cfg)
    engine = make_engine(cfg, _model(args, config["name"]), 0.01, device)
    clips, labels = _batch(args, seed=ray.train.get_context().get_world_rank())
    first = time.time()
    times = []
    for _ in range(args.warmup + args.steps):
        began = time.perf_counter()
        loss = F.cross_entropy(engine(normalize_clip(clips)), labels)
        engine.backward(loss)
        engine.step()
        times.append(time.perf_counter() - began)
    if ray.train.get_context().get_world_rank() == 0:  # Ray keeps no metrics without a checkpoint
        Path(config["out"]).write_text(json.dumps({"times": times[args.warmup:],
                                                   "first_step_at": first}))
    ray.train.report({})


def ray_steps(args: argparse.Namespace, name: str, workers: int) -> tuple[list[float], float]:
    """Step times on rank 0 of a ``workers``-worker fit, and the start-up seconds before step 1."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    # imported by name (not this __main__'s copy) so workers import it instead of unpickling it
    from benchmarks.train_step import _ray_worker as worker

    began = time.time()
    out = Path(args.storage) / f"times-{name}-{workers}w-{began:.0f}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        worker, train_loop_config={"args": vars(args), "name": name, "out": str(out)},
        scaling_config=ScalingConfig(num_workers=workers,
                                     resources_per_worker={"CPU": args.threads}),
        run_config=RunConfig(storage_path=args.storage, name=f"bench-{name}-{workers}w-{began:.0f}"))
    trainer.fit()
    measured = json.loads(out.read_text())
    return list(measured["times"]), measured["first_step_at"] - began


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times),
            "spread_s": (max(times) - min(times)) if times else 0.0}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--model", default="tsi_r50")
    parser.add_argument("--baseline", default="tsn_r50")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--layers", type=int, nargs=4, default=[1, 1, 1, 1])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--zero", type=int, default=2)
    parser.add_argument("--storage", default="/tmp/tsi-bench-train-step")
    parser.add_argument("--output", default="train_step")
    args = parser.parse_args(argv)

    import ray

    before = machine_state()
    repo = str(Path(__file__).resolve().parents[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": repo}})
    plain: dict[str, list[float]] = {args.model: [], args.baseline: []}
    ray_one: list[float] = []
    startup: list[float] = []
    for round_ in range(args.rounds):  # interleaved: plain, ray, plain baseline
        plain[args.model] += plain_steps(args, args.model)
        times, start = ray_steps(args, args.model, 1)
        ray_one += times
        startup.append(start)
        plain[args.baseline] += plain_steps(args, args.baseline)
        print(f"round {round_ + 1}/{args.rounds}: plain {statistics.median(plain[args.model]):.3f} s,"
              f" ray+deepspeed {statistics.median(ray_one):.3f} s per step", flush=True)
    two, _ = ray_steps(args, args.model, 2)
    ray.shutdown()

    p, r = _summary(plain[args.model]), _summary(ray_one)
    base = _summary(plain[args.baseline])
    two_s = _summary(two)
    rows = [
        {"measure": f"plain loop, {args.model}", "median s/step": p["median_s"],
         "spread s": p["spread_s"], "clips/s": args.batch / p["median_s"], "ratio": 1.0},
        {"measure": f"ray+deepspeed ZeRO-{args.zero}, 1 worker", "median s/step": r["median_s"],
         "spread s": r["spread_s"], "clips/s": args.batch / r["median_s"],
         "ratio": r["median_s"] / p["median_s"]},
        {"measure": f"plain loop, {args.baseline}", "median s/step": base["median_s"],
         "spread s": base["spread_s"], "clips/s": args.batch / base["median_s"],
         "ratio": base["median_s"] / p["median_s"]},
        {"measure": f"ray+deepspeed ZeRO-{args.zero}, 2 workers (both)",
         "median s/step": two_s["median_s"], "spread s": two_s["spread_s"],
         "clips/s": 2 * args.batch / two_s["median_s"],
         "ratio": (2 * args.batch / two_s["median_s"]) / (args.batch / r["median_s"])},
    ]
    print(format_table(rows))
    overhead = r["median_s"] / p["median_s"] - 1
    print(f"overhead of Ray Train + DeepSpeed per step: {overhead:+.1%} (target <= 10%); "
          f"start-up before the first step: median {statistics.median(startup):.1f} s; "
          f"{args.model}/{args.baseline} training throughput {base['median_s'] / p['median_s']:.3f}; "
          f"1 -> 2 workers: {rows[3]['ratio']:.2f}x")
    payload = {"benchmark": "train_step", "settings": vars(args), "machine_before": before,
               "machine_after": machine_state(), "rows": rows, "overhead": overhead,
               "startup_s": startup, "plain_times": plain, "ray_times": ray_one,
               "two_worker_times": two}
    print(f"wrote {write_result(args.output, payload)}")
    return payload


if __name__ == "__main__":
    main()
