"""Every measured figure in the docs comes from ``benchmarks/results/*.json`` through this script.

    python -m benchmarks.render_docs           # rewrite the generated parts of README.md, docs/*.md
    python -m benchmarks.render_docs --check   # exit 1 and list each figure that differs

Hand-copied figures drift (the README once said 2.93 where the results said 2.97), so a doc
never types a measured number. It uses one of two markers, which Markdown does not display:

- a block: ``<!-- generated:NAME -->`` … ``<!-- /generated -->``; :data:`BLOCKS` ``[NAME]``
  renders its content (a table, with the load the machine was under) from the results;
- one figure inline: ``<!-- fig:FILE#PATH|FORMAT -->VALUE<!-- /fig -->``. ``FILE`` is
  ``benchmarks/results/FILE.json``; ``PATH`` is dotted keys into it, where ``rows[model=tsi_r50&
  frames=8]`` picks the list element with those fields and ``startup_s[0]`` an index, or
  ``=NAME`` for a figure :data:`DERIVED` computes from that file (a ratio, a range over seeds);
  ``FORMAT`` is a Python format spec (``.3f``, ``+.1%``), applied to each end of a range.

``tests/unit/test_doc_figures.py`` runs :func:`check` on every doc, so a changed result file or a
hand-edited figure fails the fast test suite until this script is re-run. Only the standard
library is imported: the check needs no torch, Ray or MLflow.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

BLOCK_RE = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)",
                      re.S)
FIG_RE = re.compile(r"<!-- fig:(?P<file>[\w-]+)#(?P<path>[^|>]+?)(?:\|(?P<fmt>[^ >]*))? -->"
                    r"(?P<value>.*?)<!-- /fig -->")
SELECT_RE = re.compile(r"^(?P<key>[^\[]+)(?:\[(?P<sel>[^\]]+)\])?$")


def doc_files(repo: Path = REPO) -> list[Path]:
    """The documents whose figures are checked: both READMEs and every page under docs/."""
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md")), repo / "infra" / "README.md"]


@lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"no results file {path.relative_to(REPO)}")
    return json.loads(path.read_text())


def lookup(data: Any, path: str) -> Any:
    """``rows[model=tsi_r50&frames=8].gmacs`` → that row's value; ``a.b[0]`` → an index."""
    for part in path.split("."):
        match = SELECT_RE.match(part)
        if not match:
            raise KeyError(f"bad path element {part!r}")
        data = data[match["key"]]
        sel = match["sel"]
        if sel is None:
            continue
        if sel.lstrip("-").isdigit():
            data = data[int(sel)]
            continue
        wanted = dict(item.split("=", 1) for item in sel.split("&"))
        hits = [row for row in data if all(str(row.get(k)) == v for k, v in wanted.items())]
        if len(hits) != 1:
            raise KeyError(f"{sel!r} selects {len(hits)} rows, not one")
        data = hits[0]
    return data


def fmt(value: Any, spec: str | None) -> str:
    """One figure as the doc shows it; a ``(low, high)`` range as ``low–high``."""
    if isinstance(value, tuple):
        return "–".join(fmt(v, spec) for v in value)
    if spec is None or value is None or isinstance(value, str):
        return "-" if value is None else str(value)
    text = format(value, spec)
    return text.replace("-", "−") if text.startswith("-") else text


def _rng(values: list[float]) -> tuple[float, float]:
    return (min(values), max(values))


def _ablation_runs(variant: str, key: str) -> list[float]:
    return [r[key] for r in sorted(load("ablation")["runs"], key=lambda r: r["seed"])
            if r["variant"] == variant]


def _model_ratio_range(key: str, models: tuple[str, ...]) -> tuple[float, float]:
    return _rng([r[key] for r in load("model")["rows"] if r["model"] in models])


