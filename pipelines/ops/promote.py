"""Promotion through the gate, and rollback: the only code that writes ``{task}@champion``.

``promote``: the candidate (``{task}-candidates@candidate`` unless told another version) and the
champion (``{task}@champion``) are checked before anything is evaluated: same class map and
input settings (unless ``new_task``), the candidate's classes match the evaluation shards, and
the evaluation split is neither model's training or selection data (their dataset-hash tags).
Both are scored by the one engine on the same split, the gate decides, and the decision, pass or
fail, is written to the candidate version as tags and printed as a table.

MLflow has no compare-and-set, so a pass is committed under a **lease**: a tag on the
``{task}`` registered model holding a token, written, re-read after ``settle_s`` and honoured
only if still ours; then the champion is re-read and must still be the version the gate compared
against; then the version is copied, aliases set, and read back. Two racing promotions therefore
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

from pipelines.evaluation.exported import check_class_map
from pipelines.ops.evaluate import (
    EvalSettings,
    ScoredModel,
    open_eval_split,
    record,
    score,
    who_ran_it,
)
from pipelines.ops.gate import GateConfig, GateDecision, decide
from pipelines.ops.models import ModelNotFound, ModelRef, resolve_model
from pipelines.ops.store import StoreSettings, open_store
from pipelines.tracking.backend import ensure_experiment
from pipelines.tracking.registry import (
    CANDIDATE_ALIAS,
    CHAMPION_ALIAS,
    PREVIOUS_CHAMPION_ALIAS,
    candidates_name,
    comparable,
    ensure_registered_model,
    production_name,
)

log = logging.getLogger("tsi.ops")
LEASE_TAG = "tsi.promotion_lease"
REPLACED_TAG = "tsi.replaced_version"


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


def check_comparable(candidate: ModelRef, champion: ModelRef | None, split_hash: str,
                     new_task: bool) -> None:
    """Everything that makes a comparison meaningless, refused before any evaluation."""
    if champion is not None and not new_task:
        ok, why = comparable(candidate.tags, champion.tags)
        if not ok:
            raise PromotionRefused(f"{candidate.label} cannot be compared with champion "
                                   f"{champion.label}: " + "; ".join(why) +
                                   " (pass new_task=true if this starts a new task)")
    for ref in filter(None, (candidate, champion)):
        for kind in ("train", "selection"):
            if ref.tags.get(f"tsi.{kind}_dataset_hash") == split_hash:
                raise PromotionRefused(f"the evaluation split is {ref.label}'s {kind} data "
                                       f"(dataset hash {split_hash[:12]}): it cannot judge it")


def _decision_tags(result: PromotionResult, champion_version: str | None) -> dict[str, str]:
    tags = result.decision.as_tags() if result.decision else {}
    tags |= {"tsi.promotion.decision": "pass" if result.decision and result.decision.passed
             else "fail", "tsi.promotion.time": _now(), "tsi.promotion.by": who_ran_it(),
             "tsi.promotion.against_version": champion_version or "",
             "tsi.promotion.eval_dataset_hash":
                 next(iter(result.scored.values())).split.dataset_hash if result.scored else ""}
    for role, scored in result.scored.items():
        tags[f"tsi.promotion.{role}_top1"] = f"{scored.metrics.top1:.6g}"
        tags[f"tsi.promotion.{role}_eval_run"] = scored.run_id or ""
    return tags


def _commit(client: Any, cfg: PromoteConfig, task: str, candidate: ModelRef,
            expected_champion: str | None, tags: dict[str, str]) -> str:
    """Copy the candidate into ``{task}``, move the aliases, read back; under the lease."""
    prod = production_name(task)
    ensure_registered_model(client, prod, f"Production model of {task}: alias '{CHAMPION_ALIAS}'"
                             f" is served; only promotion writes here.")
    with Lease(client, prod, cfg.settle_s, cfg.lease_ttl_s):
        current = _alias_version(client, prod, CHAMPION_ALIAS)
        if current != expected_champion:
            raise PromotionConflict(f"{prod}@{CHAMPION_ALIAS} moved from {expected_champion} to "
                                    f"{current} while this promotion evaluated; re-run it")
        copied = client.copy_model_version(
            src_model_uri=f"models:/{candidate.name}/{candidate.version}", dst_name=prod)
        version = str(copied.version)
        lineage = {k: v for k, v in candidate.tags.items() if k.startswith("tsi.")}
        for key, value in {**lineage, **tags, REPLACED_TAG: expected_champion or "",
                           "tsi.copied_from": f"{candidate.name}/{candidate.version}"}.items():
            client.set_model_version_tag(prod, version, key, value)
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
    champion_version = _alias_version(client, production_name(task), CHAMPION_ALIAS)
    champion = (resolve_model(f"models:/{production_name(task)}/{champion_version}", client,
                              store.uri) if champion_version else None)
    check_comparable(candidate, champion, split.dataset_hash, cfg.new_task)  # before any scoring
    check_class_map(candidate.meta, split.root, candidate.label)

    experiment_id = ensure_experiment(client, f"{task}-evaluation", store.artifact_root)
    result = PromotionResult(task, candidate, champion, None)
    for role, ref in (("candidate", candidate), ("champion", champion)):
        if ref is None:
            continue
        scored = score(ref, split, cfg.eval)
        run_id = record(client, experiment_id, scored, kind="promotion",
                        run_name=f"promotion-{role}-{ref.name}-v{ref.version}",
                        tags={"tsi.promotion.role": role})
        result.scored[role] = ScoredModel(**{**scored.__dict__, "run_id": run_id})
    champion_preds = result.scored["champion"].predictions if champion else None
    result.decision = decide(result.scored["candidate"].predictions, champion_preds, cfg.gate)
    tags = _decision_tags(result, champion_version)
    if result.decision.passed:
        if before_commit is not None:
            before_commit()
        try:
            result.promoted_version = _commit(client, cfg, task, candidate, champion_version, tags)
        except PromotionConflict as exc:
            tags |= {"tsi.promotion.decision": "conflict", "tsi.promotion.conflict": str(exc)}
            result.message = f"not promoted: {exc}"
        else:
            result.message = (f"promoted {candidate.label} to {production_name(task)} version "
                              f"{result.promoted_version} (@{CHAMPION_ALIAS})" +
                              (f"; v{champion_version} is @{PREVIOUS_CHAMPION_ALIAS}"
                               if champion_version else ""))
    else:
        result.message = f"not promoted: {result.decision.reason}"
    for key, value in tags.items():
        client.set_model_version_tag(candidate.name, candidate.version, key, value)
    log.info(result.message)
    return result


def rollback(cfg: PromoteConfig) -> str:
    """``previous-champion`` becomes ``champion`` again; returns a one-line summary."""
    if not cfg.task:
        raise ValueError("no task: set --task")
    _, client = open_store(cfg.store)
    prod = production_name(cfg.task)
    with Lease(client, prod, cfg.settle_s, cfg.lease_ttl_s):
        current = _alias_version(client, prod, CHAMPION_ALIAS)
        previous = _alias_version(client, prod, PREVIOUS_CHAMPION_ALIAS)
        if previous is None:
            raise ModelNotFound(f"{prod} has no @{PREVIOUS_CHAMPION_ALIAS}: nothing to roll back "
                                "to")
        client.set_registered_model_alias(prod, CHAMPION_ALIAS, previous)
        older = (client.get_model_version(prod, previous).tags or {}).get(REPLACED_TAG)
        if older:
            client.set_registered_model_alias(prod, PREVIOUS_CHAMPION_ALIAS, older)
        else:
            client.delete_registered_model_alias(prod, PREVIOUS_CHAMPION_ALIAS)
        if current:
            for key, value in {"tsi.rolled_back_at": _now(), "tsi.rolled_back_by": who_ran_it(),
                               "tsi.rolled_back_to": previous}.items():
                client.set_model_version_tag(prod, current, key, value)
        if _alias_version(client, prod, CHAMPION_ALIAS) != previous:
            raise PromotionConflict(f"{prod}@{CHAMPION_ALIAS} moved during the rollback")
    return (f"rolled back {prod}@{CHAMPION_ALIAS} from v{current} to v{previous}" +
            (f"; @{PREVIOUS_CHAMPION_ALIAS} is now v{older}" if older else ""))
