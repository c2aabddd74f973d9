"""Benchmark the preprocessing job: Ray overhead over bare ffmpeg, 1->2 worker scaling, memory.

    python benchmarks/preprocess.py [--videos 16] [--size 640x360] [--seconds 10] \
        [--big 3840x2160,7680x4320]

Measures, on generated Kinetics-like clips (default 10 s, 640x360, 30 fps H.264):

- floor: the job's exact ffprobe + ffmpeg argv run one after another in a plain loop (1 core);
- the Ray job (``run_preprocess``) with 1 and with 2 concurrent shard tasks, wall time from the
  call to the written manifest (workers warmed up first, as they are on a long job);
- peak RSS of a Ray worker process and of its ffmpeg child, also on one 4K (or 8K) input;
- bytes/video and prep time for the jpeg and h264 output modes (the default-mode decision);
- the extrapolated Kinetics-400 cost (240k clips) in core-hours and wall time on N nodes.

All ratios come from one run on one machine; machine load (os.getloadavg) is recorded, because a
shared 2-core box makes scaling numbers noisy. Results: a table on stdout and
``benchmarks/results/preprocess.json``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from benchmarks.common import machine_state  # noqa: E402
from pipelines.media._proc import run_tool  # noqa: E402
from pipelines.media.decode import DecodeOptions, build_command  # noqa: E402
from pipelines.media.probe import probe, probe_argv  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from pipelines.preprocess.config import PreprocessConfig  # noqa: E402
from pipelines.preprocess.job import run_preprocess  # noqa: E402

KINETICS_VIDEOS = 240_000
RESULTS = Path(__file__).resolve().parent / "results" / "preprocess.json"


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True)


def make_clip(path: Path, size: str, seconds: float, fps: int, seed: int) -> Path:
    """A noisy test pattern (so bitrate and decode cost resemble camera footage)."""
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={seconds}",
            "-vf", f"noise=alls=10:allf=t+u:all_seed={seed},hue=H=t*{seed % 5 + 1}",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
            str(path))
    return path


def floor_loop(paths: list[Path], options: DecodeOptions) -> dict:
    """Run the job's ffprobe and ffmpeg argv back to back, nothing else, on one core.

    The commands are built before the clock starts (building needs the probe result for the
    frame-rate decision), so the loop times exactly the two processes the job runs per video.
    """
    with tempfile.TemporaryDirectory() as tmp:
        commands = []
        for i, path in enumerate(paths):
            target = "pipe:1" if options.mode == "jpeg" else f"file:{tmp}/{i}.mp4"
            commands.append((probe_argv(str(path)),
                             build_command(str(path), probe(str(path)), options, target),
                             target))
        out_bytes = 0
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        for probe_cmd, decode_cmd, target in commands:
            run_tool(probe_cmd, options.probe_timeout_s)
            run = run_tool(decode_cmd, options.decode_timeout_s)
            assert run.returncode == 0, run.stderr_tail()
            out_bytes += len(run.stdout) if target == "pipe:1" else os.path.getsize(target[5:])
        wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
    return {"videos": len(paths), "wall_s": wall, "s_per_video": wall / len(paths),
            "cpu_s_per_video": cpu_s / len(paths),
            "mb_per_video": out_bytes / len(paths) / 1e6}


def ray_job(csv_path: Path, videos: Path, output: Path, options: DecodeOptions, workers: int,
            per_shard: int) -> dict:
    cfg = load_config(PreprocessConfig, None, flags={
        "dataset": "bench", "format": "csv", "annotations": [str(csv_path)],
        "videos": str(videos), "output": str(output),
        "media": dataclasses.asdict(options),
        "sharding": {"videos_per_shard": per_shard}, "ray": {"workers": workers},
    })
    began = time.perf_counter()
    summary = run_preprocess(cfg)
    wall = time.perf_counter() - began
    split = summary.splits["train"]
    stats = split.stats
    assert not split.failed and stats["rejected"] == 0, stats
    return {"videos": stats["ok"], "workers": workers, "wall_s": wall,
            "videos_per_s": stats["ok"] / wall,
            "task_s_per_video": stats["task_seconds"] / max(stats["ok"], 1),
            "cpu_s_per_video": stats["task_cpu_seconds"] / max(stats["ok"], 1),
            "worker_peak_rss_mb": stats["worker_peak_rss_mb"],
            "ffmpeg_peak_rss_mb": stats["ffmpeg_peak_rss_mb"],
            "mb_per_video": stats["stored_bytes"] / max(stats["ok"], 1) / 1e6}


def write_csv(path: Path, names: list[str]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows((n, f"class{i % 4}") for i, n in enumerate(names))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--size", default="640x360")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--big", default="3840x2160,7680x4320",
                   help="huge inputs (comma-separated sizes) for the memory check")
    p.add_argument("--big-seconds", type=float, default=1.0)
    p.add_argument("--nodes", default="1,8,32", help="node counts for the wall-time estimate")
    p.add_argument("--cores-per-node", type=int, default=32)
    p.add_argument("--output", default=str(RESULTS))
    args = p.parse_args(argv)

    options = DecodeOptions()  # the Kinetics-400 defaults: jpeg, 8 fps, short side 256
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="tsi-bench-"))
    try:
        return _run(args, options, load_before, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, options: DecodeOptions, load_before: tuple, work: Path) -> int:
    import ray

    videos = work / "videos"
    videos.mkdir()
    t0 = time.perf_counter()
    names = [make_clip(videos / f"clip{i:03d}.mp4", args.size, args.seconds, args.fps, i).name
             for i in range(args.videos)]
    bigs = {size: make_clip(videos / f"big-{size}.mp4", size, args.big_seconds, args.fps, 99).name
            for size in args.big.split(",")}
    print(f"generated {args.videos} clips {args.size} {args.seconds:g}s + {args.big} in "
          f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
    clips = [videos / n for n in names]
    csv_path = write_csv(work / "bench.csv", names)
    warm_csv = write_csv(work / "warm.csv", names[:2])

    floor = floor_loop(clips, options)
    floor_h264 = floor_loop(clips, DecodeOptions(mode="h264"))

    workers_cpus = 2  # the 1-vs-2 worker comparison needs two Ray CPUs
    ray.init(num_cpus=workers_cpus, include_dashboard=False, log_to_driver=False)
    try:
        per_shard = max(1, args.videos // 4)  # 4 shards: balanced for 1 and 2 workers
        ray_job(warm_csv, videos, work / "warm", options, 2, 1)  # start worker processes
        one = ray_job(csv_path, videos, work / "out1", options, 1, per_shard)
        two = ray_job(csv_path, videos, work / "out2", options, 2, per_shard)
        huge = {size: ray_job(write_csv(work / f"{size}.csv", [name]), videos,
                              work / f"out-{size}", options, 1, 1)
                for size, name in bigs.items()}
    finally:
        ray.shutdown()
    load_after = os.getloadavg()

    floor_rate = 1.0 / floor["s_per_video"]
    overhead = floor_rate / one["videos_per_s"] - 1.0
    # per-video cost inside the tasks (excludes the driver's fixed planning/manifest time)
    task_overhead = one["task_s_per_video"] / floor["s_per_video"] - 1.0
    scaling = two["videos_per_s"] / one["videos_per_s"]
    s_per_video_core = 1.0 / one["videos_per_s"]
    core_hours = KINETICS_VIDEOS * s_per_video_core / 3600.0
    efficiency = min(1.0, scaling / 2.0)
    nodes = [int(n) for n in args.nodes.split(",")]
    wall_hours = {n: core_hours / (n * args.cores_per_node) for n in nodes}
    wall_hours_measured = {n: h / efficiency for n, h in wall_hours.items()}
    peak_worker = max([one["worker_peak_rss_mb"] or 0, two["worker_peak_rss_mb"] or 0]
                      + [h["worker_peak_rss_mb"] or 0 for h in huge.values()])
    peak_ffmpeg = max(h["ffmpeg_peak_rss_mb"] or 0 for h in huge.values())
    result = {
        "machine": {**machine_state(), "loadavg_before": load_before, "loadavg_after": load_after,
                    "ray": ray.__version__},
        "inputs": {"videos": args.videos, "size": args.size, "seconds": args.seconds,
                   "fps": args.fps, "big": args.big, "big_seconds": args.big_seconds},
        "options": dataclasses.asdict(options),
        "floor_jpeg": floor, "floor_h264": floor_h264,
        "ray_1_worker": one, "ray_2_workers": two, "ray_big_inputs": huge,
        "overhead_vs_floor": overhead, "task_overhead_vs_floor": task_overhead,
        "scaling_1_to_2": scaling,
        "worker_peak_rss_mb": peak_worker,
        "ffmpeg_peak_rss_mb_by_input": {k: h["ffmpeg_peak_rss_mb"] for k, h in huge.items()},
        "kinetics400": {"videos": KINETICS_VIDEOS, "s_per_video_per_core": s_per_video_core,
                        "core_hours": core_hours, "scaling_efficiency": efficiency,
                        "cores_per_node": args.cores_per_node,
                        "wall_hours_by_nodes": wall_hours,
                        "wall_hours_by_nodes_at_measured_scaling": wall_hours_measured},
        "targets": {"overhead_le_10pct": overhead <= 0.10, "scaling_ge_1_8": scaling >= 1.8,
                    "worker_rss_lt_1gb": peak_worker + peak_ffmpeg < 1024},
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    _print_table(result, args)
    return 0


def _print_table(r: dict, args: argparse.Namespace) -> None:
    one, two, floor = r["ray_1_worker"], r["ray_2_workers"], r["floor_jpeg"]
    rows = [
        ("floor: ffprobe+ffmpeg loop (jpeg), 1 core", f"{1 / floor['s_per_video']:.2f} videos/s",
         f"{floor['mb_per_video']:.2f} MB/video"),
        ("floor: same, h264 all-intra mode", f"{1 / r['floor_h264']['s_per_video']:.2f} videos/s",
         f"{r['floor_h264']['mb_per_video']:.2f} MB/video"),
        ("Ray job, 1 worker", f"{one['videos_per_s']:.2f} videos/s",
         f"overhead {100 * r['overhead_vs_floor']:+.1f}% vs floor (job wall), "
         f"{100 * r['task_overhead_vs_floor']:+.1f}% (inside tasks)"),
        ("Ray job, 2 workers", f"{two['videos_per_s']:.2f} videos/s",
         f"scaling {r['scaling_1_to_2']:.2f}x"),
        ("CPU seconds per video: floor / 1 / 2 workers",
         f"{floor['cpu_s_per_video']:.3f} s",
         f"{one['cpu_s_per_video']:.3f} s / {two['cpu_s_per_video']:.3f} s"),
        ("worker peak RSS (Ray task process)", f"{r['worker_peak_rss_mb']:.0f} MB", ""),
        ("ffmpeg peak RSS by input", f"{one['ffmpeg_peak_rss_mb'] or 0:.0f} MB",
         f"({args.size}); " + ", ".join(f"{k}: {v or 0:.0f} MB" for k, v in
                                         r["ffmpeg_peak_rss_mb_by_input"].items())),
        ("Kinetics-400 (240k clips)", f"{r['kinetics400']['core_hours']:.0f} core-hours",
         "wall, one task per core: " + ", ".join(
             f"{n}x{args.cores_per_node} cores {h:.2f} h"
             for n, h in r["kinetics400"]["wall_hours_by_nodes"].items())),
        ("  at the measured 1->2 scaling", "",
         ", ".join(f"{n}x{args.cores_per_node} cores {h:.2f} h" for n, h in
                   r["kinetics400"]["wall_hours_by_nodes_at_measured_scaling"].items())),
        ("load average before/after",
         " / ".join(f"{x:.2f}" for x in r["machine"]["loadavg_before"]),
         " / ".join(f"{x:.2f}" for x in r["machine"]["loadavg_after"])),
    ]
    width = max(len(a) for a, _, _ in rows)
    for a, b, c in rows:
        print(f"{a:<{width}}  {b:>18}  {c}")


if __name__ == "__main__":
    sys.exit(main())
