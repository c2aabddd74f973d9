"""Accuracy of faithful vs fast saliency alignment (and TSN as the frame-order-blind floor).

    python -m benchmarks.alignment_accuracy [--steps 150] [--seeds 0 1] [--size 96]

Trains small-width networks from scratch on the synthetic temporal dataset (classes that differ
only in the direction of motion, each video's twin being its exact frame reversal, so TSN is at
chance within a pair) with a plain PyTorch loop, and reports validation accuracy per seed. The
fast option may become the default only if its accuracy matches the faithful one within the
seed-to-seed spread measured here.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import format_table, machine_state, write_result
from pipelines.loader.sampling import segment_indices
from pipelines.synthetic import SyntheticConfig, class_names, make_arrays
from tsi_model import get_model, normalize_clip

VARIANTS = ("tsn_r50", "tsi_r50", "tsi_r50_fast_align")


def sample_frames(videos: np.ndarray, frames: int, rng: random.Random | None) -> np.ndarray:
    """The loader's TSN sampler applied to each video: a random frame per segment (train, ``rng``)
    or the segment centres (eval)."""
    total = videos.shape[1]
    return np.stack([video[segment_indices(total, frames, rng=rng)[0]] for video in videos])


def to_clip(videos: np.ndarray) -> torch.Tensor:
    """(N, T, H, W, 3) uint8 -> normalised (N, T, 3, H, W) float."""
    return normalize_clip(torch.from_numpy(np.ascontiguousarray(videos)).permute(0, 1, 4, 2, 3))


def train_and_evaluate(
    name: str, seed: int, data: dict[str, tuple[np.ndarray, np.ndarray]], args: argparse.Namespace, classes: int
) -> dict[str, Any]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    frame_rng = random.Random(seed)
    model = get_model(name, num_classes=classes, num_frames=args.frames, width=args.width, dropout=0.0)
    optimiser = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=args.steps)
    train_x, train_y = data["train"]
    start = time.perf_counter()
    model.train()
    for _ in range(args.steps):
        pick = rng.choice(len(train_y), size=args.batch, replace=False)
        clip = to_clip(sample_frames(train_x[pick], args.frames, frame_rng))
        loss = torch.nn.functional.cross_entropy(model(clip), torch.from_numpy(train_y[pick]))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    train_s = time.perf_counter() - start
    model.eval()
    val_x, val_y = data["val"]
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(val_y), 16):
            logits = model(to_clip(sample_frames(val_x[i : i + 16], args.frames, None)))
            correct += int((logits.argmax(1).numpy() == val_y[i : i + 16]).sum())
    return {"model": name, "seed": seed, "val_acc": correct / len(val_y), "final_loss": float(loss.detach()), "train_s": train_s}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=96, help="frame size; res2 must exceed 400 positions to pool")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--train-per-class", type=int, default=48)
    parser.add_argument("--val-per-class", type=int, default=16)
    parser.add_argument("--distractors", type=int, default=3, help="SyntheticConfig.max_distractors")
    parser.add_argument("--pan", type=float, default=1.5, help="SyntheticConfig.max_pan (camera pan, px/frame)")
    parser.add_argument("--output", default="alignment_accuracy")
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = SyntheticConfig(
        num_pairs=args.pairs,
        videos_per_class=(args.train_per_class, args.val_per_class),
        num_frames=16,
        height=args.size,
        width=args.size,
        max_distractors=args.distractors,
        max_pan=args.pan,
    )
    data = {split: make_arrays(config, split) for split in config.splits}
    classes = len(class_names(config))
    state_before = machine_state()
    rows = [train_and_evaluate(n, s, data, args, classes) for s in args.seeds for n in args.models]
    print(format_table(rows))
    summary = []
    for name in args.models:
        accs = [r["val_acc"] for r in rows if r["model"] == name]
        summary.append(
            {
                "model": name,
                "mean_val_acc": statistics.mean(accs),
                "stdev": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "seeds": len(accs),
                "chance": 1 / classes,
            }
        )
    print()
    print(format_table(summary))
    payload = {
        "benchmark": "alignment_accuracy",
        "settings": vars(args),
        "dataset": {"classes": classes, "train": int(len(data["train"][1])), "val": int(len(data["val"][1]))},
        "machine_before": state_before,
        "machine_after": machine_state(),
        "rows": rows,
        "summary": summary,
    }
    print(f"wrote {write_result(args.output, payload)}")
    return payload


if __name__ == "__main__":
    main()
