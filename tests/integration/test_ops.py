"""Operations against a real sqlite registry and real Ray: evaluate, promote, race, roll back,
nightly. Models come from the ``colour_models`` fixture (good, broken, twin, relabelled)."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)


def _client(world):
    from mlflow import MlflowClient

    return MlflowClient(world["uri"])


def _store_args(world) -> list[str]:
    return ["--tracking-uri", world["uri"], "--data", str(world["shards"]), "eval.parts=1"]


def _candidate(world, name: str) -> str:
    return f"models:/ops-colour-candidates/{world['versions'][name]}"


def _promote_cfg(world, name: str, **extra):
    from pipelines.ops.evaluate import EvalSettings
    from pipelines.ops.gate import GateConfig
    from pipelines.ops.promote import PromoteConfig
    from pipelines.ops.store import StoreSettings

    gate = extra.pop("gate", GateConfig(min_gain=0.05, resamples=2000))
    evaluation = extra.pop("eval", EvalSettings(data=str(world["shards"]), parts=1))
    return PromoteConfig(task=world["task"], candidate=_candidate(world, name), gate=gate,
                         eval=evaluation,
                         store=StoreSettings(tracking_uri=world["uri"]), settle_s=0.5, **extra)


def _champion(world) -> tuple[str | None, str | None]:
    from pipelines.ops.promote import _alias_version

    client = _client(world)
    return (_alias_version(client, world["task"], "champion"),
            _alias_version(client, world["task"], "previous-champion"))


def _make_champion(world, name: str) -> str:
    """Test set-up, as the promoter would build it: ``name``'s served version becomes champion."""
    version = _served_copy(world, name)
    _client(world).set_registered_model_alias(world["task"], "champion", version)
    return version


def _served_copy(world, name: str) -> str:
    """``name``'s served (promoter-built, hash-recorded) version of the task's model."""
    from pipelines.tracking.models import resolve_model
    from pipelines.ops.promote import _served_tags, promotion_experiment
    from pipelines.tracking.runs import ensure_experiment
    from pipelines.tracking.registry import ensure_registered_model
    from pipelines.tracking.served import build_served_version

    client = _client(world)
    copies = [v.version for v in client.search_model_versions(f"name = '{world['task']}'")
              if v.tags.get("tsi.run_name") == f"colour-{name}"]
    if copies:
        version = str(copies[0])
    else:
        ensure_registered_model(client, world["task"], "test")
        ref = resolve_model(_candidate(world, name), client, world["uri"])
        record = {"scores": {"candidate": {"eval_run": None, "top1": 0.0}},
                  "eval_dataset_hash": None}
        root = (Path(world["uri"][len("sqlite:///"):]).parent / "artifacts").as_uri()
        experiment = ensure_experiment(client, promotion_experiment(world["task"]), root)
        version = str(build_served_version(
            client, world["task"], experiment, ref.checkpoint, f"test-{name}",
            _served_tags(ref, record, None), "test set-up", world["uri"]).version)
    return version


def test_evaluate_scores_each_video_once_and_records_a_comparable_run(colour_models, capsys):
    from jobs.evaluate import main
    from pipelines.ops.evaluate import load_predictions

    world = colour_models
    code = main(["--model", _candidate(world, "good"), *_store_args(world), "eval.parts=2"])
    out = capsys.readouterr().out
    assert code == 0, out
    client = _client(world)
    experiment = client.get_experiment_by_name("ops-colour-evaluation")
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"],
                             max_results=1)[0]
    assert run.data.metrics["top1"] == 1.0 and run.data.metrics["videos"] == 24
    assert run.data.tags["tsi.model_version"] == world["versions"]["good"]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "predictions.parquet", "per_class_accuracy.json", "plots"}
    preds = load_predictions(client, run.info.run_id)
    assert len(preds) == 24 and len(set(preds.keys)) == 24
    # an export file scores the same; a model with another class map is refused (exit 2)
    assert main(["--model", world["exports"]["good"], *_store_args(world)]) == 0
    assert main(["--model", _candidate(world, "relabelled"), *_store_args(world)]) == 2
    assert "in another order" in capsys.readouterr().err


