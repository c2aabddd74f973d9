"""Benchmark the training data loader against its decode floor and against ffmpeg on mp4.

    python -m benchmarks.loader [--videos 64] [--frames 32] [--size 340x256] [--rounds 3]

Builds JPEG shards (q90, the shard contract's default mode) of generated 256-short-side clips
with camera-like grain, and the same clips as H.264 mp4 (the "decode the original video"
baseline). Then measures in one run, interleaved round by round so machine load hits all alike:

- floor: ``webdataset`` read + TSN sampling + JPEG decode of the 8 sampled frames, no
  augmentation, in this process (one core);
- train: ``train_batches`` (8 x 224², multi-scale crop, corner offsets, flip, uint8
  ``(N, T, 3, H, W)``) in this process (``num_workers=0``) and with 1 and 2 DataLoader workers:
  clips/s over the whole epoch (the first batch's wait, the shuffle-buffer fill, is also
  reported apart), per worker, per CPU second of the processes doing the work, and both as a
  ratio to the floor of the same round (the CPU ratio is the one load on a shared machine
  disturbs least). Whole epochs, because an epoch is a fixed set of videos: timing from the
  first batch would leave out the clips decoded into the shuffle buffer before it;
- ffmpeg: the 8 sampled frames of each mp4 with one ``select`` filter command per clip;
- augment: the crop+resize step alone, torch uint8 antialiased bilinear (what the loader uses)
  against ``PIL.Image.resize(BILINEAR, box=...)``, on the same boxes, and their largest pixel
  difference; and one pass of ``eval_batches`` with the 1x1 and 10x3 protocols.

Targets: >= 0.85 of the floor per CPU second (the acceptance figure); >= 100 clips per CPU
second (for information: on busy shared cores it moves with the load). Results: a
table on stdout and ``benchmarks/results/loader.json`` with the load average before and after.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import resource  # children's CPU time (ffmpeg)
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import simplejpeg
import torch
from PIL import Image

from benchmarks.common import format_table, machine_state, write_result
from pipelines.loader.augment import crop_resize, train_crop_box
from pipelines.loader.clips import ClipSettings
from pipelines.loader.decode import decode_picked, pick_frames, read_frames, stored_frame_count
from pipelines.loader.sampling import segment_indices
from pipelines.loader.streams import eval_batches, train_batches
from pipelines.shards import contract
from pipelines.shards.reader import open_shards
from pipelines.shards.writer import ShardWriter, encode_sample
from pipelines.synthetic import SyntheticConfig, iter_samples


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build_dataset(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """JPEG shards of ``args.videos`` clips, and the first ``args.mp4`` of them as mp4 files."""
    width, height = args.width, args.height
    config = SyntheticConfig(num_pairs=4, splits=("train",), num_frames=args.frames,
                             videos_per_class=(math.ceil(args.videos / 8),), height=height,
                             width=width)
    grain = np.random.default_rng(0)
    urls, mp4s, jpeg_bytes, writer = [], [], 0, None
    for k, sample in enumerate(iter_samples(config, "train")):
        if k == args.videos:
            break
        noise = grain.normal(0.0, args.grain, sample.frames.shape)
        frames = np.clip(sample.frames + noise, 0, 255).astype(np.uint8)
        jpegs = [simplejpeg.encode_jpeg(f, quality=90) for f in frames]
        jpeg_bytes += sum(map(len, jpegs))
        if k % args.per_shard == 0:
            if writer:
                writer.commit()
            urls.append(str(folder / contract.shard_name(len(urls))))
            writer = ShardWriter(urls[-1])
        writer.write(encode_sample(f"clip{k:04d}", {"num_frames": len(jpegs)}, k % 8,
                                   frames=jpegs))
        if k < args.mp4:
            mp4s.append(folder / f"clip{k:04d}.mp4")
            subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                            "-r", "25", "-i", "pipe:0", "-c:v", "libx264", "-preset", "veryfast",
                            "-crf", "23", "-pix_fmt", "yuv420p", str(mp4s[-1])],
                           input=frames.tobytes(), check=True)
    writer.commit()
    return {"urls": urls, "mp4s": mp4s, "jpeg_kb_per_frame": jpeg_bytes / 1e3 / (
        args.videos * args.frames), "mp4_mb_per_video": sum(p.stat().st_size for p in mp4s)
        / 1e6 / max(1, len(mp4s)), "shards": len(urls)}


def decode_floor(urls: list[str], clip: ClipSettings, clips: int, seed: int) -> dict[str, float]:
    """Read + sample + decode, nothing else, until ``clips`` clips (cycling the shards): the
    loader's own cut and decode (``pick_frames``, ``decode_picked``), so it gains what they gain."""
    rng, done = random.Random(seed), 0

    def sampler(count: int) -> list[int]:
        return segment_indices(count, clip.frames, rng=rng)[0]

    cpu, began = time.process_time(), time.perf_counter()
    while done < clips:
        for sample in open_shards(urls):
            decode_picked(pick_frames(sample, sampler))
            done += 1
            if done == clips:
                break
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"clips_per_s": done / wall, "clips_per_cpu_s": done / cpu}


