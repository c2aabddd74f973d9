"""Promotion through the gate, and rollback: the only code that writes ``{task}@champion``.

``promote``: the candidate (``{task}-candidates@candidate`` unless told another version) and the
champion (``{task}@champion``) are checked before anything is evaluated: the candidate is not a
model a rollback rejected (unless ``allow_rejected``, which is recorded), same class map and
input settings as the champion (computed from the checkpoints, unless ``new_task``), the
candidate's classes match the evaluation shards, and no evaluation video is either model's
training or selection data (:mod:`pipelines.ops.unseen`, per video). Both are scored by the one
engine on the same split in the promoter's experiment ``{task}-promotion``, the gate decides,
and the decision, pass or fail, is recorded there (tags and ``decision.json`` on the candidate's
evaluation run), summarised in the candidate version's description and printed as a table. On a
pass the served model is rebuilt by the promoter (:mod:`pipelines.tracking.served`).

MLflow has no compare-and-set, so a pass is committed under a **lease**: a tag on the
``{task}`` registered model holding a token, written, re-read after ``settle_s`` and honoured
only if still ours; then the champion is re-read and must still be the version the gate compared
against; then the served version is built, aliases set, and read back. Two racing promotions therefore
end with one champion that passed against the version it replaced (``tsi.replaced_version`` on
it = ``previous-champion``). The window that remains: a promoter whose lease write reaches the
server more than ``settle_s`` after its lease check (a stalled client), or anyone who moves the
alias by hand. Scheduled jobs must not overlap for that reason (the deployment's CronJob has
``concurrencyPolicy: Forbid``).
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines.evaluation.exported import ClassMapMismatch, check_class_map
from pipelines.ops.evaluate import (
    EvalSettings,
    ScoredModel,
    open_eval_split,
    record,
    score,
    who_ran_it,
)
from pipelines.ops.gate import GateConfig, GateDecision, decide
from pipelines.tracking.models import ModelNotFound, ModelRef, resolve_model
from pipelines.ops.store import StoreSettings, open_store
from pipelines.ops.unseen import NotProvenUnseen, require_unseen
from pipelines.tracking.runs import ensure_experiment
from pipelines.tracking.registry import (
    CANDIDATE_ALIAS,
    CHAMPION_ALIAS,
    INPUT_TAGS,
    PREVIOUS_CHAMPION_ALIAS,
    candidates_name,
    comparable,
    ensure_registered_model,
    file_sha256,
    lineage_tags,
    production_name,
)
from pipelines.tracking.served import build_served_version

log = logging.getLogger("tsi.ops")
LEASE_TAG = "tsi.promotion_lease"
REPLACED_TAG = "tsi.replaced_version"
SOURCE_TAG = "tsi.source_version"  # the candidate version a served version was built from
REJECTED_TAG = "tsi.rejected"  # JSON {by, at, reason} written by a rollback
DECISION_ARTIFACT = "decision.json"


def promotion_experiment(task: str) -> str:
    """The promoter's own experiment: its evaluation runs and the served models' runs."""
    return f"{task}-promotion"


class PromotionRefused(ValueError):
    """The candidate cannot be compared at all (class map, inputs, data): nothing was evaluated."""


class PromotionConflict(RuntimeError):
    """Another promotion or rollback moved the registry meanwhile; nothing of ours was kept."""


@dataclass(frozen=True)
class PromoteConfig:
    """``task`` names the registered models; ``candidate`` defaults to its ``@candidate``."""

    task: str | None = None
    candidate: str | None = None
    new_task: bool = False  # accept a class map or inputs that differ from the champion's
    rollback: bool = False
    allow_rejected: bool = False  # evaluate a model a rollback rejected (recorded on the run)
    eval: EvalSettings = field(default_factory=EvalSettings)
    gate: GateConfig = field(default_factory=GateConfig)
    store: StoreSettings = field(default_factory=StoreSettings)
    settle_s: float = 1.0  # lease read-back delay
    lease_ttl_s: float = 300.0  # a crashed promoter's lease expires after this


@dataclass
class PromotionResult:
    task: str
    candidate: ModelRef | None
    champion: ModelRef | None
    decision: GateDecision | None
    promoted_version: str | None = None
    scored: dict[str, ScoredModel] = field(default_factory=dict)
    message: str = ""

    @property
    def promoted(self) -> bool:
        return self.promoted_version is not None

    def table(self) -> str:
        from pipelines.report import format_table

        rows = []
        for role, ref in (("candidate", self.candidate), ("champion", self.champion)):
            if ref is None:
                continue
            scored = self.scored.get(role)
            rows.append({"role": role, "model": ref.label,
                         "top-1": scored.metrics.top1 if scored else None,
                         "videos": scored.metrics.videos if scored else None,
                         "eval run": scored.run_id if scored else None})
        d = self.decision
        lines = [format_table(rows)] if rows else []
        if d is not None:
            bound = "" if d.lower_bound is None else (
                f", lower bound {d.lower_bound:+.4f} ({d.config.confidence:g}, "
                f"{d.config.resamples} resamples, seed {d.config.seed})")
            lines.append(f"gate: {'PASS' if d.passed else 'FAIL'}: {d.reason}{bound}")
        lines.append(self.message)
        return "\n".join(line for line in lines if line)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


class Lease:
    """A best-effort mutex on a registered model: a tag written, re-read after a settle delay."""

    def __init__(self, client: Any, name: str, settle_s: float, ttl_s: float) -> None:
        self.client, self.name, self.settle_s, self.ttl_s = client, name, settle_s, ttl_s
        self.token = uuid.uuid4().hex

    def _holder(self) -> dict[str, Any] | None:
        tags = self.client.get_registered_model(self.name).tags or {}
        try:
            return json.loads(tags[LEASE_TAG]) if tags.get(LEASE_TAG) else None
        except (ValueError, TypeError):
            return None

    def __enter__(self) -> Lease:
        held = self._holder()
        if held and held.get("token") != self.token and held.get("expires", 0) > time.time():
            raise PromotionConflict(f"{self.name} is being changed by {held.get('by')} (lease "
                                    f"until {time.ctime(held['expires'])}); try again later")
        try:
            self.client.set_registered_model_tag(self.name, LEASE_TAG, json.dumps({
                "token": self.token, "by": who_ran_it(), "expires": time.time() + self.ttl_s}))
        except Exception as exc:  # e.g. sqlite's unique constraint when two write at once
            raise PromotionConflict(f"could not take the lease on {self.name} ({type(exc).__name__}"
                                    f": {str(exc).splitlines()[0][:200]}); another promotion is "
                                    "probably writing it; nothing was changed") from None
        time.sleep(self.settle_s)
        held = self._holder()
        if not held or held.get("token") != self.token:
            raise PromotionConflict(f"another promotion of {self.name} took the lease at the "
                                    f"same time ({(held or {}).get('by')}); nothing was changed")
        return self

    def __exit__(self, *exc: object) -> None:
        held = self._holder()
        if held and held.get("token") == self.token:
            self.client.delete_registered_model_tag(self.name, LEASE_TAG)


def computed_tags(ref: ModelRef) -> dict[str, str]:
    """Lineage of ``ref`` from its verified checkpoint, never from editable version tags."""
    return lineage_tags(ref.meta, ref.checkpoint)


def check_comparable(candidate: ModelRef, champion: ModelRef | None, split: Any,
                     new_task: bool) -> None:
    """Everything that makes a comparison meaningless, refused before any evaluation."""
    if champion is not None and not new_task:
        ok, why = comparable(computed_tags(candidate), computed_tags(champion))
        if not ok:
            raise PromotionRefused(f"{candidate.label} cannot be compared with champion "
                                   f"{champion.label}: " + "; ".join(why) +
                                   " (pass new_task=true if this starts a new task)")
    for ref in filter(None, (candidate, champion)):
        try:
            require_unseen(ref.meta, ref.label, split.keys, f"{split.root}/{split.split}")
        except NotProvenUnseen as exc:
            raise PromotionRefused(str(exc)) from None


def rejection_of(client: Any, task: str, checkpoint_sha: str) -> tuple[str, dict] | None:
    """(version, record) of a production version with these weights that a rollback rejected."""
    for version in client.search_model_versions(f"name = '{production_name(task)}'"):
        tags = version.tags or {}
        if tags.get(REJECTED_TAG) and tags.get("tsi.export_sha256") == checkpoint_sha:
            try:
                return str(version.version), json.loads(tags[REJECTED_TAG])
            except ValueError:
                return str(version.version), {"reason": tags[REJECTED_TAG]}
    return None


def _decision_record(result: PromotionResult, champion_version: str | None,
                     allowed_rejected: str) -> dict[str, Any]:
    d = result.decision
    return {"decision": "pass" if d and d.passed else "fail", "time": _now(), "by": who_ran_it(),
            "candidate": result.candidate.label if result.candidate else None,
            "against_version": champion_version, "allowed_rejected": allowed_rejected or None,
            "eval_dataset_hash": (next(iter(result.scored.values())).split.dataset_hash
                                  if result.scored else None),
            "scores": {role: {"top1": s.metrics.top1, "videos": s.metrics.videos,
                              "mean_class_accuracy": s.metrics.mean_class_accuracy,
                              "eval_run": s.run_id} for role, s in result.scored.items()},
            "gate": d.as_dict() if d else None}


def _describe(result: PromotionResult, record: dict[str, Any], outcome: str) -> str:
    """The one paragraph a person reads in the MLflow UI (version description)."""
    d = result.decision
    against = (f"against v{record['against_version']}" if record["against_version"]
               else "first champion")
    return (f"{outcome} {against}: {d.summary() if d else ''} Decided by {record['by']} at "
            f"{record['time']}; evidence in run {result.scored['candidate'].run_id} "
            f"({DECISION_ARTIFACT}).")[:5000]


def _served_tags(candidate: ModelRef, record: dict[str, Any], expected: str | None
                 ) -> dict[str, str]:
    """The few promoter-written tags of a served version: filters, lineage, trust."""
    lineage = computed_tags(candidate)
    keep = ("tsi.task", "tsi.model", "tsi.run_name", "tsi.export_sha256", *INPUT_TAGS)
    return {**{k: lineage[k] for k in keep},
            SOURCE_TAG: f"{candidate.name}/{candidate.version}", REPLACED_TAG: expected or "",
            "tsi.promotion.decision_run": record["scores"]["candidate"]["eval_run"] or "",
            "tsi.promotion.eval_dataset_hash": record["eval_dataset_hash"] or "",
            "tsi.promotion.top1": f"{record['scores']['candidate']['top1']:.6g}"}


def _commit(client: Any, cfg: PromoteConfig, task: str, candidate: ModelRef,
            expected_champion: str | None, record: dict[str, Any], description: str,
            experiment_id: str, tracking_uri: str) -> str:
    """Build the served version in ``{task}``, move the aliases, read back; under the lease."""
    prod = production_name(task)
    ensure_registered_model(client, prod, f"Production model of {task}: alias '{CHAMPION_ALIAS}'"
                             f" is served; only promotion writes here.")
    with Lease(client, prod, cfg.settle_s, cfg.lease_ttl_s):
        current = _alias_version(client, prod, CHAMPION_ALIAS)
        if current != expected_champion:
            raise PromotionConflict(f"{prod}@{CHAMPION_ALIAS} moved from {expected_champion} to "
                                    f"{current} while this promotion evaluated; re-run it")
        built = build_served_version(
            client, prod, experiment_id, candidate.checkpoint,
            f"served-{prod}-from-{candidate.name}-v{candidate.version}",
            _served_tags(candidate, record, expected_champion), description, tracking_uri)
        version = str(built.version)
        client.set_registered_model_alias(prod, CHAMPION_ALIAS, version)
        if expected_champion:
            client.set_registered_model_alias(prod, PREVIOUS_CHAMPION_ALIAS, expected_champion)
        now = _alias_version(client, prod, CHAMPION_ALIAS)
        if now != version:  # someone ignored the lease: leave their champion, fix our alias
            replaced = client.get_model_version(prod, now).tags.get(REPLACED_TAG) if now else None
            if replaced:
                client.set_registered_model_alias(prod, PREVIOUS_CHAMPION_ALIAS, replaced)
            raise PromotionConflict(f"{prod}@{CHAMPION_ALIAS} is {now}, not our {version}, after "
                                    "setting it: another writer ignored the lease")
    return version


def promote(cfg: PromoteConfig, *, before_commit: Callable[[], None] | None = None
            ) -> PromotionResult:
    """Evaluate, gate, and (on a pass) commit; ``before_commit`` is a hook for race tests."""
    if not cfg.task:
        raise ValueError("no task: set --task (the name before -candidates)")
    task = cfg.task
    split = open_eval_split(cfg.eval.data, cfg.eval.split)  # bad input fails before the store
    store, client = open_store(cfg.store)
    source = cfg.candidate or f"models:/{candidates_name(task)}@{CANDIDATE_ALIAS}"
    candidate = resolve_model(source, client, store.uri)
    if candidate.name is None:
        raise ValueError("the candidate must be a registered version (models:/...)")
    rejected = rejection_of(client, task, file_sha256(candidate.checkpoint))
    allowed = ""
    if rejected is not None:
        if not cfg.allow_rejected:
            raise PromotionRefused(
                f"{candidate.label} has the weights of {production_name(task)} v{rejected[0]}, "
                f"rejected by {rejected[1].get('by')} at {rejected[1].get('at')} "
                f"({rejected[1].get('reason')}); pass --allow-rejected to evaluate it anyway "
                "(recorded)")
        allowed = f"{who_ran_it()} allowed rejected v{rejected[0]} at {_now()}"
    champion_version = _alias_version(client, production_name(task), CHAMPION_ALIAS)
    champion = (resolve_model(f"models:/{production_name(task)}/{champion_version}", client,
                              store.uri) if champion_version else None)
    check_comparable(candidate, champion, split, cfg.new_task)  # before any scoring
    check_class_map(candidate.meta, split.root, candidate.label)
    compared, new_task_note = champion, ""
    if champion is not None and cfg.new_task:
        try:
            check_class_map(champion.meta, split.root, champion.label)
        except ClassMapMismatch as exc:  # a new class map: judged as a first champion
            compared = None
            new_task_note = (f"new task: champion {champion.label}'s class map does not fit the "
                             f"evaluation data ({str(exc)[:200]}); judged as a first champion")

    experiment_id = ensure_experiment(client, promotion_experiment(task), store.artifact_root)
    result = PromotionResult(task, candidate, champion, None)
    for role, ref in (("candidate", candidate), ("champion", compared)):
        if ref is None:
            continue
        scored = score(ref, split, cfg.eval)
        run_id = record(client, experiment_id, scored, kind="promotion",
                        run_name=f"promotion-{role}-{ref.name}-v{ref.version}",
                        tags={"tsi.promotion.role": role})
        result.scored[role] = ScoredModel(**{**scored.__dict__, "run_id": run_id})
    champion_preds = result.scored["champion"].predictions if compared else None
    result.decision = decide(result.scored["candidate"].predictions, champion_preds, cfg.gate)
    decision = _decision_record(result, champion_version, allowed)
    decision["new_task"] = new_task_note or None
    outcome = "Promoted" if result.decision.passed else "Not promoted"
    if result.decision.passed:
        if before_commit is not None:
            before_commit()
        try:
            result.promoted_version = _commit(
                client, cfg, task, candidate, champion_version, decision,
                _describe(result, decision, "Promoted"), experiment_id, store.uri)
        except PromotionConflict as exc:
            decision |= {"decision": "conflict", "conflict": str(exc)}
            outcome = "Not promoted (conflict)"
            result.message = f"not promoted: {exc}"
        else:
            decision["served_version"] = result.promoted_version
            outcome = f"Promoted to {production_name(task)} v{result.promoted_version}"
            result.message = (f"promoted {candidate.label} to {production_name(task)} version "
                              f"{result.promoted_version} (@{CHAMPION_ALIAS})" +
                              (f"; v{champion_version} is @{PREVIOUS_CHAMPION_ALIAS}"
                               if champion_version else ""))
    else:
        result.message = f"not promoted: {result.decision.reason}"
    _record_decision(client, result, decision, _describe(result, decision, outcome))
    log.info(result.message)
    return result


def _record_decision(client: Any, result: PromotionResult, decision: dict[str, Any],
                     description: str) -> None:
    """The decision where only the promoter writes (the candidate's evaluation run in the
    promoter's experiment), and its summary as the candidate version's description (display)."""
    run_id = result.scored["candidate"].run_id
    client.log_dict(run_id, decision, DECISION_ARTIFACT)
    for key, value in {"tsi.promotion.decision": decision["decision"],
                       "tsi.promotion.against_version": decision["against_version"] or "",
                       "tsi.promotion.allowed_rejected": decision["allowed_rejected"] or ""
                       }.items():
        client.set_tag(run_id, key, value)
    client.update_model_version(result.candidate.name, result.candidate.version,
                                description=description)


def rollback(cfg: PromoteConfig, reason: str = "rolled back") -> str:
    """``previous-champion`` becomes ``champion`` again, all or nothing; returns a summary.

    Only moves aliases and writes tags (what EDIT allows; deleting an alias needs MANAGE): the
    rolled-back version is tagged rejected, ``@previous-champion`` moves one further back (or to
    the restored champion itself when there is nothing older: a second rollback then has
    nothing to do), and ``{task}-candidates@candidate``, if it is the rolled-back model's source,
    moves to the restored champion's source so the next promotion does not re-offer it. Any
    failure puts every alias back as it was and removes the rejection.
    """
    if not cfg.task:
        raise ValueError("no task: set --task")
    _, client = open_store(cfg.store)
    prod, cands = production_name(cfg.task), candidates_name(cfg.task)
    with Lease(client, prod, cfg.settle_s, cfg.lease_ttl_s):
        current = _alias_version(client, prod, CHAMPION_ALIAS)
        previous = _alias_version(client, prod, PREVIOUS_CHAMPION_ALIAS)
        if current is None or previous is None or previous == current:
            raise ModelNotFound(f"{prod} has no @{PREVIOUS_CHAMPION_ALIAS} other than the "
                                "champion: nothing to roll back to")
        prev_tags = client.get_model_version(prod, previous).tags or {}
        if prev_tags.get(REJECTED_TAG):
            raise PromotionRefused(f"{prod} v{previous} was itself rejected; not restoring it")
        cur_tags = client.get_model_version(prod, current).tags or {}
        older = prev_tags.get(REPLACED_TAG) or previous
        if older != previous and (client.get_model_version(prod, older).tags or {}).get(
                REJECTED_TAG):
            older = previous
        candidate_now = _alias_version(client, cands, CANDIDATE_ALIAS)
        source = cur_tags.get(SOURCE_TAG, "")
        restored_source = prev_tags.get(SOURCE_TAG, "")
        moves = [(prod, PREVIOUS_CHAMPION_ALIAS, older, previous),
                 (prod, CHAMPION_ALIAS, previous, current)]
        if candidate_now and source == f"{cands}/{candidate_now}" and restored_source:
            moves.insert(0, (cands, CANDIDATE_ALIAS, restored_source.rsplit("/", 1)[1],
                             candidate_now))
        done: list[tuple[str, str, str]] = []
        try:
            client.set_model_version_tag(prod, current, REJECTED_TAG, json.dumps(
                {"by": who_ran_it(), "at": _now(), "reason": reason, "restored": previous}))
            for name, alias, target, before in moves:
                client.set_registered_model_alias(name, alias, target)
                done.append((name, alias, before))
            client.update_model_version(prod, current, description=(
                f"Rejected: {reason}; rolled back to v{previous} by {who_ran_it()} at {_now()}. "
                "Promotion refuses these weights unless --allow-rejected."))
            if _alias_version(client, prod, CHAMPION_ALIAS) != previous:
                raise PromotionConflict(f"{prod}@{CHAMPION_ALIAS} moved during the rollback")
        except Exception:
            for name, alias, before in reversed(done):
                client.set_registered_model_alias(name, alias, before)
            client.delete_model_version_tag(prod, current, REJECTED_TAG)
            raise
    moved = [f"{name}@{alias} -> v{target}" for name, alias, target, _ in moves]
    return (f"rolled back {prod}@{CHAMPION_ALIAS} from v{current} (now rejected) to "
            f"v{previous}; " + ", ".join(moved))