# Figures computed from one results file, cited as ``FILE#=NAME``.
DERIVED: dict[str, dict[str, Callable[[], Any]]] = {
    "ablation": {
        "tsi_top1_range": lambda: _rng(_ablation_runs("tsi_r50", "top1")),
        "tsn_top1_range": lambda: _rng(_ablation_runs("tsn_r50", "top1")),
        "tsi_within_pair_range": lambda: _rng(_ablation_runs("tsi_r50", "within_pair")),
        "tsn_within_pair_range": lambda: _rng(_ablation_runs("tsn_r50", "within_pair")),
        "seeds": lambda: ", ".join(str(s) for s in load("ablation")["settings"]["seeds"]),
        "temporal_within_pair_range": lambda: _rng([
            statistics.mean(_ablation_runs(v, "within_pair"))
            for v in load("ablation")["settings"]["variants"] if v != "tsn_r50"]),
        "max_top1_std": lambda: max(statistics.stdev(_ablation_runs(v, "top1"))
                                    for v in load("ablation")["settings"]["variants"]),
    },
    "model": {
        "tsi_throughput_range": lambda: _rng(
            [r[k] for r in load("model")["rows"] if r["model"] == "tsi_r50"
             for k in ("throughput_vs_tsn", "latency_speed_vs_tsn")]),
        "fast_throughput_range": lambda: _model_ratio_range("throughput_vs_tsn",
                                                            ("tsi_r50_fast_align",)),
        "tsi_gmacs_range": lambda: _model_ratio_range("gmacs_vs_tsn", ("tsi_r50",)),
        "tsi_memory_range": lambda: _model_ratio_range("memory_vs_tsn", ("tsi_r50",)),
    },
    "train_step": {
        "startup_range": lambda: _rng(load("train_step")["startup_s"]
                                      + load("train_step_width32")["startup_s"]),
        "startup_median": lambda: statistics.median(load("train_step")["startup_s"]),
        "ray_step_extra_ms": lambda: 1000 * (
            lookup(load("train_step"), "rows[measure=ray+deepspeed ZeRO-2, 1 worker]")
            ["median s/step"]
            - lookup(load("train_step"), "rows[measure=plain loop, tsi_r50]")["median s/step"]),
    },
    "train_step_width32": {
        "startup_median": lambda: statistics.median(load("train_step_width32")["startup_s"]),
    },
    "preprocess": {
        "floor_videos_per_s": lambda: 1 / load("preprocess")["floor_jpeg"]["s_per_video"],
        "floor_h264_videos_per_s": lambda: 1 / load("preprocess")["floor_h264"]["s_per_video"],
        "peak_rss_8k_mb": lambda: (load("preprocess")["worker_peak_rss_mb"] + load(
            "preprocess")["ffmpeg_peak_rss_mb_by_input"]["7680x4320"]),
    },
    "main_job": {
        "total_min": lambda: load("main_job")["first_run"]["total_s"] / 60,
        "second_total_min": lambda: load("main_job")["second_run"]["total_s"] / 60,
        "tsi_train_min": lambda: load("main_job")["first_run"]["seconds"]["train tsi_r50"] / 60,
        "tsn_train_min": lambda: load("main_job")["first_run"]["seconds"]["train tsn_r50"] / 60,
    },
    "loader": {
        # Kinetics-400 training reads 240k clips x 50 epochs, at the 2-worker rate per CPU second
        "kinetics_core_hours": lambda: 240_000 * 50 / load("loader")["rows"][3]["clips/cpu-s"]
        / 3600,
    },
    "media_modes": {
        "h264_read_slower": lambda: load("media_modes")["h264_read_time_vs_jpeg"],
    },
}


def figure(file: str, path: str) -> Any:
    if path.startswith("="):
        try:
            return DERIVED[file][path[1:]]()
        except KeyError as exc:
            raise KeyError(f"no derived figure {file}#{path}") from exc
    return lookup(load(file), path)


# ---- tables -------------------------------------------------------------------------------------

