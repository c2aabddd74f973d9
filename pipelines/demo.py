"""The main job on embedded defaults: generate → preprocess → train TSI and TSN → compare → gate.

What a newcomer runs first (``python -m jobs.demo``), and the platform's own proof that the
paper's claim holds on data nobody tuned for: every video of the generated dataset has a twin in
another class that is its exact frame reversal, so a frame-order-blind model (TSN) is at chance
within each pair while a temporal model (TSI) tells a motion from its reverse.

1. ``pipelines.synthetic`` writes real H.264 files and a Kinetics-format CSV (train + eval);
2. the Ray preprocessing job writes shards (a re-run resumes: complete shards are skipped);
3. Ray Train + DeepSpeed trains each model with the same recipe, steps and data;
4. each export is evaluated on the eval split (``1x1``), which no choice ever looked at, with
   the reversal probe (every clip also scored with its frames reversed: how often the prediction
   moves to the twin class; ~0 for an order-blind model);
5. with MLflow tracking (the demo config's default), each registered candidate goes through the
   promotion gate on the eval split in turn (TSI first: the first champion must reach
   ``gate.absolute_floor``; TSN then has to beat it), and the champion predicts one eval video.

With the demo config's ``tracking.backend: mlflow`` each run is an MLflow run in the embedded
sqlite store under ``{output}/train/mlflow`` (or ``MLFLOW_TRACKING_URI``), registered as a
candidate of ``{task}`` (``demo``). A second invocation reuses the shards, trains under new run
names and sends the new versions through the same gate against the champion.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import load_config
from pipelines.console import Console, EpochProgress, ShownPrediction, epoch_poller, progress, say
from pipelines.ops.gate import GateConfig
from pipelines.synthetic import CSV_NAME, SyntheticConfig, class_names, video_file_name

log = logging.getLogger("tsi.demo")
SHOWCASE_CLASSES = 4  # the champion predicts the first eval video of this many classes


def _demo_synthetic() -> SyntheticConfig:
    return SyntheticConfig(num_pairs=4, splits=("train", "eval"), videos_per_class=(64, 32),
                           num_frames=16, height=128, width=128)


@dataclass(frozen=True)
class DemoConfig:
    """``models`` are trained in turn with ``train_config`` (plus ``train_overrides``)."""

    output: str = "runs/demo"
    synthetic: SyntheticConfig = field(default_factory=_demo_synthetic)
    preprocess_config: str = "jobs/configs/preprocess/synthetic.yaml"
    train_config: str = "jobs/configs/train/synthetic_demo.yaml"
    models: tuple[str, ...] = ("tsi_r50", "tsn_r50")
    train_overrides: tuple[str, ...] = ()
    workers: int = 2
    eval_split: str = "eval"
    task: str = "demo"  # every model is a candidate of this one task: they compete for champion
    gate: GateConfig = field(default_factory=lambda: GateConfig(absolute_floor=0.5))
    require_champion: bool = False  # the smoke profile: no champion to predict with is an error


@dataclass
class ModelOutcome:
    model: str
    run_name: str
    export_path: str
    train_seconds: float
    metrics: dict[str, float]
    version: str | None = None  # its version of {task}-candidates (MLflow tracking only)
    decision: str = ""  # what the promotion gate said


@dataclass
class DemoReport:
    shards: str
    outcomes: list[ModelOutcome]
    seconds: dict[str, float]
    tracking_uri: str | None = None  # the MLflow store the runs went to, when they did
    champion: str | None = None  # models:/{task}@champion after the gate
    prediction: str = ""  # why the champion predicted nothing, when it did not
    predictions: list[ShownPrediction] = field(default_factory=list)  # its eval showcase
    eval_split: str = "eval"

    def summary(self, log_path: str | Path | None = None) -> list[str]:
        """The closing table: metrics per model, gate decisions, showcase, MLflow UI, logs."""
        from pipelines.console import summary_lines

        videos = {o.metrics.get("videos") for o in self.outcomes}
        lines = summary_lines(
            split=self.eval_split, videos=int(videos.pop()) if len(videos) == 1 else None,
            models=[(o.model, o.metrics, o.run_name) for o in self.outcomes],
            decisions=[(f"{o.model} v{o.version}", o.decision) for o in self.outcomes
                       if o.decision],
            champion=self.champion, predictions=self.predictions,
            no_prediction=self.prediction, tracking_uri=self.tracking_uri, log_path=log_path)
        return lines + ["time (s): " + ", ".join(f"{k} {v:.0f}"
                                                 for k, v in self.seconds.items())]


class MainJobFailed(RuntimeError):
    """A step of the main job failed; the message names it and the log file (exit 1)."""


def run_demo_on_console(cfg: DemoConfig) -> DemoReport:
    """The main job as a person runs it: everything but the stage lines and the summary goes to
    a log file under ``{output}/logs`` (named at the start and the end); a failure's traceback
    goes there too and the console gets one line."""
    from pipelines.config import ConfigError

    console = Console(log_folder(cfg), name="demo")
    print(f"full logs (Ray driver and workers, libraries): {console.log_path}", flush=True)
    with console:
        try:
            report = run_demo(cfg)
        except ConfigError:
            raise
        except Exception as exc:
            log.exception("the main job failed")  # into the log file: the console is redirected
            raise MainJobFailed(f"{type(exc).__name__}: {exc} (details: {console.log_path})"
                                ) from None
        for line in report.summary(console.log_path):
            say(line)
    return report


def log_folder(cfg: DemoConfig) -> Path:
    """Where the main job's full logs go (the console names the file at start and end)."""
    return Path(cfg.output).resolve() / "logs"


