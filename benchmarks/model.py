"""Model cost: parameters, GMACs, inference throughput and training-step memory of TSN/TSM/TSI.

    python -m benchmarks.model [--frames 8 16] [--batch 8] [--size 224] [--repeats 3]
                               [--latency-repeats 7]

Throughput (batches of ``--batch`` clips) and single-video latency (batch 1, what a prediction
service sees) are measured interleaved (one forward of each model in turn, repeated, best kept)
so the shared machine's noise hits every model alike; the figures that matter are ratios to TSN
from the same run (for latency, TSN's latency over the model's: a speed ratio like throughput's),
with the 1-minute load average recorded beside each. Peak memory of one training step (forward +
backward, batch of 2 clips) is measured in a fresh subprocess per model as the rise of the
process's peak RSS over its RSS before the step.
On a CUDA machine the same run adds bf16 autocast throughput and uses CUDA peak memory.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import torch

from benchmarks.common import format_table, machine_state, write_result
from tsi_model import get_model
from tsi_model.flops import complexity_report

MODELS = ("tsn_r50", "tsm_r50", "tsi_r50", "tsi_r50_fast_align")
BASELINE = "tsn_r50"


def _build(names: tuple[str, ...], frames: int, device: str) -> dict[str, torch.nn.Module]:
    return {n: get_model(n, num_classes=400, num_frames=frames).eval().to(device) for n in names}


def best_seconds(
    models: dict[str, torch.nn.Module], clip: torch.Tensor, repeats: int, device: str, dtype: torch.dtype
) -> dict[str, float]:
    """Seconds per forward of ``clip`` per model: best of ``repeats`` interleaved runs after a warm-up each."""
    autocast = torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32)
    best = {n: float("inf") for n in models}
    with torch.inference_mode(), autocast:
        for model in models.values():
            model(clip)
        for _ in range(repeats):
            for name, model in models.items():
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                model(clip)
                if device == "cuda":
                    torch.cuda.synchronize()
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def throughput(
    models: dict[str, torch.nn.Module], frames: int, size: int, batch: int, repeats: int, device: str, dtype: torch.dtype
) -> dict[str, float]:
    """Videos/s per model on batches of ``batch`` clips."""
    clip = torch.randn(batch, frames, 3, size, size, device=device)
    return {n: batch / t for n, t in best_seconds(models, clip, repeats, device, dtype).items()}


def latency(
    models: dict[str, torch.nn.Module], frames: int, size: int, repeats: int, device: str
) -> tuple[dict[str, float], float]:
    """Single-video (batch 1) fp32 prediction latency in ms per model, and the 1-min load average then."""
    clip = torch.randn(1, frames, 3, size, size, device=device)
    seconds = best_seconds(models, clip, repeats, device, torch.float32)
    return {n: 1000 * t for n, t in seconds.items()}, os.getloadavg()[0]


class _RssSampler(threading.Thread):
    """Samples this process's RSS every 2 ms: the peak of one step, unaffected by earlier peaks."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.002):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, self._process.memory_info().rss)


def training_step_peak_mb(name: str, frames: int, size: int, batch: int, device: str) -> dict[str, float]:
    """One forward+backward: peak memory above what was held before it, and bytes saved for backward.

    The saved-tensor figure (unique storages kept for backward) is deterministic; the peak is what
    the allocator really held (CUDA peak allocation, or sampled RSS on CPU).
    """
    model = get_model(name, num_classes=400, num_frames=frames).to(device).train()
    clip = torch.randn(batch, frames, 3, size, size, device=device)
    target = torch.randint(0, 400, (batch,), device=device)
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        sampler = _RssSampler()
        before = sampler.peak
        sampler.start()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(model(clip), target)
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = sampler.stop()
    return {"peak_mb": (peak - before) / 2**20, "saved_mb": sum(saved.values()) / 2**20}


def _memory_in_subprocess(name: str, frames: int, size: int, batch: int, device: str) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.model", "--_probe-memory", name, str(frames), str(size), str(batch), device]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--frames", nargs="+", type=int, default=[8, 16])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8, help="clips per inference batch")
    parser.add_argument("--train-batch", type=int, default=2, help="clips in the memory-probe training step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-repeats", type=int, default=7, help="interleaved batch-1 runs per model")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--output", default="model", help="results/{output}.json")
    parser.add_argument("--_probe-memory", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._probe_memory:
        name, frames, size, batch, device = args._probe_memory
        print(json.dumps(training_step_peak_mb(name, int(frames), int(size), int(batch), device)))
        return {}

    device = "cuda" if torch.cuda.is_available() else "cpu"
    names = tuple(args.models)
    if BASELINE not in names:
        names = (BASELINE, *names)
    state_before = machine_state()
    rows: list[dict[str, Any]] = []
    for frames in args.frames:
        cost = {
            r["model"]: {k: r[k] for k in ("params_m", "gmacs", "attention_gmacs")}
            for r in complexity_report(names, frames=frames, size=args.size)
        }
        models = _build(names, frames, device)
        fp32 = throughput(models, frames, args.size, args.batch, args.repeats, device, torch.float32)
        bf16 = (
            throughput(models, frames, args.size, args.batch, args.repeats, device, torch.bfloat16)
            if device == "cuda"
            else {}
        )
        latency_ms, latency_load = latency(models, frames, args.size, args.latency_repeats, device)
        del models
        memory = (
            {}
            if args.skip_memory
            else {n: _memory_in_subprocess(n, frames, args.size, args.train_batch, device) for n in names}
        )
        for name in names:
            row = {
                "model": name,
                "frames": frames,
                **cost[name],
                "gmacs_vs_tsn": cost[name]["gmacs"] / cost[BASELINE]["gmacs"],
                "videos_per_s": fp32[name],
                "throughput_vs_tsn": fp32[name] / fp32[BASELINE],
                "bf16_videos_per_s": bf16.get(name),
                "bf16_vs_tsn": bf16[name] / bf16[BASELINE] if bf16 else None,
                "latency_b1_ms": latency_ms[name],
                "latency_speed_vs_tsn": latency_ms[BASELINE] / latency_ms[name],
                "latency_loadavg_1m": latency_load,
                "train_step_peak_mb": memory[name]["peak_mb"] if memory else None,
                "memory_vs_tsn": memory[name]["peak_mb"] / memory[BASELINE]["peak_mb"] if memory else None,
                "saved_for_backward_mb": memory[name]["saved_mb"] if memory else None,
                "saved_vs_tsn": memory[name]["saved_mb"] / memory[BASELINE]["saved_mb"] if memory else None,
            }
            rows.append(row)
        print(format_table([r for r in rows if r["frames"] == frames], list(rows[0].keys())), flush=True)
        print()
    payload = {
        "benchmark": "model",
        "device": device,
        "input": {
            "size": args.size,
            "inference_batch": args.batch,
            "latency_batch": 1,
            "train_batch": args.train_batch,
            "dtype": "fp32",
            "repeats": args.repeats,
            "latency_repeats": args.latency_repeats,
        },
        "machine_before": state_before,
        "machine_after": machine_state(),
        "rows": rows,
    }
    path = write_result(args.output, payload)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