def _workers_cpu() -> float:
    """CPU seconds used so far by this process's live children (the DataLoader workers)."""
    total = 0.0
    for child in psutil.Process().children():
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def train_loader(urls: list[str], clip: ClipSettings, workers: int, batches: int, batch: int,
                 epoch: int, shuffle_buffer: int) -> dict[str, float]:
    """One epoch of ``train_batches`` on one rank (``batches`` batches), measured whole.

    CPU time is that of the processes doing the work: this process with ``workers=0``, else
    the workers (sampled at the last batch, while they still run; from their start, so their
    start-up counts too). The wait for the first batch (the shuffle-buffer fill) is reported
    apart as ``first_batch_s``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a DataLoader worker runs with (matters for workers=0)
    began, cpu0 = time.perf_counter(), time.process_time()
    stream = train_batches(urls, clip, batch_size=batch, batches=batches, rank=0, world_size=1,
                           seed=0, epoch=epoch, num_workers=workers,
                           shuffle_buffer=shuffle_buffer)
    count, first, end, cpu = 0, 0.0, 0.0, 0.0
    try:
        for clips, _labels, _keys in stream:
            assert clips.dtype == torch.uint8 and clips.is_contiguous()
            assert clips.shape[1:] == (clip.frames, 3, clip.size, clip.size)
            count += 1
            if count == 1:
                first = time.perf_counter()
            if count == batches:  # sampled while the workers still run
                end = time.perf_counter()
                cpu = _workers_cpu() if workers else time.process_time() - cpu0
    finally:
        torch.set_num_threads(threads)
    assert count == batches
    del stream
    gc.collect()  # workers are joined here, not during the next measurement
    clips_done = batches * batch
    return {"clips_per_s": clips_done / (end - began),
            "clips_per_s_per_worker": clips_done / (end - began) / max(1, workers),
            "clips_per_cpu_s": clips_done / cpu, "first_batch_s": first - began}


def ffmpeg_select(paths: list[Path], clip: ClipSettings, frames: int, width: int, height: int,
                  seed: int) -> dict[str, float]:
    """8 TSN-sampled frames of each mp4 with one ffmpeg ``select`` command per clip."""
    rng = random.Random(seed)
    cpu, began = _children_cpu(), time.perf_counter()
    for path in paths:
        index = segment_indices(frames, clip.frames, rng=rng)[0]
        expr = "+".join(f"eq(n\\,{i})" for i in sorted(set(index)))
        out = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                              "-i", str(path), "-vf", f"select={expr}", "-vsync", "0",
                              "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                             capture_output=True, check=True).stdout
        decoded = np.frombuffer(out, np.uint8).reshape(-1, height, width, 3)
        assert len(decoded) == len(set(index)), (len(decoded), index)
    wall, cpu = time.perf_counter() - began, _children_cpu() - cpu
    return {"clips_per_s": len(paths) / wall, "clips_per_cpu_s": len(paths) / cpu}


def _pil_crop_resize(frames: np.ndarray, box: tuple[int, int, int, int], size: int,
                     *, use_box: bool = True) -> np.ndarray:
    """PIL's one-pass ``resize(box=...)`` (or, ``use_box=False``, resize of the cropped pixels)."""
    left, top, right, bottom = box
    if use_box:
        images = [Image.fromarray(f).resize((size, size), Image.BILINEAR, box=box)
                  for f in frames]
    else:
        images = [Image.fromarray(np.ascontiguousarray(f[top:bottom, left:right])).resize(
            (size, size), Image.BILINEAR) for f in frames]
    return np.ascontiguousarray(np.stack([np.asarray(i) for i in images]).transpose(0, 3, 1, 2))


