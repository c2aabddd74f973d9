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

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import load_config
from pipelines.ops.gate import GateConfig
from pipelines.synthetic import SyntheticConfig, class_names


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
    champion: str | None = None  # models:/{task}/N after the gate
    prediction: str = ""  # the champion's top-5 on one eval video

    def table(self) -> str:
        from pipelines.report import format_table

        rows = [{"model": o.model, "eval top-1": o.metrics["top1"],
                 "pair accuracy": o.metrics["pair_accuracy"],
                 "within pair": o.metrics["within_pair"],
                 "reversal flip": o.metrics.get("reversal_flip", ""), "top-5": o.metrics["top5"],
                 "train s": o.train_seconds, "candidate": f"v{o.version}" if o.version else "",
                 "gate": o.decision} for o in self.outcomes]
        return format_table(rows)


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
    result = train_tracked(train_cfg)
    seconds = time.perf_counter() - began
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
        result = promote(PromoteConfig(task=cfg.task, gate=cfg.gate, eval=settings, store=store,
                                       candidate=f"models:/{cfg.task}-candidates/"
                                                 f"{outcome.version}"))
        why = result.decision.reason if result.decision else result.message
        outcome.decision = (f"promoted (v{result.promoted_version})" if result.promoted
                            else f"refused: {why}")
        print(f"[4/5] gate for {outcome.model} v{outcome.version}: {outcome.decision}", flush=True)
    champion = f"models:/{cfg.task}@champion"
    videos = sorted((shards.parent / "videos" / cfg.eval_split).glob("*.mp4"))[:1]
    try:
        [pred] = run_predict(PredictConfig(model=champion, videos=(str(videos[0]),), store=store))
    except Exception as exc:  # no champion (every gate refused), or no video: say so
        report.prediction = f"no prediction with {champion}: {exc}"
    else:
        report.champion = champion
        report.prediction = f"{videos[0].name}: " + ", ".join(
            f"{label} {p:.3f}" for label, p in zip(pred.labels, pred.probabilities))
    print(f"[5/5] {champion} on one eval video: {report.prediction}", flush=True)


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
    csv_path = write_dataset(cfg.synthetic, videos, workers=cfg.workers)
    seconds["generate"] = time.perf_counter() - began
    print(f"[1/5] synthetic dataset: {csv_path} ({len(class_names(cfg.synthetic))} classes, "
          f"{seconds['generate']:.0f} s)", flush=True)
    began = time.perf_counter()
    preprocess_dataset(cfg, csv_path, videos, shards)
    seconds["preprocess"] = time.perf_counter() - began
    print(f"[2/5] shards under {shards} ({seconds['preprocess']:.0f} s)", flush=True)
    outcomes = []
    for model in cfg.models:
        outcome = train_and_evaluate(cfg, model, shards, root / "train")
        seconds[f"train {model}"] = outcome.train_seconds
        outcomes.append(outcome)
        print(f"[3/5] {model}: eval top-1 {outcome.metrics['top1']:.3f}, within pair "
              f"{outcome.metrics['within_pair']:.3f}, reversal flip "
              f"{outcome.metrics['reversal_flip']:.3f} ({outcome.train_seconds:.0f} s)",
              flush=True)
    report = DemoReport(str(shards), outcomes, seconds, _tracking_uri(cfg, root / "train"))
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
