"""Weights: torchvision key compatibility, loading 2D files, checkpoints, head replacement."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tsi_model import WeightsError, build_from_checkpoint, get_model, save_checkpoint
from tsi_model.weights import load_weights

FIXTURE = Path(__file__).parents[1] / "fixtures" / "torchvision_resnet50_keys.json"


@pytest.fixture(scope="module")
def torchvision_keys() -> dict[str, list[int]]:
    """Key names and shapes of torchvision's resnet50, generated from torchvision itself."""
    return json.loads(FIXTURE.read_text())["keys"]


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory, torchvision_keys) -> Path:
    """A state dict file in torchvision's layout (names/shapes from the fixture, random values)."""
    gen = torch.Generator().manual_seed(0)
    state = {
        k: (torch.randint(0, 10, shape, generator=gen) if k.endswith("num_batches_tracked")
            else torch.rand(shape, generator=gen) + 0.5)
        for k, shape in torchvision_keys.items()
    }
    path = tmp_path_factory.mktemp("weights") / "resnet50_imagenet.pth"
    torch.save(state, path)
    return path


def test_tsn_state_dict_matches_torchvision_resnet50(torchvision_keys):
    ours = {k: list(v.shape) for k, v in get_model("tsn_r50", num_classes=1000).state_dict().items()}
    assert ours == torchvision_keys


def test_tsi_adds_only_temporal_parameters(torchvision_keys):
    ours = {k: list(v.shape) for k, v in get_model("tsi_r50", num_classes=1000).state_dict().items()}
    extra = set(ours) - set(torchvision_keys)
    assert extra and all(".temporal." in k for k in extra)
    assert {k: ours[k] for k in torchvision_keys} == torchvision_keys


@pytest.mark.parametrize("name", ["tsn_r50", "tsm_r50", "tsi_r50"])
def test_torchvision_file_loads_with_new_head(name, torchvision_file):
    model = get_model(name, num_classes=400, pretrained=str(torchvision_file))
    report = model.load_report
    assert report.kind == "torchvision" and report.head_replaced
    source = torch.load(torchvision_file, weights_only=True)
    state = model.state_dict()
    for key in ("conv1.weight", "layer3.4.conv2.weight", "layer4.2.bn3.running_var"):
        torch.testing.assert_close(state[key], source[key])
    assert state["fc.weight"].shape == (400, 2048)
    assert bool(report.initialised_temporal) == (name == "tsi_r50")


def test_same_head_size_loads_the_classifier(torchvision_file):
    model = get_model("tsn_r50", num_classes=1000, pretrained=str(torchvision_file))
    assert not model.load_report.head_replaced
    torch.testing.assert_close(model.fc.weight, torch.load(torchvision_file, weights_only=True)["fc.weight"])


def test_mismatched_files_fail_with_a_clear_message(torchvision_file, tmp_path):
    with pytest.raises(WeightsError, match="width=64"):
        get_model("tsn_r50", width=16, pretrained=str(torchvision_file))
    state = torch.load(torchvision_file, weights_only=True)
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    del state["layer2.0.conv2.weight"]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(WeightsError, match="unexpected key.*layer5.*missing key.*layer2.0.conv2"):
        get_model("tsi_r50", pretrained=str(bad))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable"):
        get_model("tsn_r50", pretrained=str(tmp_path / "junk.pth"))
    with pytest.raises(FileNotFoundError):
        get_model("tsn_r50", pretrained=str(tmp_path / "absent.pth"))


def test_checkpoint_round_trip_and_head_replacement_for_finetuning(tmp_path):
    kinetics = get_model("tsi_r50", width=16, num_classes=400, num_frames=4).eval()
    path = save_checkpoint(
        kinetics, tmp_path / "k400.pt", model_name=kinetics.builder_name,
        options=kinetics.builder_options, classes=["a", "b"],
    )
    x = torch.randn(2, 4, 3, 32, 32)
    restored = build_from_checkpoint(str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(x), kinetics(x))
    ucf = build_from_checkpoint(str(path), num_classes=101)
    assert ucf.num_classes == 101 and ucf.load_report.head_replaced
    torch.testing.assert_close(ucf.state_dict()["layer2.1.temporal.motion.reduce.weight"],
                               kinetics.state_dict()["layer2.1.temporal.motion.reduce.weight"])
    # a checkpoint's temporal weights are required: a TSN checkpoint does not fit TSI silently
    tsn = get_model("tsn_r50", width=16, num_classes=400)
    tsn_path = save_checkpoint(tsn, tmp_path / "tsn.pt", model_name="tsn_r50", options=tsn.builder_options)
    with pytest.raises(WeightsError, match="missing"):
        load_weights(get_model("tsi_r50", width=16, num_classes=400), tsn_path)


def test_ablation_checkpoint_rebuilds_the_same_variant(tmp_path):
    model = get_model("r50_tim_sme_no_sa", width=16, num_classes=3)
    path = save_checkpoint(model, tmp_path / "m.pt", model_name=model.builder_name, options=model.builder_options)
    rebuilt = build_from_checkpoint(str(path))
    assert rebuilt.builder_name == "r50_tim_sme_no_sa"


@pytest.mark.parametrize("name", ["tsi_r50_res2to5_4blocks", "r50_mta"])
def test_shallow_checkpoint_rebuilds_the_same_depth(name, tmp_path):
    model = get_model(name, width=16, num_classes=3, num_frames=4, layers=(1, 2, 1, 1)).eval()
    path = save_checkpoint(model, tmp_path / "shallow.pt", model_name=name, options=model.builder_options)
    rebuilt = build_from_checkpoint(str(path)).eval()
    assert rebuilt.builder_options["layers"] == (1, 2, 1, 1) and len(rebuilt.layer2) == 2
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    # a shallow checkpoint does not load into the full-depth network
    with pytest.raises(WeightsError, match="missing"):
        load_weights(get_model(name, width=16, num_classes=3), path)