def augment_compare(urls: list[str], clip: ClipSettings, clips: int) -> dict[str, float]:
    """ms per 8-frame clip of the crop+resize step: torch (used) vs PIL, same boxes."""
    sample = next(iter(open_shards(urls)))
    frames = read_frames(sample, segment_indices(stored_frame_count(sample), clip.frames)[0])
    rng = random.Random(0)
    boxes = [train_crop_box(frames.shape[2], frames.shape[1], clip, rng) for _ in range(clips)]
    torch.set_num_threads(1)  # as in a DataLoader worker
    result: dict[str, float] = {}
    for name, fn in (("torch", lambda b: crop_resize(frames, b, clip.size)),
                     ("pil", lambda b: _pil_crop_resize(frames, b, clip.size))):
        began = time.perf_counter()
        for box in boxes:
            fn(box)
        result[f"{name}_ms_per_clip"] = (time.perf_counter() - began) / clips * 1e3
    for key, use_box in (("max_diff_vs_pil_box", True), ("max_diff_vs_pil_cropped", False)):
        result[key] = max(int(np.abs(crop_resize(frames, b, clip.size).astype(int)
                                     - _pil_crop_resize(frames, b, clip.size, use_box=use_box)
                                     ).max()) for b in boxes[:20])
    return result


def eval_pass(urls: list[str], clip: ClipSettings, protocol: str, workers: int) -> dict[str, float]:
    began, videos = time.perf_counter(), 0
    for batch in eval_batches(urls, clip, protocol=protocol, batch_size=4, rank=0, world_size=1,
                              num_workers=workers):
        videos += len(batch.keys)
    return {"videos_per_s": videos / (time.perf_counter() - began), "videos": videos}


