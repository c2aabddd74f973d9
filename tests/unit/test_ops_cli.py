"""The operations jobs explain themselves and refuse bad input with one line and exit 2."""
from __future__ import annotations

import importlib

import pytest

JOBS = ("evaluate", "promote", "nightly_eval", "predict", "register", "grant_access")


@pytest.mark.parametrize("job", JOBS)
def test_help_explains_the_job_and_its_exit_status(job, capsys):
    module = importlib.import_module(f"jobs.{job}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "Exit status" in out and f"jobs.{job}" in out


@pytest.mark.parametrize("job, argv, says", [
    ("evaluate", ["--storage", "{tmp}"], "no model"),
    ("promote", ["--storage", "{tmp}"], "no task"),
    ("nightly_eval", ["--storage", "{tmp}"], "no task"),
    ("predict", ["--model", "{tmp}/missing.pt", "a.mp4"], "neither a models:/ URI"),
    ("promote", ["--task", "t", "--storage", "{tmp}", "gate.confidence=2"], "confidence"),
    ("evaluate", ["--model", "models:/x", "--storage", "{tmp}"], "models:/NAME@ALIAS"),
    ("nightly_eval", ["--task", "t", "--storage", "{tmp}", "no_such_key=1"], "unknown key"),
])
def test_bad_input_is_one_line_and_exit_2(job, argv, says, tmp_path, capsys):
    module = importlib.import_module(f"jobs.{job}")
    code = module.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert code == 2 and len(errors) == 1 and says in errors[0], errors
