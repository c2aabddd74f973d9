"""The docs' measured figures are the results files' figures (benchmarks/render_docs.py).

Fast and standard-library only: no Ray, MLflow, torch or subprocess.
"""
from __future__ import annotations

import json
import re
import shutil

import pytest

from benchmarks import render_docs

DOCS = render_docs.doc_files()


@pytest.fixture
def results_copy(tmp_path, monkeypatch):
    """A private copy of benchmarks/results that a test may change."""
    folder = tmp_path / "results"
    shutil.copytree(render_docs.RESULTS, folder)
    monkeypatch.setattr(render_docs, "RESULTS", folder)
    render_docs.load.cache_clear()
    yield folder
    render_docs.load.cache_clear()


def test_every_doc_shows_what_its_results_give():
    found = render_docs.check()
    assert not found, ("docs differ from benchmarks/results (run `python -m "
                       f"benchmarks.render_docs`): {json.dumps(found, indent=1)}")


def test_the_docs_use_generated_figures():
    """Benchmarks' tables and the README's accuracy claim are generated, not typed."""
    text = {str(p.relative_to(render_docs.REPO)): p.read_text() for p in DOCS}
    blocks = set(re.findall(r"<!-- generated:([\w-]+) -->", "".join(text.values())))
    assert blocks == set(render_docs.BLOCKS), set(render_docs.BLOCKS) ^ blocks
    readme = text["README.md"]
    for key in ("ablation#=tsi_top1_range", "ablation#=tsn_top1_range"):
        assert f"<!-- fig:{key}|" in readme, f"README's accuracy claim does not cite {key}"


def test_a_hand_edited_figure_is_caught():
    text = (render_docs.REPO / "docs" / "benchmarks.md").read_text()
    assert not render_docs.differences(text)
    # the README once said 2.93 where benchmarks/results/preprocess.json gives 2.97
    in_table = text.replace("| 2.97 videos/s/core", "| 2.93 videos/s/core", 1)
    assert in_table != text
    [problem] = render_docs.differences(in_table)
    assert "generated:preprocess" in problem and "2.93" in problem and "2.97" in problem
    inline = re.sub(r"(<!-- fig:preprocess#ray_2_workers\.cpu_s_per_video\|\.2f -->)[^<]*",
                    r"\g<1>0.30", text, count=1)
    assert inline != text
    [problem] = render_docs.differences(inline)
    assert "'0.30'" in problem and "'0.34'" in problem


def test_a_changed_result_is_caught(results_copy):
    path = results_copy / "preprocess.json"
    payload = json.loads(path.read_text())
    payload["ray_2_workers"]["videos_per_s"] = 4.4
    payload["ray_2_workers"]["cpu_s_per_video"] = 0.41
    path.write_text(json.dumps(payload))
    problems = render_docs.check([render_docs.REPO / "docs" / "benchmarks.md"])
    [lines] = problems.values()
    assert any("generated:preprocess" in line and "4.40 videos/s" in line for line in lines)
    assert any("cpu_s_per_video" in line and "'0.41'" in line for line in lines)


def test_rendering_rewrites_only_what_differs():
    text = ("a <!-- fig:ablation#runs[variant=tsi_r50&seed=2].top1|.3f -->0.9<!-- /fig --> b\n"
            "<!-- generated:predict -->\nstale\n<!-- /generated -->\nc")
    once = render_docs.render(text)
    assert "-->0.574<!--" in once and "stale" not in once and once.endswith("-->\nc")
    assert render_docs.render(once) == once and not render_docs.differences(once)


def test_a_marker_that_names_nothing_is_an_error():
    bad = ("x <!-- fig:ablation#runs[variant=nope].top1|.3f -->1<!-- /fig -->"
           "<!-- fig:nofile#x|.1f -->1<!-- /fig --><!-- fig:model#=nothing -->1<!-- /fig -->"
           "<!-- generated:nothing -->\n<!-- /generated -->")
    problems = render_docs.differences(bad)
    assert len(problems) == 4, problems
    assert "selects 0 rows" in problems[1] or "selects 0 rows" in " ".join(problems)


def test_a_hand_typed_copy_of_a_result_is_caught():
    """A measured figure typed into prose (as the docs did before) must become a marker."""
    typed = "The floor is 2.97 videos/s/core and TSI reached 0.824; chance is 0.5, 8 classes."
    problems = render_docs.uncited(typed)
    assert [p.split(": ")[1].split()[0] for p in problems] == ["2.97", "0.824"], problems
    cited = render_docs.render(typed.replace(
        "0.824", "<!-- fig:main_job#first_run.models.tsi_r50.top1|.3f -->?<!-- /fig -->").replace(
        "2.97", "<!-- fig:preprocess#=floor_videos_per_s|.2f -->?<!-- /fig -->"))
    assert not render_docs.uncited(cited) and not render_docs.differences(cited)
    assert "-->2.97<!--" in cited and "-->0.824<!--" in cited