def _table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _load_note(payload: dict[str, Any]) -> str:
    before = payload["machine_before"]
    b, a = before["loadavg_1_5_15"], payload["machine_after"]["loadavg_1_5_15"]
    return (f"{before['time_utc']}, {before['cpus']} cores; load average (1/5/15 min) "
            f"{b[0]:.1f}/{b[1]:.1f}/{b[2]:.1f} before, {a[0]:.1f}/{a[1]:.1f}/{a[2]:.1f} after.")


def loader_table(payload: dict[str, Any]) -> str:
    """The loader result's rows with the load (also ``python -m benchmarks.loader --markdown``)."""
    columns = ["measurement", "clips/s", "clips/cpu-s", "vs floor (cpu)", "vs floor (wall)",
               "first batch s"]

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    table = _table(columns, [[cell(row[c]) for c in columns] for row in payload["rows"]])
    rounds = ", ".join(f"{r['load_1min']:.1f}" for r in payload["rounds"])
    return (f"{table}\n\n{_load_note(payload)[:-1]}; 1-min load at each round's start: {rounds}. "
            f"Medians over {len(payload['rounds'])} interleaved rounds; ratios are per round, "
            "then the median.")


def model_table() -> str:
    payload = load("model")
    rows = []
    for r in payload["rows"]:
        bold = r["model"] == "tsi_r50"
        name = f"**{r['model']}** (faithful)" if bold else r["model"]
        ratio = (lambda v: f"**{v:.3f}**") if bold else (lambda v: f"{v:.3f}")
        rows.append([name, str(r["frames"]), f"{r['params_m']:.2f}", f"{r['gmacs']:.2f}",
                     ratio(r["gmacs_vs_tsn"]), ratio(r["throughput_vs_tsn"]),
                     f"{r['latency_b1_ms']:.0f}", ratio(r["latency_speed_vs_tsn"]),
                     ratio(r["memory_vs_tsn"])])
    columns = ["model", "frames", "params (M)", "GMACs", "GMACs / TSN",
               "throughput / TSN (batch 8)", "batch-1 ms", "batch-1 speed / TSN", "memory / TSN"]
    return f"{_table(columns, rows)}\n\n{_load_note(payload)}"


def preprocess_table() -> str:
    p = load("preprocess")
    k = p["kinetics400"]
    floor = DERIVED["preprocess"]
    wall = k["wall_hours_by_nodes"]
    rows = [
        ["floor: the job's ffprobe + ffmpeg commands in a plain loop",
         f"{floor['floor_videos_per_s']():.2f} videos/s/core "
         f"(H.264 mode {floor['floor_h264_videos_per_s']():.2f})", "—"],
        ["Ray job, 1 worker", f"{p['ray_1_worker']['videos_per_s']:.2f} videos/s: "
         f"**{p['overhead_vs_floor']:+.1%}** over the floor", "≤ 10%"],
        ["Ray job, 2 workers", f"{p['ray_2_workers']['videos_per_s']:.2f} videos/s: "
         f"**{p['scaling_1_to_2']:.2f}x**", "≥ 1.8x"],
        ["worker peak RSS", f"{p['worker_peak_rss_mb']:.0f} MB for the Ray task process, plus "
         "ffmpeg's peak of " + ", ".join(
             f"{mb:.0f} MB at {res}" for res, mb in
             [("360p", p["ray_1_worker"]["ffmpeg_peak_rss_mb"]),
              *[(("4K" if r.startswith("3840") else "8K"), v)
                for r, v in p["ffmpeg_peak_rss_mb_by_input"].items()]]),
         f"**{floor['peak_rss_8k_mb']():.0f} MB** < 1 GB"],
        [f"Kinetics-400, {k['videos'] // 1000}k clips", f"**{k['core_hours']:.0f} core-hours**: "
         f"{wall['1']:.2f} h on 1 node of {k['cores_per_node']} cores, {wall['8']:.2f} h on 8 "
         "nodes", "—"],
    ]
    m = p["machine"]
    note = (f"{m['time_utc']}, {m['cpus']} cores, Ray {m['ray']}; load average (1 min) "
            f"{m['loadavg_before'][0]:.1f} before, {m['loadavg_after'][0]:.1f} after.")
    return f"{_table(['measure', 'result', 'target'], rows)}\n\n{note}"


