"""Nightly evaluation: score ``@champion`` (and ``@candidate``) and raise an alarm on regression.

One MLflow run per model per night in the promoter's ``{task}-nightly`` experiment (tags: task, alias,
version, dataset hash, status). The champion's run is compared with the previous night's
champion run of the same task:

- top-1 dropped by more than ``tolerance`` → alarm ``regression``;
- the evaluation data changed (dataset hash) → alarm ``data_changed`` unless
  ``accept_data_change`` (the new hash becomes the baseline);
- the champion cannot be resolved, downloaded or loaded → alarm ``champion_unavailable``.

The first night records a baseline. With ``promote`` the candidate then goes through the same
gate as ``jobs.promote``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pipelines.evaluation.exported import ClassMapMismatch
from pipelines.ops.evaluate import EvalSettings, ScoredModel, open_eval_split, record, score
from pipelines.ops.gate import GateConfig
from pipelines.ops.models import ModelNotFound, resolve_model
from pipelines.ops.promote import PromoteConfig, PromotionRefused, PromotionResult, promote
from pipelines.ops.store import StoreSettings, open_store
from pipelines.tracking.backend import ensure_experiment
from pipelines.tracking.registry import (
    CANDIDATE_ALIAS,
    CHAMPION_ALIAS,
    candidates_name,
    production_name,
)

log = logging.getLogger("tsi.ops")


def nightly_experiment(task: str) -> str:
    return f"{task}-nightly"


@dataclass(frozen=True)
class NightlyConfig:
    task: str | None = None
    tolerance: float = 0.02  # largest top-1 drop against the previous night that is not an alarm
    accept_data_change: bool = False
    evaluate_candidate: bool = True
    promote: bool = False  # run the candidate through the promotion gate afterwards
    experiment: str | None = None  # default "{task}-nightly"
    eval: EvalSettings = field(default_factory=EvalSettings)
    gate: GateConfig = field(default_factory=GateConfig)
    store: StoreSettings = field(default_factory=StoreSettings)


@dataclass
class NightlyReport:
    task: str
    status: str  # ok | baseline | regression | data_changed | champion_unavailable
    message: str
    champion: ScoredModel | None = None
    candidate: ScoredModel | None = None
    previous: dict[str, Any] | None = None
    promotion: PromotionResult | None = None

    @property
    def alarm(self) -> bool:
        return self.status not in ("ok", "baseline")


def previous_night(client: Any, experiment_id: str, task: str, before_run: str | None
                   ) -> dict[str, Any] | None:
    """The last finished champion run of ``task`` other than ``before_run`` (metrics and tags)."""
    runs = client.search_runs(
        [experiment_id], filter_string=(f"tags.`tsi.task` = '{task}' and "
                                        f"tags.`tsi.alias` = '{CHAMPION_ALIAS}' and "
                                        "attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=5)
    for run in runs:
        if run.info.run_id != before_run and run.data.tags.get("tsi.nightly.status") != "failed":
            return {"run_id": run.info.run_id, "top1": run.data.metrics.get("top1"),
                    "dataset_hash": run.data.tags.get("tsi.eval_dataset_hash"),
                    "version": run.data.tags.get("tsi.model_version")}
    return None


def _verdict(cfg: NightlyConfig, current: ScoredModel, previous: dict[str, Any] | None
             ) -> tuple[str, str]:
    top1 = current.metrics.top1
    if previous is None:
        return "baseline", f"first night for this task: baseline top-1 {top1:.4f}"
    if previous["dataset_hash"] != current.split.dataset_hash:
        if not cfg.accept_data_change:
            return "data_changed", (
                f"the evaluation data changed since run {previous['run_id']} (dataset hash "
                f"{str(previous['dataset_hash'])[:12]} → {current.split.dataset_hash[:12]}); "
                "the scores do not compare. Re-run with --accept-data-change to make this the "
                "new baseline")
        return "baseline", (f"evaluation data changed and accepted: new baseline top-1 "
                            f"{top1:.4f}")
    drop = float(previous["top1"]) - top1
    versions = f"v{previous['version']} → v{current.model.version}"
    if drop > cfg.tolerance:
        return "regression", (f"champion top-1 fell {drop:.4f} (from {previous['top1']:.4f} to "
                              f"{top1:.4f}, {versions}), more than the tolerance "
                              f"{cfg.tolerance:g}")
    return "ok", (f"champion top-1 {top1:.4f} (previous night {previous['top1']:.4f}, "
                  f"{versions}; tolerance {cfg.tolerance:g})")


def run_nightly(cfg: NightlyConfig) -> NightlyReport:
    if not cfg.task:
        raise ValueError("no task: set --task")
    task = cfg.task
    split = open_eval_split(cfg.eval.data, cfg.eval.split)  # bad input fails before the store
    store, client = open_store(cfg.store)
    experiment_id = ensure_experiment(client, cfg.experiment or nightly_experiment(task),
                                      store.artifact_root)
    tags = {"tsi.task": task}
    try:
        champion_ref = resolve_model(f"models:/{production_name(task)}@{CHAMPION_ALIAS}", client,
                                     store.uri)
        champion = score(champion_ref, split, cfg.eval)
    except (ModelNotFound, ClassMapMismatch, ValueError, OSError, RuntimeError) as exc:
        client.create_run(experiment_id, run_name=f"{task}-champion-unavailable", tags={
            **tags, "tsi.alias": CHAMPION_ALIAS, "tsi.nightly.status": "failed",
            "tsi.nightly.error": str(exc)[:5000]})
        return NightlyReport(task, "champion_unavailable",
                             f"the champion of {task} cannot be evaluated: {exc}")
    trained_on = [kind for kind in ("train", "selection")
                  if champion_ref.tags.get(f"tsi.{kind}_dataset_hash") == split.dataset_hash]
    if trained_on:
        log.warning("the nightly evaluation split is the champion's %s data: its score says "
                    "little about unseen videos", trained_on[0])
    run_id = record(client, experiment_id, champion, kind="nightly",
                    run_name=f"{task}-champion-v{champion_ref.version}",
                    tags={**tags, "tsi.alias": CHAMPION_ALIAS,
                          "tsi.nightly.trained_on_eval_split": ",".join(trained_on)})
    champion = ScoredModel(**{**champion.__dict__, "run_id": run_id})
    previous = previous_night(client, experiment_id, task, run_id)
    status, message = _verdict(cfg, champion, previous)
    client.set_tag(run_id, "tsi.nightly.status", status)
    client.set_tag(run_id, "tsi.nightly.message", message[:5000])
    if previous:
        client.set_tag(run_id, "tsi.nightly.previous_run", previous["run_id"])
    report = NightlyReport(task, status, message, champion, previous=previous)

    if cfg.evaluate_candidate:
        try:
            cand_ref = resolve_model(f"models:/{candidates_name(task)}@{CANDIDATE_ALIAS}",
                                     client, store.uri)
        except ModelNotFound:
            cand_ref = None
        if cand_ref is not None:
            scored = score(cand_ref, split, cfg.eval)
            cand_run = record(client, experiment_id, scored, kind="nightly",
                              run_name=f"{task}-candidate-v{cand_ref.version}",
                              tags={**tags, "tsi.alias": CANDIDATE_ALIAS})
            report.candidate = ScoredModel(**{**scored.__dict__, "run_id": cand_run})
    if cfg.promote and not report.alarm and report.candidate is not None:
        try:
            report.promotion = promote(PromoteConfig(task=task, eval=cfg.eval, gate=cfg.gate,
                                                     store=cfg.store))
        except PromotionRefused as exc:  # e.g. a rejected candidate: not an alarm, no change
            report.message += f"; candidate not promoted: {exc}"
    return report
