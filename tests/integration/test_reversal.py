"""The reversal probe: hand-made predictions, models that are order-blind or order-sensitive by
construction, and the probe where the platform evaluates (export, training, the ops engine)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.data.twins import SOMETHING_TWINS, twin_indices, twins_in
from pipelines.evaluation import Predictions, predict, predict_with_reversal, reversal_probe
from pipelines.loader.streams import EvalBatch
from pipelines.synthetic import PAIRS, SyntheticConfig, class_names

NAMES = ("a_fwd", "a_rev", "b_fwd", "b_rev", "lonely")  # twins (0, 1), (2, 3); 4 has none
TWINS = {0: 1, 1: 0, 2: 3, 3: 2}


def _preds(labels, predicted, classes=len(NAMES)) -> Predictions:
    keys = tuple(f"v{i}" for i in range(len(labels)))
    return Predictions(keys, np.array(labels), np.eye(classes, dtype=np.float32)[predicted])


def test_probe_by_hand():
    labels = [0, 1, 2, 3, 4, 0]
    forward = _preds(labels, [0, 1, 2, 2, 4, 4])
    backward = _preds(labels, [1, 1, 3, 3, 1, 0])
    # flips: v0 0->1 yes, v1 1->1 no, v2 2->3 yes, v3 2->3 yes, v5 4 has no twin: no (v4 left out)
    # to twin of the true class: v0 yes, v1 (twin 0) no, v2 yes, v3 (twin 2) no, v5 (twin 1) no
    got = reversal_probe(forward, backward, TWINS)
    assert got == {"reversal_flip": pytest.approx(3 / 5), "reversal_to_twin": pytest.approx(2 / 5),
                   "reversal_videos": 5.0}
    # order-blind: the same prediction both ways never flips, however right it is
    assert reversal_probe(forward, forward, TWINS)["reversal_flip"] == 0.0
    assert reversal_probe(_preds([4], [4]), _preds([4], [4]), TWINS)["reversal_videos"] == 0.0
    with pytest.raises(ValueError, match="same videos"):
        reversal_probe(forward, _preds(labels[:5], [0] * 5), TWINS)


def test_declared_twin_maps_come_from_one_list():
    names = class_names(SyntheticConfig(num_pairs=4))
    assert twins_in(names) == PAIRS[:4]
    twins = twin_indices(names)
    assert sorted(twins) == list(range(8)) and all(twins[twins[i]] == i != twins[i] for i in twins)
    ssv2 = ["Moving something up", "Opening something", "Moving something down", "Holding"]
    assert twin_indices(ssv2) == {0: 2, 2: 0}  # "Opening" without "Closing": no pair
    assert all(a != b for a, b in SOMETHING_TWINS) and twin_indices(["x", "y"]) == {}


class _Ramp(torch.nn.Module):
    """Order-sensitive by construction: class 0 if the clip gets brighter, its twin 1 if darker."""

    def forward(self, clip: torch.Tensor) -> torch.Tensor:  # (N, T, 3, H, W), normalised
        d = clip[:, -1].mean(dim=(1, 2, 3)) - clip[:, 0].mean(dim=(1, 2, 3))
        return torch.stack([d, -d, 0.5 * d, -0.5 * d, 0 * d], dim=1)


def _ramps(labels, frames=4, size=8) -> list[EvalBatch]:
    """Videos brightening (labels 0, 2) or darkening (1, 3, 4), one view each, in two batches."""
    clips = []
    for label in labels:
        levels = np.linspace(40, 200, frames) if label in (0, 2) else np.linspace(200, 40, frames)
        clips.append(np.broadcast_to(levels[:, None, None, None], (frames, 3, size, size)))
    clips = torch.from_numpy(np.stack(clips).astype(np.uint8))[:, None]  # (B, V=1, T, 3, H, W)
    keys, labels = [f"v{i}" for i in range(len(labels))], torch.tensor(labels)
    return [EvalBatch(keys[:3], labels[:3], clips[:3]), EvalBatch(keys[3:], labels[3:], clips[3:])]


def test_probe_on_an_order_sensitive_and_an_order_blind_model():
    from tsi_model import tsn_r50

    labels = [0, 1, 0, 1, 2, 3, 4]
    forward, backward = predict_with_reversal(_Ramp(), _ramps(labels), num_classes=5)
    assert forward.probs.argmax(1).tolist() == [0, 1, 0, 1, 0, 1, 1]
    assert backward.probs.argmax(1).tolist() == [1, 0, 1, 0, 1, 0, 0]
    # every prediction flips to its twin; the reversed clip is the true class's twin for 0/1 only
    assert reversal_probe(forward, backward, TWINS) == {
        "reversal_flip": 1.0, "reversal_to_twin": pytest.approx(4 / 6), "reversal_videos": 6.0}
    # the forward half is exactly what predict gives
    np.testing.assert_array_equal(forward.probs, predict(_Ramp(), _ramps(labels), num_classes=5)
                                  .probs)
    torch.manual_seed(0)
    tsn = tsn_r50(num_classes=5, num_frames=4, width=16, layers=(1, 1, 1, 1)).eval()
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.integers(0, 256, (7, 1, 4, 3, 32, 32), dtype=np.uint8))
    batches = [EvalBatch([f"v{i}" for i in range(7)], torch.tensor(labels), noise)]
    ahead, behind = predict_with_reversal(tsn, batches, num_classes=5)
    assert ahead.probs.argmax(1).tolist() == behind.probs.argmax(1).tolist()
    assert reversal_probe(ahead, behind, TWINS)["reversal_flip"] == 0.0


def test_probe_where_the_platform_evaluates(trained):
    """An export's evaluation, the training run's validation and the ops engine's MLflow run."""
    from pipelines.evaluation.exported import evaluate_export
    from pipelines.ops.evaluate import EvalSettings, EvaluateConfig, evaluate_model
    from pipelines.ops.store import StoreSettings, open_store

    shards = str(trained["shards"])
    for model in ("tsi", "tsn"):
        result = evaluate_export(trained[model].export_path, shards, "val")
        assert result.reversal["reversal_videos"] == 24.0
        assert result.reversal["reversal_flip"] == pytest.approx(
            trained[model].metrics["val_reversal_flip"])
    assert result.reversal["reversal_flip"] == 0.0  # TSN: order-blind
    settings = StoreSettings(storage=str(trained["storage"]))
    scored = evaluate_model(EvaluateConfig(model=trained["tsn"].export_path, store=settings,
                                           eval=EvalSettings(data=shards, split="val", parts=2)))
    assert scored.reversal == pytest.approx(result.reversal)  # the last one: TSN's
    _, client = open_store(settings)
    logged = client.get_run(scored.run_id).data.metrics
    assert {k: logged[k] for k in scored.reversal} == pytest.approx(scored.reversal)
