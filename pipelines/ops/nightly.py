"""Nightly evaluation: score ``@champion`` (and ``@candidate``); alarms that stay raised.

One MLflow run per model per night in the promoter's ``{task}-nightly`` experiment (tags: task,
alias, version, dataset hash, status). The champion's score is compared with two baselines:

- the score it was **promoted** with (``tsi.promotion.top1`` on its served version), when the
  night evaluates the same data (same dataset hash): a drop of more than
  ``cumulative_tolerance`` → alarm ``drift`` (a slow slide of 1 % a night adds up here);
- the **last accepted night** (status ``ok`` or ``baseline``) — never an alarmed night, so an alarm does not become tomorrow's baseline: a
  drop of more than ``tolerance`` → alarm ``regression``.

The evaluation data changed (dataset hash) → ``data_changed`` unless ``accept_data_change``; the
champion cannot be resolved, verified or loaded → ``champion_unavailable`` (that run ends
FAILED). An alarm stays raised: every later night reports ``alarm_open`` (exit 3) until a person
runs ``--acknowledge RUN_ID --reason ...``, which records who, when and why on the alarm's run.
Each alarm is also POSTed as JSON to ``webhook_url`` when set (:mod:`pipelines.ops.notify`).
With ``promote`` the candidate then goes through the same gate as ``jobs.promote``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines.evaluation.exported import ClassMapMismatch
from pipelines.ops.evaluate import EvalSettings, ScoredModel, open_eval_split, record, score
from pipelines.ops.gate import GateConfig
from pipelines.tracking.models import ModelNotFound, resolve_model
from pipelines.ops.notify import post_json
from pipelines.ops.promote import PromoteConfig, PromotionRefused, PromotionResult, promote
from pipelines.ops.store import StoreSettings, open_store
from pipelines.tracking.runs import ensure_experiment
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
    tolerance: float = 0.02  # largest top-1 drop against the last accepted night
    cumulative_tolerance: float = 0.03  # largest drop against the champion's promotion score
    accept_data_change: bool = False
    evaluate_candidate: bool = True
    promote: bool = False  # run the candidate through the promotion gate afterwards
    experiment: str | None = None  # default "{task}-nightly"
    eval: EvalSettings = field(default_factory=EvalSettings)
    gate: GateConfig = field(default_factory=GateConfig)
    store: StoreSettings = field(default_factory=StoreSettings)
    webhook_url: str | None = None  # alarms are POSTed here as JSON
    webhook_timeout_s: float = 5.0
    webhook_retries: int = 2
    acknowledge: str | None = None  # run id of an alarm to acknowledge (nothing is scored)
    reason: str | None = None  # why it is acknowledged (required with acknowledge)


ALARMS = ("regression", "drift", "data_changed", "champion_unavailable", "alarm_open")
ACCEPTED = ("ok", "baseline")
ACK_TAG = "tsi.nightly.acknowledged"


@dataclass
class NightlyReport:
    task: str
    status: str  # ok | baseline | acknowledged | one of ALARMS
    message: str
    champion: ScoredModel | None = None
    candidate: ScoredModel | None = None
    previous: dict[str, Any] | None = None
    promotion: PromotionResult | None = None

    notified: str | None = None

    @property
    def alarm(self) -> bool:
        return self.status in ALARMS


def _champion_runs(client: Any, experiment_id: str, task: str) -> list[Any]:
    return client.search_runs(
        [experiment_id], filter_string=(f"tags.`tsi.task` = '{task}' and "
                                        f"tags.`tsi.alias` = '{CHAMPION_ALIAS}'"),
        order_by=["attributes.start_time DESC"], max_results=200)


def last_accepted(runs: list[Any], before_run: str | None) -> dict[str, Any] | None:
    """The newest champion night that was accepted (ok or baseline): the baseline night. An
    alarmed night never becomes it, acknowledged or not (acknowledging closes the alarm; it
    does not make the alarmed score normal)."""
    for run in runs:
        tags = run.data.tags
        if run.info.run_id == before_run or "top1" not in run.data.metrics:
            continue
        if tags.get("tsi.nightly.status") in ACCEPTED:
            return {"run_id": run.info.run_id, "top1": run.data.metrics["top1"],
                    "dataset_hash": tags.get("tsi.eval_dataset_hash"),
                    "version": tags.get("tsi.model_version")}
    return None


def open_alarms(runs: list[Any], before_run: str | None) -> list[Any]:
    """Alarmed nights nobody acknowledged (newest first)."""
    return [r for r in runs if r.info.run_id != before_run and not r.data.tags.get(ACK_TAG)
            and r.data.tags.get("tsi.nightly.status") in ALARMS[:-1]]


def promotion_baseline(version_tags: dict[str, str], dataset_hash: str) -> float | None:
    """The champion's top-1 at promotion, if it was measured on this very data."""
    if version_tags.get("tsi.promotion.eval_dataset_hash") != dataset_hash:
        return None
    try:
        return float(version_tags["tsi.promotion.top1"])
    except (KeyError, ValueError):
        return None


