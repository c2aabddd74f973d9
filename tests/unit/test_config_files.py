"""Config inheritance (``_base_``) and the shipped config files.

Every runnable file under jobs/configs must resolve to exactly the mapping recorded in
tests/fixtures/configs_resolved.json: the fully written forms the files had before they were
rewritten on top of bases, so the move could not change a setting. A deliberate change of a
setting updates that fixture in the same commit (``python tests/unit/test_config_files.py --update``),
where the diff shows it.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pipelines.config import (CONFIGS_ROOT, ConfigError, load_config, read_config_tree,
                              runnable_configs)
from pipelines.train.config import TrainConfig

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "configs_resolved.json"


def _resolved_shipped_configs() -> dict[str, dict]:
    return {p.relative_to(CONFIGS_ROOT).as_posix(): read_config_tree(p)
            for p in runnable_configs(CONFIGS_ROOT)}


def test_every_shipped_config_resolves_to_its_fully_written_form():
    expected = json.loads(FIXTURE.read_text())
    resolved = _resolved_shipped_configs()
    assert sorted(resolved) == sorted(expected)  # no runnable config appeared or vanished
    for name, tree in resolved.items():
        assert tree == expected[name], name


def test_bases_are_left_out_of_runnable_configs_and_refused_as_a_job_config():
    bases = [p for p in CONFIGS_ROOT.rglob("*.yaml") if "_base_" in p.parts]
    assert bases and not set(bases) & set(runnable_configs(CONFIGS_ROOT))
    with pytest.raises(ConfigError, match="is a base config"):
        load_config(TrainConfig, CONFIGS_ROOT / "train/_base_/paper.yaml")


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_bases_merge_in_order_recursively_and_the_file_wins(tmp_path):
    _write(tmp_path, "_base_/root.yaml", "epochs: 3\nseed: 1\noptim: {lr: 0.5, momentum: 0.8}\n")
    _write(tmp_path, "_base_/a.yaml", "_base_: root.yaml\nseed: 2\noptim: {lr: 0.4}\n")
    _write(tmp_path, "_base_/b.yaml", "seed: 3\ndata: {batch_size: 5}\n")
    top = _write(tmp_path, "run.yaml", "_base_: [_base_/a.yaml, _base_/b.yaml]\noptim: {lr: 0.2}\n")
    assert read_config_tree(top) == {"epochs": 3, "seed": 3, "optim": {"lr": 0.2, "momentum": 0.8},
                                     "data": {"batch_size": 5}}
    cfg = load_config(TrainConfig, top, ["optim.momentum=0.7"])
    assert (cfg.epochs, cfg.seed, cfg.optim.lr, cfg.optim.momentum, cfg.data.batch_size) == (
        3, 3, 0.2, 0.7, 5)


def test_a_cycle_is_refused(tmp_path):
    _write(tmp_path, "a.yaml", "_base_: b.yaml\nseed: 1\n")
    _write(tmp_path, "b.yaml", "_base_: [c.yaml]\n")
    _write(tmp_path, "c.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*c\.yaml -> .*a\.yaml"):
        load_config(TrainConfig, tmp_path / "a.yaml")
    _write(tmp_path, "self.yaml", "_base_: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(TrainConfig, tmp_path / "self.yaml")


def test_a_base_cannot_leave_the_shipped_tree_or_the_given_files_folder(tmp_path):
    outside = _write(tmp_path, "elsewhere/secret.yaml", "seed: 9\n")
    mine = tmp_path / "mine"
    # a base beside the given file, and a shipped base, may be used from a file outside the tree
    _write(mine, "_base_/local.yaml", "seed: 4\n")
    ok = _write(mine, "run.yaml", f"_base_: [{CONFIGS_ROOT}/train/_base_/paper.yaml, _base_/local.yaml]\n")
    assert load_config(TrainConfig, ok).seed == 4 and load_config(TrainConfig, ok).model.width == 64
    for base in (str(outside), "../elsewhere/secret.yaml"):
        bad = _write(mine, "bad.yaml", f"_base_: {base}\n")
        with pytest.raises(ConfigError, match="outside"):
            load_config(TrainConfig, bad)
    os.symlink(outside, mine / "link.yaml")  # a symlink beside the file that points away from it
    bad = _write(mine, "linked.yaml", "_base_: link.yaml\n")
    with pytest.raises(ConfigError, match="resolves to .*secret.yaml, outside"):
        load_config(TrainConfig, bad)


@pytest.mark.parametrize("value", ["[a.yaml, 3]", "{x: 1}", "''"])
def test_base_must_name_paths(tmp_path, value):
    with pytest.raises(ConfigError, match="_base_ must be a path or a list of paths"):
        load_config(TrainConfig, _write(tmp_path, "c.yaml", f"_base_: {value}\n"))


# ------------------------------------------- checks that must hold through _base_ merges
def test_unknown_builder_options_are_refused_from_a_base_an_override_or_the_job(tmp_path, capsys):
    from jobs.train import main

    _write(tmp_path, "_base_/opts.yaml", "model: {name: tsi_r50, options: {fusion: sum, bogus: 1}}\n")
    top = _write(tmp_path, "run.yaml", "_base_: _base_/opts.yaml\n")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['bogus'\] for tsi_r50"):
        load_config(TrainConfig, top)
    with pytest.raises(ConfigError, match=r"\['shift_div'\] for tsn_r50"):
        load_config(TrainConfig, None, ["model.name=tsn_r50", "model.options.shift_div=4"])
    assert main(["model.options.bogus=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bogus" in err[0] and "TypeError" not in err[0], err


def test_a_key_given_twice_is_refused_in_the_file_and_in_its_bases(tmp_path):
    _write(tmp_path, "_base_/dup.yaml", "optim:\n  lr: 0.1\n  momentum: 0.8\n  lr: 0.2\n")
    top = _write(tmp_path, "run.yaml", "_base_: _base_/dup.yaml\nseed: 1\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: duplicate key 'lr' at line 4 \(first at line 2\)"):
        load_config(TrainConfig, top)
    flow = _write(tmp_path, "flow.yaml", "data: {batch_size: 2, batch_size: 3}\n")
    with pytest.raises(ConfigError, match="duplicate key 'batch_size'"):
        load_config(TrainConfig, flow)
    anchors = _write(tmp_path, "anchors.yaml",  # a merge key refined by later keys is no duplicate
                     "x: &o {lr: 0.1, momentum: 0.8}\noptim:\n  <<: *o\n  lr: 0.3\n")
    assert read_config_tree(anchors)["optim"] == {"lr": 0.3, "momentum": 0.8}
    with pytest.raises(ConfigError, match="duplicate key"):
        load_config(TrainConfig, None, ["model.options={fusion: sum, fusion: concat}"])


@pytest.mark.parametrize("where, text, overrides", [
    ("base", "optim: {lr: .nan}", []),
    ("base", "model: {options: {reduction: .inf}}", []),  # an Any-typed mapping too
    ("file", "optim: {warmup_epochs: -.inf}", []),
    ("override", "", ["optim.lr=.nan"]),
    ("override", "", ["optim.lr=nan"]),  # a string that float() would turn into NaN
    ("override", "", ["optim.milestones=[10, .inf]"]),
])
def test_non_finite_numbers_are_refused_wherever_they_come_from(tmp_path, where, text, overrides):
    base = _write(tmp_path, "_base_/b.yaml", text if where == "base" else "seed: 0\n")
    del base
    top = _write(tmp_path, "run.yaml", "_base_: _base_/b.yaml\n" + (text if where == "file" else ""))
    with pytest.raises(ConfigError, match="not a finite number"):
        load_config(TrainConfig, top, overrides)


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    FIXTURE.write_text(json.dumps(_resolved_shipped_configs(), indent=1, sort_keys=True) + "\n")