def preprocess_dataset(cfg: DemoConfig, csv_path: Path, videos: Path, shards: Path) -> None:
    """The Ray preprocessing job on the generated dataset (also used by benchmarks.ablation)."""
    from pipelines.preprocess.config import PreprocessConfig
    from pipelines.preprocess.job import run_preprocess

    # stored at the generated size (a family draws a size per video: each keeps its own)
    native = 0 if cfg.synthetic.family != "default" else min(cfg.synthetic.height,
                                                             cfg.synthetic.width)
    flags = {"format": "kinetics", "annotations": [str(csv_path)], "videos": str(videos),
             "output": str(shards), "ray": {"workers": cfg.workers},
             "media": {"short_side": native}}
    with progress("[2/5] preprocessing into shards", unit="shards"):
        summary = run_preprocess(load_config(PreprocessConfig, cfg.preprocess_config, flags=flags))
    print(summary.format(), flush=True)
    if not summary.ok or summary.stored == 0:
        raise RuntimeError("preprocessing did not complete; re-run the demo to resume it")


def train_and_evaluate(cfg: DemoConfig, model: str, shards: Path, storage: Path) -> ModelOutcome:
    """Train ``model`` with the main job's recipe on ``shards``, then score its export on the
    eval split (pair metrics and the reversal probe); also used by benchmarks.generalization."""
    from pipelines.data.twins import twins_in
    from pipelines.evaluation import pair_metrics
    from pipelines.evaluation.exported import evaluate_export
    from pipelines.tracking import train_tracked
    from pipelines.train.config import TrainConfig

    overrides = [*cfg.train_overrides, f"model.name={model}", f"data.root={shards}",
                 f"data.eval_split={cfg.eval_split}", f"run.storage_path={storage}",
                 f"scaling.num_workers={cfg.workers}", f"task={cfg.task}"]
    began = time.perf_counter()
    train_cfg = load_config(TrainConfig, cfg.train_config, overrides)
    epochs = log_folder(cfg) / f"epochs-{model}.jsonl"  # for the progress line only
    with progress(f"[3/5] training {model}", unit="epochs", total=train_cfg.epochs,
                  poll=epoch_poller(epochs, train_cfg.epochs)):
        result = train_tracked(train_cfg, wrap=lambda tracking: EpochProgress(tracking,
                                                                             str(epochs)))
    seconds = time.perf_counter() - began
    with progress(f"[3/5] evaluating {model} on the {cfg.eval_split} split"):
        evaluation = evaluate_export(result.export_path, str(shards), cfg.eval_split)
    pairs = pair_metrics(evaluation.predictions, evaluation.classes, twins_in(evaluation.classes))
    metrics: dict[str, Any] = {**pairs, **evaluation.reversal, "top5": evaluation.metrics.top5,
                               "videos": evaluation.metrics.videos}
    return ModelOutcome(model, result.run_name, result.export_path, seconds, metrics,
                        _registered_version(train_cfg, result.export_path))


def _registered_version(train_cfg: Any, export_path: str) -> str | None:
    """The ``{task}-candidates`` version made from this export (None without MLflow)."""
    if train_cfg.tracking.backend != "mlflow" or not train_cfg.tracking.register:
        return None
    from mlflow import MlflowClient

    from pipelines.tracking.connection import resolve_store
    from pipelines.tracking.registry import candidates_name, file_sha256, find_version

    store = resolve_store(train_cfg.tracking, train_cfg.run.storage_path)
    version = find_version(MlflowClient(store.uri), candidates_name(train_cfg.task),
                           file_sha256(export_path))
    return str(version.version) if version else None


