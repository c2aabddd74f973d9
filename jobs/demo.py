"""The main job end to end on embedded defaults: generate -> preprocess on Ray -> read shards -> model.

    python -m jobs.demo [--config jobs/configs/demo.yaml] [output=runs/demo] [workers=2] ...

1. writes the synthetic temporal dataset (real mp4 files + a Kinetics-format CSV);
2. runs the Ray preprocessing job on it (local Ray unless ``RAY_ADDRESS`` is set), which writes
   WebDataset shards, manifest.parquet, stats.json and classes.json;
3. streams the shards back with ``webdataset``, samples TSN segments into a uint8 batch and runs
   the model on it through the one normalisation function;
4. prints the params/GMACs table of TSN/TSM/TSI at the paper's 8x224x224.
Re-running resumes: complete shards are skipped.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.config import parse_job_config
from pipelines.synthetic import SyntheticConfig


@dataclass(frozen=True)
class DemoConfig:
    output: str = "runs/demo"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    preprocess_config: str = "jobs/configs/preprocess/synthetic.yaml"
    workers: int = 2
    model: str = "tsi_r50"
    model_width: int = 16
    clip_frames: int = 8


def segment_centres(total: int, segments: int) -> list[int]:
    """Centre frame of each of ``segments`` equal segments (TSN's evaluation sampling)."""
    return [min(total - 1, int((2 * i + 1) * total / (2 * segments))) for i in range(segments)]


def main(argv: list[str] | None = None) -> int:
    config = parse_job_config(DemoConfig, __doc__, argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    root = Path(config.output).resolve()
    videos, shards = root / "videos", root / "shards"

    from pipelines.synthetic import write_dataset

    start = time.perf_counter()
    csv_path = write_dataset(config.synthetic, videos, workers=config.workers)
    print(f"[1/4] synthetic dataset: {csv_path} ({time.perf_counter() - start:.1f} s)", flush=True)

    from pipelines.preprocess.config import resolve_config
    from pipelines.preprocess.job import run_preprocess

    flags = {"format": "kinetics", "annotations": [str(csv_path)], "videos": str(videos),
             "output": str(shards), "ray": {"workers": config.workers}}
    summary = run_preprocess(resolve_config(config.preprocess_config, flags))
    print(summary.format(), flush=True)
    if not summary.ok or summary.stored == 0:
        print("preprocessing did not complete; re-run to resume", file=sys.stderr)
        return 1
    print(f"[2/4] shards under {shards}", flush=True)

    import numpy as np
    import torch

    from pipelines.data.classes import ClassMap
    from pipelines.shards import contract
    from pipelines.shards.reader import decode_frames, frame_count, list_shards, open_shards, sample_label, sample_meta
    from tsi_model import get_model, normalize_clip

    classes = ClassMap.load(shards / "classes.json")
    urls = list_shards(str(shards), "val")
    clips, labels, names = [], [], []
    for sample in open_shards(urls):
        blob = sample[contract.FRAMES]
        frames = decode_frames(blob, segment_centres(frame_count(blob), config.clip_frames))
        clips.append(frames)
        labels.append(sample_label(sample))
        names.append(sample_meta(sample)["label_name"])
    batch = torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3)  # uint8 (N, T, 3, H, W)
    print(
        f"[3/4] read {len(labels)} val clips from {len(urls)} shards with webdataset; "
        f"batch {tuple(batch.shape)} {batch.dtype}; {len(classes)} classes",
        flush=True,
    )
    model = get_model(config.model, num_classes=len(classes), num_frames=config.clip_frames, width=config.model_width)
    model.eval()
    with torch.inference_mode():
        logits = model(normalize_clip(batch[:8]))
    print(f"      {config.model} (width {config.model_width}, untrained) logits {tuple(logits.shape)} on the first 8 clips")

    from pipelines.report import format_table
    from tsi_model.flops import complexity_report

    print("[4/4] model cost at the paper's input (8 frames x 224x224, 400 classes):", flush=True)
    rows = complexity_report(("tsn_r50", "tsm_r50", "tsi_r50", "tsi_r50_fast_align"),
                             frames=8, size=224, num_classes=400, width=64)
    print(format_table(rows, list(rows[0].keys())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