def test_promotion_gate_rollback_and_recorded_decisions(colour_models, capsys):
    from jobs.promote import main
    from pipelines.ops.gate import GateConfig
    from pipelines.ops.promote import PromotionRefused, promote, rollback

    world = colour_models
    client = _client(world)
    versions = world["versions"]
    # no champion yet: the broken model is below the floor (exit 3), then accepted at floor 0
    assert main(["--task", world["task"], "--candidate", _candidate(world, "broken"),
                 *_store_args(world), "gate.absolute_floor=0.9"]) == 3
    assert "below the floor" in capsys.readouterr().out
    first = promote(_promote_cfg(world, "broken", gate=GateConfig(absolute_floor=0.0)))
    assert first.promoted and _champion(world) == (first.promoted_version, None)

    better = promote(_promote_cfg(world, "good"))  # 1.0 against a shuffled model
    assert better.promoted, better.table()
    assert better.decision.lower_bound > 0.3
    assert _champion(world) == (better.promoted_version, first.promoted_version)
    served = client.get_model_version(world["task"], better.promoted_version)
    assert served.tags["tsi.replaced_version"] == first.promoted_version
    assert served.tags["tsi.source_version"].endswith(f"/{versions['good']}")
    assert json.loads(served.tags["tsi.served.sha256"])["MLmodel"]
    assert len(served.tags) <= 15 and served.description.startswith("Promoted against v")
    run = client.get_run(served.tags["tsi.promotion.decision_run"])
    assert run.data.tags["tsi.promotion.decision"] == "pass"
    decision = client.download_artifacts(run.info.run_id, "decision.json")
    gate = json.loads(Path(decision).read_text())["gate"]
    assert gate["lower_bound"] > 0.3 and gate["wins"] > 10 and gate["losses"] == 0
    candidate_version = client.get_model_version("ops-colour-candidates", versions["good"])
    assert candidate_version.description.startswith("Promoted to ops-colour v")

    for name in ("twin", "broken"):  # the same weights again, and a worse model: not promoted
        result = promote(_promote_cfg(world, name))
        assert not result.promoted and result.decision is not None, name
        run = client.get_run(result.scored["candidate"].run_id)
        assert run.data.tags["tsi.promotion.decision"] == "fail", name
        description = client.get_model_version("ops-colour-candidates", versions[name]).description
        assert description.startswith("Not promoted against v"), name
    assert _champion(world) == (better.promoted_version, first.promoted_version)

    experiment = client.get_experiment_by_name("ops-colour-promotion")
    runs_before = len(client.search_runs([experiment.experiment_id]))
    with pytest.raises(PromotionRefused, match="differ|cannot be compared"):
        promote(_promote_cfg(world, "relabelled"))
    assert len(client.search_runs([experiment.experiment_id])) == runs_before  # nothing scored

    assert "to v" + first.promoted_version in rollback(_promote_cfg(world, "good"))
    assert _champion(world) == (first.promoted_version, first.promoted_version)
    assert main(["--task", world["task"], "--rollback", *_store_args(world)]) == 2
    assert "nothing to roll back" in capsys.readouterr().err
    # the rolled-back weights are refused unless a person says otherwise (and it is recorded)
    with pytest.raises(PromotionRefused, match="rejected by"):
        promote(_promote_cfg(world, "good"))
    again = promote(_promote_cfg(world, "good", allow_rejected=True))
    run = client.get_run(again.scored["candidate"].run_id)
    assert "allowed rejected v" in run.data.tags["tsi.promotion.allowed_rejected"]


def test_two_racing_promotions_leave_one_champion_that_passed_against_its_predecessor(
        colour_models):
    from pipelines.ops.promote import promote

    world = colour_models
    start = _make_champion(world, "broken")
    barrier = threading.Barrier(2, timeout=120)
    results: dict[str, object] = {}

    def run(name: str) -> None:
        results[name] = promote(_promote_cfg(world, name, allow_rejected=True),
                                before_commit=barrier.wait)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("good", "twin")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    won = [name for name, result in results.items() if result.promoted]
    assert len(results) == 2 and len(won) == 1, {k: v.message for k, v in results.items()}
    lost = ({"good", "twin"} - set(won)).pop()
    assert "not promoted" in results[lost].message
    champion, previous = _champion(world)
    client = _client(world)
    tags = client.get_model_version(world["task"], champion).tags
    assert champion == results[won[0]].promoted_version
    assert previous == tags["tsi.replaced_version"] == start
    lost_run = client.get_run(results[lost].scored["candidate"].run_id).data.tags
    assert lost_run["tsi.promotion.decision"] == "conflict"
    assert lost_run["tsi.promotion.against_version"] == start
    assert "tsi.promotion_lease" not in client.get_registered_model(world["task"]).tags