def _verdict(cfg: NightlyConfig, current: ScoredModel, previous: dict[str, Any] | None,
             promoted: float | None, alarms: list[Any]) -> tuple[str, str]:
    top1 = current.metrics.top1
    if previous is not None and previous["dataset_hash"] != current.split.dataset_hash:
        if not cfg.accept_data_change:
            return "data_changed", (
                f"the evaluation data changed since run {previous['run_id']} (dataset hash "
                f"{str(previous['dataset_hash'])[:12]} → {current.split.dataset_hash[:12]}); "
                "the scores do not compare. Re-run with --accept-data-change to make this the "
                "new baseline")
        return "baseline", (f"evaluation data changed and accepted: new baseline top-1 "
                            f"{top1:.4f}")
    if promoted is not None and promoted - top1 > cfg.cumulative_tolerance:
        return "drift", (f"champion top-1 {top1:.4f} is {promoted - top1:.4f} below its "
                         f"promotion score {promoted:.4f} on the same data, more than "
                         f"cumulative_tolerance {cfg.cumulative_tolerance:g}")
    if previous is not None:
        drop = float(previous["top1"]) - top1
        versions = f"v{previous['version']} → v{current.model.version}"
        if drop > cfg.tolerance:
            return "regression", (f"champion top-1 fell {drop:.4f} (from {previous['top1']:.4f}"
                                  f" to {top1:.4f}, {versions}) since the last accepted night, "
                                  f"more than the tolerance {cfg.tolerance:g}")
    if alarms:
        newest = alarms[0]
        return "alarm_open", (
            f"{len(alarms)} alarm(s) not acknowledged, newest run {newest.info.run_id} "
            f"({newest.data.tags.get('tsi.nightly.status')}: "
            f"{newest.data.tags.get('tsi.nightly.message', '')[:200]}); after looking, run "
            f"jobs.nightly_eval --task {cfg.task} --acknowledge {newest.info.run_id} --reason ...")
    if previous is None:
        return "baseline", f"first accepted night for this task: baseline top-1 {top1:.4f}"
    return "ok", (f"champion top-1 {top1:.4f} (last accepted night {previous['top1']:.4f}"
                  + (f", promotion {promoted:.4f}" if promoted is not None else "") +
                  f"; tolerance {cfg.tolerance:g})")


def acknowledge(cfg: NightlyConfig) -> NightlyReport:
    """Record that a person looked at an alarm (who, when, why); nothing is scored."""
    from pipelines.ops.evaluate import who_ran_it

    if not cfg.task or not cfg.reason:
        raise ValueError("--acknowledge needs --task and --reason")
    _, client = open_store(cfg.store)
    run = client.get_run(cfg.acknowledge)
    tags = run.data.tags
    if tags.get("tsi.task") != cfg.task or tags.get("tsi.nightly.status") not in ALARMS:
        raise ValueError(f"run {cfg.acknowledge} is not a nightly alarm of {cfg.task}")
    record = {"by": who_ran_it(), "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "reason": cfg.reason}
    client.set_tag(cfg.acknowledge, ACK_TAG, json.dumps(record))
    return NightlyReport(cfg.task, "acknowledged", f"alarm {cfg.acknowledge} "
                         f"({tags.get('tsi.nightly.status')}) acknowledged by {record['by']}: "
                         f"{cfg.reason}")


def _notify(cfg: NightlyConfig, client: Any, report: NightlyReport, run_id: str | None) -> None:
    if not cfg.webhook_url or not report.alarm:
        return
    payload = {"task": report.task, "status": report.status, "message": report.message,
               "run_id": run_id, "champion_version": report.champion.model.version
               if report.champion else None, "source": "tsi nightly_eval"}
    ok, what = post_json(cfg.webhook_url, payload, timeout_s=cfg.webhook_timeout_s,
                         retries=cfg.webhook_retries)
    report.notified = what
    if run_id:
        client.set_tag(run_id, "tsi.nightly.notified", what)


def run_nightly(cfg: NightlyConfig) -> NightlyReport:
    if not cfg.task:
        raise ValueError("no task: set --task")
    if cfg.acknowledge:
        return acknowledge(cfg)
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
        message = f"the champion of {task} cannot be evaluated: {exc}"
        run = client.create_run(experiment_id, run_name=f"{task}-champion-unavailable", tags={
            **tags, "tsi.alias": CHAMPION_ALIAS, "tsi.nightly.status": "champion_unavailable",
            "tsi.nightly.message": message[:5000]})
        client.set_terminated(run.info.run_id, status="FAILED")
        report = NightlyReport(task, "champion_unavailable", message)
        _notify(cfg, client, report, run.info.run_id)
        return report
    run_id = record(client, experiment_id, champion, kind="nightly",
                    run_name=f"{task}-champion-v{champion_ref.version}",
                    tags={**tags, "tsi.alias": CHAMPION_ALIAS})
    champion = ScoredModel(**{**champion.__dict__, "run_id": run_id})
    runs = _champion_runs(client, experiment_id, task)
    previous = last_accepted(runs, run_id)
    promoted = promotion_baseline(champion_ref.tags, split.dataset_hash)
    status, message = _verdict(cfg, champion, previous, promoted, open_alarms(runs, run_id))
    client.set_tag(run_id, "tsi.nightly.status", status)
    client.set_tag(run_id, "tsi.nightly.message", message[:5000])
    if previous:
        client.set_tag(run_id, "tsi.nightly.previous_run", previous["run_id"])
    report = NightlyReport(task, status, message, champion, previous=previous)
    _notify(cfg, client, report, run_id)

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
