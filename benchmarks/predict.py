"""Batch prediction: the Ray Data job (2 CPUs) against a plain single-process loop, same files.

    python -m benchmarks.predict [--videos 96] [--rounds 2] [--size 64] [--frames 8]

Generates synthetic H.264 videos (128x128, 16 frames) and a randomly initialised tiny TSI export
(width 16, one block per stage, 8 frames at the given size, with the synthetic preprocessing's
media settings), then times, interleaved round by round so machine load hits both alike:

- loop: ``pipelines.ops.predict.predict_videos`` in this process (decode, sample, crop, forward,
  one video after another; torch with this process's threads);
- ray: ``predict_on_ray`` on a local 2-CPU Ray instance started before timing: decoding in
  1-CPU tasks, the model in one 1-CPU actor, parquet written; the actor's start-up is inside
  the timing (a job pays it).

Reports videos/s of each and their ratio per round. The two paths' top-1 labels are checked to
agree. Results: a table and ``benchmarks/results/predict.json`` (load average before and after).
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import format_table, machine_state, write_result


def _export(path: Path, classes: tuple[str, ...], frames: int, size: int) -> str:
    from pipelines.loader.clips import ClipSettings
    from pipelines.config import load_config
    from pipelines.preprocess.config import PreprocessConfig
    from tsi_model import get_model
    from tsi_model.weights import save_checkpoint

    options = {"num_classes": len(classes), "num_frames": frames, "width": 16,
               "layers": [1, 1, 1, 1], "dropout": 0.0}
    model = get_model("tsi_r50", **options)
    media = dataclasses.asdict(
        load_config(PreprocessConfig, "jobs/configs/preprocess/synthetic.yaml").media)
    clip = ClipSettings(frames=frames, size=size, resize=size, flip=False).to_dict()
    return str(save_checkpoint(model, path, model_name="tsi_r50", options=options,
                               classes=list(classes), clip=clip, media=media, task="bench"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=96)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--decode-cpus", type=float, default=1.0, help="CPUs per Ray decode task")
    p.add_argument("--actor-cpus", type=float, default=1.0, help="CPUs of the model actor")
    args = p.parse_args(argv)

    import pyarrow.parquet as pq
    import ray

    from pipelines.ops.predict import Classifier, PredictConfig, predict_on_ray, predict_videos
    from pipelines.synthetic import SyntheticConfig, class_names, write_dataset

    before = machine_state()
    work = Path(tempfile.mkdtemp(prefix="tsi-bench-predict-"))
    synthetic = SyntheticConfig(num_pairs=4, splits=("eval",),
                                videos_per_class=(max(1, args.videos // 8),))
    write_dataset(synthetic, work / "videos", workers=2)
    videos = sorted(str(v) for v in (work / "videos" / "eval").glob("*.mp4"))
    checkpoint = _export(work / "model.pt", class_names(synthetic), args.frames, args.size)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rounds = []
    try:
        for index in range(args.rounds):
            began = time.perf_counter()
            single = predict_videos(Classifier(checkpoint), videos)
            loop_s = time.perf_counter() - began
            out = work / f"ray-{index}"
            began = time.perf_counter()
            counts = predict_on_ray(PredictConfig(list=str(work / "videos" / "eval"),
                                                  output=str(out), batch_size=8, actors=1,
                                                  decode_cpus=args.decode_cpus,
                                                  cpus_per_actor=args.actor_cpus),
                                    checkpoint, _meta(checkpoint))
            ray_s = time.perf_counter() - began
            batch = {Path(r["path"]).name: r["labels"][0] for r in pq.read_table(out).to_pylist()}
            agree = all(batch[Path(s.path).name] == s.labels[0] for s in single)
            rounds.append({"round": index, "videos": len(videos), "loop_s": loop_s,
                           "ray_s": ray_s, "loop_videos_per_s": len(videos) / loop_s,
                           "ray_videos_per_s": len(videos) / ray_s, "ray_over_loop": loop_s / ray_s,
                           "failed": counts["failed"], "top1_agree": agree})
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(format_table(rounds))
    result = {"benchmark": "predict", "settings": vars(args), "machine_before": before,
              "machine_after": machine_state(), "rounds": rounds}
    print(f"wrote {write_result('predict', result)}")
    return result


def _meta(checkpoint: str) -> dict[str, Any]:
    from tsi_model.weights import read_state_dict

    return read_state_dict(checkpoint)[1]


if __name__ == "__main__":
    main()