class _Webhook:
    """A local HTTP server on 127.0.0.1 that records the JSON POSTed to it; fails the first
    ``fail_first`` requests with 503 (so the retry is exercised)."""

    def __init__(self, fail_first: int = 1) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received, state = [], {"fail": fail_first}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if state["fail"] > 0:
                    state["fail"] -= 1
                    self.send_response(503)
                else:
                    received.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _last_alarm(client, world) -> str:
    runs = client.search_runs([client.get_experiment_by_name("ops-colour-nightly").experiment_id],
                              filter_string="tags.`tsi.alias` = 'champion'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id


def test_nightly_alarms_stay_raised_until_acknowledged_and_are_notified(colour_models, capsys):
    from jobs.nightly_eval import main

    world = colour_models
    client = _client(world)
    champion = _make_champion(world, "good")
    broken = _make_champion(world, "broken")
    client.set_registered_model_alias(world["task"], "champion", champion)
    hook = _Webhook(fail_first=1)
    args = ["--task", world["task"], "--webhook-url", hook.url, *_store_args(world),
            "evaluate_candidate=false", "webhook_timeout_s=2"]
    try:
        assert main(args) == 0 and "baseline" in capsys.readouterr().out  # first night
        assert main(args) == 0 and ": ok:" in capsys.readouterr().out  # a stable night
        client.set_registered_model_alias(world["task"], "champion", broken)  # a bad deploy
        assert main(args) == 3 and "fell" in capsys.readouterr().err
        alarm = _last_alarm(client, world)
        assert hook.received[-1]["status"] == "regression"  # delivered on the second try
        assert hook.received[-1]["run_id"] == alarm and "fell" in hook.received[-1]["message"]
        client.set_registered_model_alias(world["task"], "champion", champion)  # fixed...
        assert main(args) == 3  # ...but nobody looked: the alarm stays raised
        assert "not acknowledged" in capsys.readouterr().err
        assert main(["--task", world["task"], "--tracking-uri", world["uri"],
                     "--acknowledge", alarm, "--reason", "bad deploy reverted"]) == 0
        assert "bad deploy reverted" in client.get_run(alarm).data.tags[
            "tsi.nightly.acknowledged"]
        capsys.readouterr()
        assert main(args) == 0 and ": ok:" in capsys.readouterr().out
        # the baseline is the last accepted night, never the alarmed one
        assert client.get_run(_last_alarm(client, world)).data.tags[
            "tsi.nightly.previous_run"] != alarm

        # cumulative drift: the champion's promotion score on this data is far above tonight's
        val_hash = client.get_run(alarm).data.tags["tsi.eval_dataset_hash"]
        for key, value in (("tsi.promotion.top1", "1.0"),
                           ("tsi.promotion.eval_dataset_hash", val_hash)):
            client.set_model_version_tag(world["task"], broken, key, value)
        client.set_registered_model_alias(world["task"], "champion", broken)
        assert main([*args, "tolerance=1.0"]) == 3
        assert "below its promotion score 1.0000" in capsys.readouterr().err
        assert main(["--task", world["task"], "--tracking-uri", world["uri"], "--acknowledge",
                     _last_alarm(client, world), "--reason", "known"]) == 0
        client.set_registered_model_alias(world["task"], "champion", champion)

        assert main([*args, "--split", "train"]) == 3
        assert "evaluation data changed" in capsys.readouterr().err
        assert main(["--task", world["task"], "--tracking-uri", world["uri"], "--acknowledge",
                     _last_alarm(client, world), "--reason", "new eval set"]) == 0
        assert main([*args, "--split", "train", "--accept-data-change"]) == 0
        client.delete_registered_model_alias(world["task"], "champion")
        assert main(args) == 3 and "cannot be evaluated" in capsys.readouterr().err
        assert hook.received[-1]["status"] == "champion_unavailable"
    finally:
        hook.close()
        client.set_registered_model_alias(world["task"], "champion", champion)
    runs = client.search_runs([client.get_experiment_by_name("ops-colour-nightly").experiment_id])
    statuses = sorted(r.data.tags.get("tsi.nightly.status", "") for r in runs)
    assert statuses.count("regression") == 1 and statuses.count("drift") == 1
    assert statuses.count("alarm_open") == 1 and statuses.count("data_changed") == 1
    assert all(r.info.status in ("FINISHED", "FAILED") for r in runs)


def test_new_task_accepts_a_new_class_map_and_records_it(colour_models):
    from pipelines.ops.promote import PromotionRefused, promote

    world = colour_models
    client = _client(world)
    _make_champion(world, "relabelled")  # a champion whose class map the shards no longer have
    with pytest.raises(PromotionRefused, match="cannot be compared"):
        promote(_promote_cfg(world, "twin"))
    result = promote(_promote_cfg(world, "twin", new_task=True, allow_rejected=True))
    assert result.promoted, result.table()
    decision = client.download_artifacts(result.scored["candidate"].run_id, "decision.json")
    assert "new task" in json.loads(Path(decision).read_text())["new_task"]


def test_evaluation_data_must_be_proven_unseen_per_video(colour_models, tmp_path):
    import shutil

    from pipelines.ops.evaluate import EvalSettings
    from pipelines.ops.promote import PromotionRefused, promote
    from pipelines.ops.unseen import NotProvenUnseen, require_unseen
    from tsi_model.weights import read_state_dict

    world = colour_models
    client = _client(world)
    # the trainer blanks its training-hash tag: nothing reads it, the manifest decides
    client.set_model_version_tag("ops-colour-candidates", world["versions"]["twin"],
                                 "tsi.train_dataset_hash", "")
    on_train = EvalSettings(data=str(world["shards"]), split="train", parts=1)
    with pytest.raises(PromotionRefused, match="32 videos of the evaluation split .* training "
                                               "or selection data"):
        promote(_promote_cfg(world, "twin", eval=on_train, allow_rejected=True))
    _, meta = read_state_dict(world["exports"]["good"])
    val: set[str] = set()
    require_unseen(meta, "good", val, "val")  # disjoint: passes
    with pytest.raises(NotProvenUnseen, match="names no dataset root"):
        require_unseen({**meta, "dataset_root": None}, "good", val, "val")
    moved = tmp_path / "shards"
    shutil.copytree(world["shards"], moved)
    with pytest.raises(NotProvenUnseen, match="cannot read the manifest"):
        require_unseen({**meta, "dataset_root": str(tmp_path / "gone")}, "good", val, "val")
    (moved / "train" / "manifest.parquet").write_bytes(
        (moved / "val" / "manifest.parquet").read_bytes())  # another manifest under the name
    with pytest.raises(NotProvenUnseen, match="does not match"):
        require_unseen({**meta, "dataset_root": str(moved)}, "good", val, "val")


def test_a_fine_tune_starts_from_a_registered_version_pinned_in_its_run_folder(colour_models,
                                                                              capsys):
    """``model.pretrained=models:/...`` is verified by the registry's hashes, copied into the run
    folder, and a re-run uses that copy even after the alias has moved."""
    from conftest import tiny_train_overrides
    from pipelines.tracking import make_tracking
    from pipelines.tracking.registry import file_sha256
    from pipelines.config import load_config
    from pipelines.train.config import TrainConfig
    from pipelines.train.trainer import run_training
    from pipelines.train.weights import WeightsUnavailable

    world = colour_models
    client = _client(world)

    def fine_tune(source: str, name: str, backend: str = "mlflow"):
        cfg = load_config(TrainConfig, None, tiny_train_overrides(world["shards"], world["storage"], **{
            "model.name": "tsn_r50", "scaling.num_workers": 0, "epochs": 1,
            "batches_per_epoch": 2, "run.name": name, "task": "ops-colour-finetune",
            "tracking.backend": backend, "tracking.register": "false",
            "model.pretrained": source}))
        return run_training(cfg, tracking=make_tracking(cfg))

    good_sha = file_sha256(world["exports"]["good"])
    served = _served_copy(world, "good")  # a production version: every file verified
    result = fine_tune(f"models:/{world['task']}/{served}", "from-served")
    run_dir = Path(result.run_dir)
    assert file_sha256(run_dir / "pretrained.pt") == good_sha
    origin = json.loads((run_dir / "pretrained_source.json").read_text())
    assert origin == {"source": f"models:/{world['task']}/{served}",
                      "version": f"{world['task']} v{served}", "sha256": good_sha}

    candidates = f"{world['task']}-candidates"
    client.set_registered_model_alias(candidates, "finetune-source", world["versions"]["good"])
    fine_tune(f"models:/{candidates}@finetune-source", "from-alias")
    client.set_registered_model_alias(candidates, "finetune-source", world["versions"]["twin"])
    capsys.readouterr()
    again = fine_tune(f"models:/{candidates}@finetune-source", "from-alias")  # complete: re-export
    assert f"pinned copy of {candidates} v{world['versions']['good']}" in capsys.readouterr().out
    assert file_sha256(Path(again.run_dir) / "pretrained.pt") == good_sha

    with pytest.raises(WeightsUnavailable, match="no alias 'absent'"):
        fine_tune(f"models:/{candidates}@absent", "from-nothing")
    with pytest.raises(ValueError, match="tracking.backend=mlflow"):
        fine_tune(f"models:/{candidates}@finetune-source", "from-jsonl", backend="jsonl")
    assert not (Path(world["storage"]) / "from-nothing").exists()