def train_step_table() -> str:
    rows = []
    for name, label in (("train_step", "width 16, 1-1-1-1, 64² (the demo)"),
                        ("train_step_width32", "width 32, 1-1-1-1, 96²")):
        t = load(name)
        step = {r["measure"]: r for r in t["rows"]}
        rows.append([label, f"{step['plain loop, tsi_r50']['median s/step']:.3f}",
                     f"{step['ray+deepspeed ZeRO-2, 1 worker']['median s/step']:.3f}",
                     f"**{t['overhead']:+.1%}**", f"{statistics.median(t['startup_s']):.1f} s",
                     f"{step['plain loop, tsn_r50']['ratio']:.3f}",
                     f"{step['ray+deepspeed ZeRO-2, 2 workers (both)']['ratio']:.2f}x",
                     f"`{name}.json`"])
    columns = ["model size", "plain loop s/step", "Ray Train + DeepSpeed ZeRO-2, 1 worker",
               "overhead", "start-up (median)", "TSI/TSN training throughput", "1 → 2 workers",
               "results"]
    notes = " ".join(f"`{n}`: {_load_note(load(n))}" for n in ("train_step", "train_step_width32"))
    return f"{_table(columns, rows)}\n\n{notes}"


def ablation_table() -> str:
    payload = load("ablation")
    rows = []
    for variant in payload["settings"]["variants"]:
        top1 = _ablation_runs(variant, "top1")

        def ms(key: str) -> str:
            vals = _ablation_runs(variant, key)
            return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}"

        rows.append([f"`{variant}`", ", ".join(f"{v:.3f}" for v in top1), ms("top1"),
                     ms("within_pair"), ms("reversal")])
    seeds = ", ".join(str(s) for s in payload["settings"]["seeds"])
    columns = ["variant", f"top-1 (seeds {seeds})", "top-1 mean ± std", "within pair",
               "reversal"]
    return f"{_table(columns, rows)}\n\n{_load_note(payload)}"


def alignment_table() -> str:
    rows = []
    for name in ("alignment_accuracy_easy", "alignment_accuracy"):
        p = load(name)
        s = p["settings"]
        clean = s.get("distractors") == 0 and not s.get("pan")
        label = (f"{s['steps']} steps, batch {s['batch']}, lr {s['lr']}, "
                 f"{'no distractors or pan' if clean else 'distractors and camera pan'}, "
                 f"{len(s['seeds'])} seeds (`{name}.json`)")
        by = {r["model"]: r for r in p["summary"]}
        cells = [f"{by[m]['mean_val_acc']:.3f} ± {by[m]['stdev']:.3f}"
                 for m in ("tsn_r50", "tsi_r50", "tsi_r50_fast_align")]
        rows.append([label, *cells, f"{p['summary'][0]['chance']:.3f}"])
    return _table(["run", "TSN", "TSI faithful", "TSI fast alignment", "chance"], rows)


def predict_table() -> str:
    p = load("predict")
    s = p["settings"]
    rows = [[f"{r['videos']} (round {r['round']})", f"{s['decode_cpus']:g} / {s['actor_cpus']:g}",
             f"{r['loop_videos_per_s']:.2f}", f"{r['ray_videos_per_s']:.2f}",
             f"**{r['ray_over_loop']:.2f}**", "yes" if r["top1_agree"] else "**no**"]
            for r in p["rounds"]]
    columns = ["videos", "decode task / actor CPUs", "plain loop videos/s", "Ray Data videos/s",
               "Ray / loop", "top-1 labels agree"]
    return f"{_table(columns, rows)}\n\n{_load_note(p)}"


