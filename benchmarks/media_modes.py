"""Benchmark the two stored media modes: JPEG frames (default) against H.264 all-intra (PyAV).

    python -m benchmarks.media_modes [--videos 12] [--seconds 4] [--size 320x240] [--rounds 3]

Generates clips with camera-like grain (``testsrc2`` plus noise, 25 fps), stores each the way
preprocessing does (``pipelines.media.decode.decode``: short side 256, 8 fps) in both modes, and
measures what decides between them: bytes per video, preparation seconds per video, and the
loader's cost of reading one training clip (8 of the stored frames, TSN-sampled, through
``pipelines.loader.decode.read_frames``: msgpack + simplejpeg, or PyAV decoding the mp4 up to
the last wanted frame), rounds interleaved so machine load hits both alike. Results: a table on
stdout and ``benchmarks/results/media_modes.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.loader.decode import read_frames
from pipelines.media.decode import DecodeOptions, decode
from pipelines.media.probe import probe
from pipelines.shards import contract
from pipelines.shards.writer import encode_sample

RESULTS = Path(__file__).resolve().parent / "results" / "media_modes.json"
CLIP_FRAMES = 8


def _make_clip(path: Path, size: str, seconds: float, seed: int) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=s={size}:r=25:d={seconds}", "-vf", f"noise=alls=12:allf=t:all_seed={seed}",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", f"file:{path}"], check=True)


def _store(path: Path, options: DecodeOptions) -> tuple[dict, float, int]:
    """The raw shard sample of ``path`` in ``options.mode``, its prep seconds and bytes."""
    began = time.perf_counter()
    result = decode(str(path), probe(str(path)), options)
    seconds = time.perf_counter() - began
    assert result.ok, (path, result.reason, result.detail)
    meta = {"num_frames": result.num_frames, "fps": result.fps}
    members = encode_sample(path.stem, meta, 0, frames=result.frames if options.mode == "jpeg"
                            else None, video=result.video if options.mode == "h264" else None)
    return members, seconds, result.nbytes


def _clip_indices(count: int, rng: np.random.Generator) -> list[int]:
    """TSN training sampling: one random frame in each of 8 equal segments."""
    edges = np.linspace(0, count, CLIP_FRAMES + 1)
    return [int(min(count - 1, rng.uniform(a, b))) for a, b in zip(edges, edges[1:])]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    modes = {"jpeg": DecodeOptions(mode="jpeg"), "h264": DecodeOptions(mode="h264")}
    stored: dict[str, list[dict]] = {m: [] for m in modes}
    prep: dict[str, list[float]] = {m: [] for m in modes}
    sizes: dict[str, list[int]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.videos):
            clip = Path(tmp) / f"v{i}.mp4"
            _make_clip(clip, args.size, args.seconds, seed=i)
            for mode, options in modes.items():
                sample, seconds, nbytes = _store(clip, options)
                stored[mode].append(sample)
                prep[mode].append(seconds)
                sizes[mode].append(nbytes)
    ms_per_clip: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for mode in modes:
            rng = np.random.default_rng(0)
            began = time.perf_counter()
            for sample in stored[mode]:
                count = int(json.loads(sample[contract.META])["num_frames"])
                read_frames(sample, _clip_indices(count, rng))
            ms_per_clip[mode].append(1000 * (time.perf_counter() - began) / args.videos)
    results = {
        "videos": args.videos, "seconds": args.seconds, "size": args.size, "rounds": args.rounds,
        "stored": "short side 256, 8 fps; jpeg q:v 3, h264 crf 23 all-intra",
        "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()[0],
        **{mode: {"mb_per_video": statistics.mean(sizes[mode]) / 1e6,
                  "prep_s_per_video": statistics.median(prep[mode]),
                  "ms_per_8_frame_clip": min(ms_per_clip[mode]),
                  "clips_per_s_one_core": 1000 / min(ms_per_clip[mode])} for mode in modes},
    }
    results["h264_bytes_vs_jpeg"] = results["h264"]["mb_per_video"] / results["jpeg"]["mb_per_video"]
    results["h264_read_time_vs_jpeg"] = (results["h264"]["ms_per_8_frame_clip"]
                                         / results["jpeg"]["ms_per_8_frame_clip"])
    print(f"{'mode':<6} {'MB/video':>9} {'prep s/video':>13} {'ms/clip':>8} {'clips/s/core':>13}")
    for mode in modes:
        r = results[mode]
        print(f"{mode:<6} {r['mb_per_video']:>9.3f} {r['prep_s_per_video']:>13.3f} "
              f"{r['ms_per_8_frame_clip']:>8.2f} {r['clips_per_s_one_core']:>13.0f}")
    print(f"h264 / jpeg: bytes {results['h264_bytes_vs_jpeg']:.2f}x, "
          f"read time {results['h264_read_time_vs_jpeg']:.2f}x")
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