def markdown_table(payload: dict[str, Any]) -> str:
    """The result's rows as the Markdown table ``docs/benchmarks.md`` shows, with the load."""
    from benchmarks.render_docs import loader_table

    return loader_table(payload)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--frames", type=int, default=32, help="stored frames per video")
    parser.add_argument("--size", default="340x256", help="stored WIDTHxHEIGHT (short side 256)")
    parser.add_argument("--grain", type=float, default=4.0, help="noise sigma (camera grain)")
    parser.add_argument("--per-shard", type=int, default=8)
    parser.add_argument("--mp4", type=int, default=8, help="clips also written as mp4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--floor-clips", type=int, default=192)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--shuffle-buffer", type=int, default=256)
    parser.add_argument("--output", default="loader")
    parser.add_argument("--markdown", metavar="RESULT_JSON",
                        help="print a result file's table as Markdown (for docs/benchmarks.md) "
                             "and exit; runs nothing")
    args = parser.parse_args(argv)
    if args.markdown:
        payload = json.loads(Path(args.markdown).read_text())
        print(markdown_table(payload))
        return payload
    args.width, args.height = (int(v) for v in args.size.split("x"))
    clip = ClipSettings()  # the paper's: 8 x 224², resize 256, multi-scale corner crops, flip

    state_before = machine_state()
    with tempfile.TemporaryDirectory(prefix="loader-bench-") as tmp:
        began = time.perf_counter()
        data = build_dataset(Path(tmp), args)
        build_s = time.perf_counter() - began
        urls = data["urls"]
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            row: dict[str, Any] = {"round": r, "load_1min": os.getloadavg()[0]}
            row["floor"] = decode_floor(urls, clip, args.floor_clips, seed=r)
            for workers in (0, 1, 2):
                row[f"train_{workers}w"] = train_loader(urls, clip, workers, args.batches,
                                                        args.batch, r, args.shuffle_buffer)
            row["ffmpeg"] = ffmpeg_select(data["mp4s"], clip, args.frames, args.width,
                                          args.height, seed=r)
            rounds.append(row)
            print(f"round {r}: floor {row['floor']['clips_per_s']:.0f}, in-process "
                  f"{row['train_0w']['clips_per_s']:.0f}, 1 worker "
                  f"{row['train_1w']['clips_per_s']:.0f}, 2 workers "
                  f"{row['train_2w']['clips_per_s']:.0f}, ffmpeg "
                  f"{row['ffmpeg']['clips_per_s']:.1f} clips/s (load {row['load_1min']:.2f})",
                  flush=True)
        augment = augment_compare(urls, clip, 40)
        evals = {p: eval_pass(urls, clip, p, 1) for p in ("1x1", "10x3")}

    def med(path: str, key: str) -> float:
        return statistics.median(r[path][key] for r in rounds)

    floor = med("floor", "clips_per_s")
    rows = [{"measurement": "floor: wds read + decode 8 JPEGs (this process)",
             "clips/s": floor, "clips/s/core": floor,
             "clips/cpu-s": med("floor", "clips_per_cpu_s"), "vs floor (wall)": 1.0,
             "vs floor (cpu)": 1.0, "first batch s": None}]
    for workers in (0, 1, 2):
        key = f"train_{workers}w"
        name = (f"train_batches, {workers} worker{'s' * (workers > 1)}" if workers
                else "train_batches, num_workers=0 (in process)")
        rows.append({
            "measurement": name, "clips/s": med(key, "clips_per_s"),
            "clips/s/core": med(key, "clips_per_s_per_worker"),
            "clips/cpu-s": med(key, "clips_per_cpu_s"),
            "vs floor (wall)": statistics.median(
                r[key]["clips_per_s_per_worker"] / r["floor"]["clips_per_s"] for r in rounds),
            "vs floor (cpu)": statistics.median(
                r[key]["clips_per_cpu_s"] / r["floor"]["clips_per_cpu_s"] for r in rounds),
            "first batch s": med(key, "first_batch_s")})
    ff = med("ffmpeg", "clips_per_s")
    rows.append({"measurement": "mp4 + ffmpeg select (1 process per clip)", "clips/s": ff,
                 "clips/s/core": ff, "clips/cpu-s": med("ffmpeg", "clips_per_cpu_s"),
                 "vs floor (wall)": ff / floor,
                 "vs floor (cpu)": med("ffmpeg", "clips_per_cpu_s") / med("floor",
                                                                           "clips_per_cpu_s"),
                 "first batch s": None})
    print()
    print(format_table(rows, list(rows[0].keys())))
    print(f"\ncrop+resize per 8-frame clip: torch {augment['torch_ms_per_clip']:.2f} ms, PIL "
          f"{augment['pil_ms_per_clip']:.2f} ms; largest pixel difference "
          f"{augment['max_diff_vs_pil_cropped']} vs PIL on the cropped pixels, "
          f"{augment['max_diff_vs_pil_box']} vs PIL box= (its filter reads outside the box)")
    print(f"eval_batches, 1 worker: 1x1 {evals['1x1']['videos_per_s']:.1f} videos/s, 10x3 "
          f"{evals['10x3']['videos_per_s']:.1f} videos/s")
    payload = {
        "benchmark": "loader",
        "settings": {k: v for k, v in vars(args).items() if k != "markdown"},
        "clip": clip.to_dict(),
        "dataset": {k: v for k, v in data.items() if k not in ("urls", "mp4s")}
        | {"videos": args.videos, "build_s": build_s},
        "targets": {"ratio_to_floor_cpu": 0.85, "clips_per_cpu_s": 100},
        "machine_before": state_before,
        "machine_after": machine_state(),
        "rows": rows,
        "augment": augment,
        "eval": evals,
        "rounds": rounds,
    }
    print(f"wrote {write_result(args.output, payload)}")
    return payload


if __name__ == "__main__":
    main()