def media_modes_table() -> str:
    p = load("media_modes")
    rows = [[mode, f"{p[mode]['mb_per_video']:.2f}", f"{p[mode]['prep_s_per_video']:.2f}",
             f"{p[mode]['ms_per_8_frame_clip']:.1f}", f"{p[mode]['clips_per_s_one_core']:.0f}"]
            for mode in ("jpeg", "h264")]
    columns = ["`media.mode`", "MB/video", "prep s/video", "ms per 8-frame clip",
               "clips/s on one core"]
    note = (f"{p['videos']} videos of {p['seconds']:g} s at {p['size']}, stored {p['stored']}; "
            f"{p['rounds']} rounds, {p['cpu_count']} cores, load average {p['load_avg']:.1f}.")
    return f"{_table(columns, rows)}\n\n{note}"


def main_job_summary() -> str:
    return "```\n" + "\n".join(load("main_job")["console_run"]["summary_excerpt"]) + "\n```"


def main_job_targets() -> str:
    p = load("main_job")
    t, run = p["targets"], p["first_run"]
    tsi, tsn = run["models"]["tsi_r50"], run["models"]["tsn_r50"]
    low, high = t["tsn_within_pair"]
    checks = [
        (f"TSI top-1 ≥ {t['tsi_top1_min']:.2f}", f"{tsi['top1']:.3f}",
         tsi["top1"] >= t["tsi_top1_min"]),
        (f"TSN top-1 ≤ {t['tsn_top1_max']:.2f}", f"{tsn['top1']:.3f}",
         tsn["top1"] <= t["tsn_top1_max"]),
        (f"TSN within pair {low:.2f}–{high:.2f}", f"{tsn['within_pair']:.3f}",
         low <= tsn["within_pair"] <= high),
        (f"main command ≤ {t['total_minutes_max']} min after set-up",
         f"{run['total_s'] / 60:.1f} min", run["total_s"] <= 60 * t["total_minutes_max"]),
        (f"TSI training ≤ {t['tsi_train_minutes_max']} min (start-up and export included)",
         f"{run['seconds']['train tsi_r50'] / 60:.1f} min",
         run["seconds"]["train tsi_r50"] <= 60 * t["tsi_train_minutes_max"]),
        (f"TSN training ≤ {t['tsn_train_minutes_max']} min (start-up and export included)",
         f"{run['seconds']['train tsn_r50'] / 60:.1f} min",
         run["seconds"]["train tsn_r50"] <= 60 * t["tsn_train_minutes_max"]),
    ]
    return _table(["target", "first run (seed 0)", "met"],
                  [[name, got, "yes" if ok else "**no**"] for name, got, ok in checks])


BLOCKS: dict[str, Callable[[], str]] = {
    "model": model_table,
    "preprocess": preprocess_table,
    "loader-before": lambda: loader_table(load("loader_before")),
    "loader": lambda: loader_table(load("loader")),
    "train-step": train_step_table,
    "ablation": ablation_table,
    "alignment-accuracy": alignment_table,
    "predict": predict_table,
    "media-modes": media_modes_table,
    "main-job-summary": main_job_summary,
    "main-job-targets": main_job_targets,
}


# ---- figures typed by hand ---------------------------------------------------------------------

NUMBER_RE = re.compile(r"(?<![\w.\-/])(\d+\.\d{2,})(?![\w.])")
# Numbers in the docs that equal a result's value at their precision but are not that figure:
# {doc: {number: why}}. Everything else that matches a result must be a marker.
NOT_FIGURES: dict[str, dict[str, str]] = {
    "README.md": {"0.125": "chance for 8 classes"},
    "docs/registry-and-operations.md": {"0.125": "an exact test's p-value in an example"},
    "docs/model.md": {"1.71": "a test's worst bf16 error, not a benchmark"},
    "infra/README.md": {"1.33": "the Kubernetes version"},
    "docs/benchmarks.md": {v: "earlier batch-prediction rounds, kept in no results file"
                           for v in ("2.15", "2.78", "2.28", "1.66", "2.19")},
}