def _gate_and_predict(cfg: DemoConfig, report: DemoReport, shards: Path, storage: Path) -> None:
    """Each candidate through the promotion gate in turn, then the champion on one eval video."""
    from pipelines.ops.evaluate import EvalSettings
    from pipelines.ops.predict import PredictConfig, run_predict
    from pipelines.ops.promote import PromoteConfig, promote
    from pipelines.ops.store import StoreSettings

    store = StoreSettings(tracking_uri=report.tracking_uri, storage=str(storage))
    settings = EvalSettings(data=str(shards), split=cfg.eval_split, parts=cfg.workers)
    for outcome in report.outcomes:
        if outcome.version is None:
            continue
        with progress(f"[4/5] gate for {outcome.model} v{outcome.version}"):
            result = promote(PromoteConfig(task=cfg.task, gate=cfg.gate, eval=settings,
                                           store=store, candidate=f"models:/{cfg.task}-"
                                                                 f"candidates/{outcome.version}"))
        why = result.decision.reason if result.decision else result.message
        verdict = (f"promoted to {cfg.task} v{result.promoted_version}" if result.promoted
                   else "refused")
        outcome.decision = f"{verdict}: {why}"  # with the gate's numbers, for the summary
        say(f"[4/5] gate for {outcome.model} v{outcome.version}: {verdict}")
    champion = f"models:/{cfg.task}@champion"
    labels = _showcase(shards.parent / "videos", cfg.eval_split)
    try:
        with progress(f"[5/5] {champion} on {len(labels)} {cfg.eval_split} videos"):
            preds = run_predict(PredictConfig(model=champion, videos=tuple(labels), store=store))
    except Exception as exc:  # no champion (every gate refused), or no video: say so
        report.prediction = f"no prediction with {champion}: {exc}"
        say(f"[5/5] {report.prediction}")
        return
    report.champion = champion
    report.predictions = [ShownPrediction(Path(p.path).name, labels[p.path], tuple(p.labels),
                                          tuple(p.probabilities)) for p in preds]
    right = sum(p.labels[:1] == (p.true_label,) for p in report.predictions)
    say(f"[5/5] {champion} on {len(preds)} {cfg.eval_split} videos: {right} predicted right")


def _showcase(videos: Path, split: str) -> dict[str, str]:
    """``{path: true label}`` of the first ``split`` video of the first few classes (in the
    generator's order a video and its frame-reversed twin come first in their two classes)."""
    import csv

    chosen: dict[str, str] = {}
    with open(videos / CSV_NAME, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["split"] == split and row["label"] not in chosen.values():
                name = video_file_name(row["youtube_id"], row["time_start"], row["time_end"])
                chosen[str(videos / split / name)] = row["label"]
            if len(chosen) == SHOWCASE_CLASSES:
                break
    return chosen


def run_demo(cfg: DemoConfig) -> DemoReport:
    """Run the four steps above; returns the comparison (also printed as it goes)."""
    from pipelines.synthetic import write_dataset

    if cfg.eval_split not in cfg.synthetic.splits:
        raise ValueError(f"eval_split {cfg.eval_split!r} is not a generated split "
                         f"{cfg.synthetic.splits}")
    root = Path(cfg.output).resolve()
    videos, shards = root / "videos", root / "shards"
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    with progress("[1/5] generating the synthetic dataset"):
        csv_path = write_dataset(cfg.synthetic, videos, workers=cfg.workers)
    seconds["generate"] = time.perf_counter() - began
    say(f"[1/5] synthetic dataset: {csv_path} ({len(class_names(cfg.synthetic))} classes, "
        f"{seconds['generate']:.0f} s)")
    began = time.perf_counter()
    preprocess_dataset(cfg, csv_path, videos, shards)
    seconds["preprocess"] = time.perf_counter() - began
    say(f"[2/5] shards under {shards} ({seconds['preprocess']:.0f} s)")
    outcomes = []
    for model in cfg.models:
        outcome = train_and_evaluate(cfg, model, shards, root / "train")
        seconds[f"train {model}"] = outcome.train_seconds
        outcomes.append(outcome)
        say(f"[3/5] {model} ({outcome.run_name}): eval top-1 {outcome.metrics['top1']:.3f}, "
            f"within pair {outcome.metrics['within_pair']:.3f}, reversal flip "
            f"{outcome.metrics['reversal_flip']:.3f} ({outcome.train_seconds:.0f} s)")
    report = DemoReport(str(shards), outcomes, seconds, _tracking_uri(cfg, root / "train"),
                        eval_split=cfg.eval_split)
    if report.tracking_uri:
        began = time.perf_counter()
        _gate_and_predict(cfg, report, shards, root / "train")
        seconds["gate and predict"] = time.perf_counter() - began
    if cfg.require_champion and report.champion is None:
        raise RuntimeError(f"no champion predicted: {report.prediction or 'nothing tracked'}")
    return report


def _tracking_uri(cfg: DemoConfig, storage: Path) -> str | None:
    from pipelines.tracking.connection import resolve_store
    from pipelines.train.config import TrainConfig

    train_cfg = load_config(TrainConfig, cfg.train_config, list(cfg.train_overrides))
    if train_cfg.tracking.backend != "mlflow":
        return None
    return resolve_store(train_cfg.tracking, str(storage)).uri
