"""Prediction on raw videos: several formats, the single-video path, the Ray Data batch path and
the packaged pyfunc all give the top-1 that evaluation gives on the videos' shards."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)


def _expected(world) -> dict[str, str]:
    from pipelines.evaluation.exported import evaluate_export

    evaluation = evaluate_export(world["exports"]["good"], str(world["shards"]), "val")
    return {key: evaluation.classes[int(evaluation.predictions.probs[i].argmax())]
            for i, key in enumerate(evaluation.predictions.keys)}


def _formats(world, tmp_path) -> list[Path]:
    """A val mp4, the same stream remuxed into mkv, and another transcoded to MJPEG in avi."""
    mp4s = sorted((world["videos"] / "val").glob("*.mp4"))
    mkv, avi = tmp_path / f"{mp4s[1].stem}.mkv", tmp_path / f"{mp4s[2].stem}.avi"
    for src, dst, codec in ((mp4s[1], mkv, ["-c", "copy"]), (mp4s[2], avi, ["-c:v", "mjpeg"])):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", f"file:{src}",
                        *codec, f"file:{dst}"], check=True)
    return [mp4s[0], mkv, avi]


def _candidate_version(world) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient(world["uri"]).get_model_version_by_alias(
        "ops-colour-candidates", "candidate").version)


def test_a_list_csv_without_header_keeps_its_first_row(tmp_path):
    from pipelines.ops.predict import list_videos

    for text in ("a.mp4\nb.mp4\n", "path\na.mp4\nb.mp4\n"):
        listing = tmp_path / "list.csv"
        listing.write_text(text)
        assert [Path(r["path"]).name for r in list_videos(str(listing))] == ["a.mp4", "b.mp4"]


def test_single_videos_of_several_formats_match_evaluation(colour_models, tmp_path, capsys):
    from jobs.predict import main
    from pipelines.ops.predict import Classifier, predict_videos

    world = colour_models
    videos = _formats(world, tmp_path)
    expected = _expected(world)
    results = predict_videos(Classifier(world["exports"]["good"]), [str(v) for v in videos])
    assert [r.labels[0] for r in results] == [expected[v.stem] for v in videos]
    assert all(r.error is None and len(r.labels) == 4 for r in results)  # 4 classes < top-5
    code = main(["--model", f"models:/ops-colour-candidates/{world['versions']['good']}",
                 "--tracking-uri", world["uri"], str(videos[0]), str(tmp_path / "missing.mp4")])
    out = capsys.readouterr().out
    assert code == 3 and "missing_file" in out and expected[videos[0].stem] in out


def test_ray_data_batch_job_agrees_with_the_single_video_path_and_the_pyfunc(colour_models,
                                                                               tmp_path):
    import pyarrow.parquet as pq

    from jobs.predict import main
    from pipelines.ops.predict import Classifier, predict_videos

    world = colour_models
    val = world["videos"] / "val"
    names = sorted(p.name for p in val.glob("*.mp4"))[:10]
    listing = val / "predict-list.csv"
    listing.write_text("path\n" + "\n".join(names + ["../train/../../escape.mp4", "gone.mp4"]))
    out = tmp_path / "predictions"
    code = main(["--model", world["exports"]["good"], "--list", str(listing), "--output",
                 str(out), "batch_size=4", "actors=1"])
    assert code == 3  # two rows fail, with their reasons; the other ten are predicted
    rows = {Path(r["path"]).name: r for r in pq.read_table(out).to_pylist()}
    assert len(rows) == 12
    assert "leaves the list's folder" in rows["escape.mp4"]["error"]
    assert "missing_file" in rows["gone.mp4"]["error"]
    # a re-run into the same folder replaces its rows; each row names the model it came from
    model = f"models:/ops-colour-candidates@candidate"
    code = main(["--model", model, "--tracking-uri", world["uri"], "--list", str(listing),
                 "--output", str(out), "batch_size=4", "actors=1"])
    again = pq.read_table(out).to_pylist()
    assert code == 3 and len(again) == 12 and len({r["path"] for r in again}) == 12
    version = _candidate_version(world)
    assert {(r["model"], r["version"], r["alias"]) for r in again} == {
        ("ops-colour-candidates", version, "candidate")}
    single = predict_videos(Classifier(world["exports"]["good"]), [str(val / n) for n in names])
    for name, one in zip(names, single):
        assert rows[name]["labels"] == list(one.labels) and rows[name]["error"] is None
        assert rows[name]["probabilities"] == pytest.approx(list(one.probabilities), abs=1e-5)
    script = ("import json, sys, mlflow; mlflow.set_tracking_uri(sys.argv[1]); "
              "m = mlflow.pyfunc.load_model(sys.argv[2]); "
              "print('RESULT ' + json.dumps(m.predict(json.loads(sys.argv[3]))))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPATH")}
    proc = subprocess.run([sys.executable, "-c", script, world["uri"],
                           f"models:/ops-colour-candidates/{world['versions']['good']}",
                           json.dumps([str(val / n) for n in names[:3]])],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:])
    assert [s["labels"][0] for s in served] == [one.labels[0] for one in single[:3]]