def _result_values() -> set[float]:
    """Every float in the results and every derived figure, except long series (per-step times),
    which would match any number."""
    found: set[float] = set()

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list) and len(x) <= 10:
            for v in x:
                walk(v)
        elif isinstance(x, float):
            found.add(x)

    for path in sorted(RESULTS.glob("*.json")):
        walk(json.loads(path.read_text()))
    for figures in DERIVED.values():
        for compute in figures.values():
            value = compute()
            walk(list(value) if isinstance(value, tuple) else value)
    return found


def uncited(text: str, doc: str = "") -> list[str]:
    """Numbers typed outside a marker that equal a result's value: they should be markers.

    A number counts when it has three or more significant digits (``2.97``, ``0.824``, not
    ``0.5``): fewer would match some result by chance.
    """
    values = _result_values()
    allowed = NOT_FIGURES.get(doc, {})
    bare = FIG_RE.sub("", BLOCK_RE.sub("", text))
    problems = []
    for m in NUMBER_RE.finditer(bare):
        number = m.group(1)
        digits = len(number.split(".")[1])
        if (float(number) < 1 and digits < 3) or number in allowed:
            continue
        if any(round(v, digits) == float(number) for v in values):
            line = bare[:m.start()].count("\n") + 1
            problems.append(f"line ~{line}: {number} equals a result but is typed by hand: "
                            "cite it with a fig marker")
    return problems


# ---- rendering and checking ---------------------------------------------------------------------

def render(text: str) -> str:
    """``text`` with every generated block and cited figure rewritten from the results."""
    def block(m: re.Match[str]) -> str:
        if m["name"] not in BLOCKS:
            raise KeyError(f"no generated block {m['name']!r} (benchmarks/render_docs.py BLOCKS)")
        return f"{m.group(1)}{BLOCKS[m['name']]()}\n{m.group(4)}"

    def fig(m: re.Match[str]) -> str:
        value = fmt(figure(m["file"], m["path"]), m["fmt"])
        return m.group(0).replace(f"-->{m['value']}<!--", f"-->{value}<!--", 1)

    return FIG_RE.sub(fig, BLOCK_RE.sub(block, text))


def differences(text: str) -> list[str]:
    """One line per block or figure of ``text`` that differs from what the results give."""
    problems = []
    for m in BLOCK_RE.finditer(text):
        want = BLOCKS[m["name"]]() + "\n" if m["name"] in BLOCKS else None
        if want is None:
            problems.append(f"generated:{m['name']}: no such block")
        elif m["body"] != want:
            have_lines, want_lines = m["body"].splitlines(), want.splitlines()
            first = next((i for i, (a, b) in enumerate(zip(have_lines, want_lines)) if a != b),
                         min(len(have_lines), len(want_lines)))
            got = have_lines[first] if first < len(have_lines) else "(missing)"
            exp = want_lines[first] if first < len(want_lines) else "(extra line)"
            problems.append(f"generated:{m['name']} line {first + 1}: doc has {got!r}, "
                            f"the results give {exp!r}")
    for m in FIG_RE.finditer(text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        if not text[line_start:m.start()].strip():
            problems.append(f"fig:{m['file']}#{m['path']}: starts a line, which makes Markdown "
                            "show the line as raw HTML; put a word before it")
        try:
            want = fmt(figure(m["file"], m["path"]), m["fmt"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            problems.append(f"fig:{m['file']}#{m['path']}: {exc}")
            continue
        if m["value"] != want:
            problems.append(f"fig:{m['file']}#{m['path']}: doc has {m['value']!r}, "
                            f"the results give {want!r}")
    return problems


def check(paths: list[Path] | None = None) -> dict[str, list[str]]:
    """``{doc: problems}`` for every doc with a stale generated part or a hand-typed figure."""
    found = {}
    for path in paths or doc_files():
        text = path.read_text(encoding="utf-8")
        problems = differences(text) + uncited(text, str(path.relative_to(REPO)))
        if problems:
            found[str(path.relative_to(REPO))] = problems
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.render_docs",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on drift")
    args = parser.parse_args(argv)
    if args.check:
        found = check()
        for doc, problems in found.items():
            for line in problems:
                print(f"{doc}: {line}")
        return 1 if found else 0
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
