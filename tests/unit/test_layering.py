"""Data flows one way: each sub-package imports only those below it (docs/architecture.md).

Read from the source with ``ast`` (no imports executed), so a new upward import fails here with
the file and the import named, before it becomes a cycle.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# unit -> the units it may import (transitively allowed units are listed explicitly)
ALLOWED: dict[str, set[str]] = {
    "pipelines.config": set(),
    "pipelines.cli": {"pipelines.config", "pipelines.report"},
    "pipelines.report": set(),
    "pipelines.console": set(),
    "pipelines.cluster": set(),
    "pipelines.distributed": set(),
    "pipelines.io": set(),
    "pipelines.media": {"pipelines.io"},
    "pipelines.data": {"pipelines.io", "pipelines.media"},
    "pipelines.shards": {"pipelines.io"},
    "pipelines.synthetic": {"pipelines.config", "pipelines.data"},
    "pipelines.preprocess": {"pipelines.config", "pipelines.cluster", "pipelines.io",
                             "pipelines.media", "pipelines.data", "pipelines.shards"},
    "pipelines.loader": {"pipelines.io", "pipelines.shards", "pipelines.data"},
    "pipelines.evaluation": {"pipelines.distributed", "pipelines.io", "pipelines.data",
                             "pipelines.shards", "pipelines.loader"},
    "pipelines.train": {"pipelines.config", "pipelines.cluster", "pipelines.distributed",
                        "pipelines.io", "pipelines.data",
                        "pipelines.shards", "pipelines.loader", "pipelines.evaluation"},
    "pipelines.tracking": {"pipelines.config", "pipelines.io", "pipelines.media", "pipelines.shards",
                           "pipelines.loader",
                           "pipelines.evaluation", "pipelines.train"},
    "pipelines.ops": {"pipelines.config", "pipelines.cli", "pipelines.report", "pipelines.cluster",
                      "pipelines.io",
                      "pipelines.media", "pipelines.data", "pipelines.shards", "pipelines.loader",
                      "pipelines.evaluation", "pipelines.train", "pipelines.tracking"},
    "pipelines.demo": {"pipelines.config", "pipelines.report", "pipelines.console", "pipelines.data",
                       "pipelines.synthetic",
                       "pipelines.preprocess", "pipelines.train", "pipelines.evaluation",
                       "pipelines.tracking", "pipelines.ops"},
}
FORBIDDEN_IN_MODEL = ("ray", "mlflow", "ffmpeg", "deepspeed", "webdataset", "pipelines", "jobs")


def _unit(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:2])


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def test_pipelines_sub_packages_import_only_layers_below():
    problems = []
    for path in sorted((REPO / "pipelines").rglob("*.py")):
        unit = _unit(path)
        if unit == "pipelines.__init__":
            continue
        assert unit in ALLOWED, f"{unit} is not in the layer table (docs/architecture.md)"
        for name in _imports(path):
            if not name.startswith("pipelines."):
                continue
            target = ".".join(name.split(".")[:2])
            if target != unit and target not in ALLOWED[unit]:
                problems.append(f"{path.relative_to(REPO)} imports {name}")
    assert not problems, "upward or sideways imports:\n" + "\n".join(problems)


def test_model_package_stays_pure_pytorch():
    problems = [f"{p.relative_to(REPO)} imports {n}"
                for p in sorted((REPO / "tsi_model").rglob("*.py"))
                for n in _imports(p) if n.split(".")[0] in FORBIDDEN_IN_MODEL]
    assert not problems, problems


def test_jobs_never_call_another_jobs_main():
    for path in sorted((REPO / "jobs").glob("*.py")):
        for name in _imports(path):
            assert not name.startswith("jobs."), f"{path.name} imports {name}"


def test_nothing_points_outside_the_repository():
    """A clone has no ``../shared``: docs and comments cite docs/architecture.md instead."""
    pattern = re.compile(r"\.\./shared|NOTES-ENV|(?<![\w/])DESIGN\.md")
    files = [REPO / "README.md", REPO / "pyproject.toml"]
    for folder in ("pipelines", "jobs", "tsi_model", "benchmarks", "infra", "scripts", "docs",
                   "tests", ".ci"):
        files += [p for p in (REPO / folder).rglob("*") if p.is_file()
                  and p.suffix in (".py", ".md", ".sh", ".yaml", ".yml", "", ".toml")]
    hits = [str(p.relative_to(REPO)) for p in files
            if p.name != Path(__file__).name and pattern.search(p.read_text(errors="ignore"))]
    assert not hits, hits


def test_the_preprocessing_doc_documents_every_reason_and_exit_status():
    from jobs import preprocess
    from pipelines.preprocess.reasons import ALL_REASONS

    readme = (REPO / "docs" / "preprocessing.md").read_text()
    table = re.findall(r"^\s*\| `([a-z_]+)` \| (?:reader|media|job)", readme, flags=re.M)
    assert sorted(table) == sorted(ALL_REASONS), set(table) ^ set(ALL_REASONS)
    for code in (preprocess.EXIT_OK, preprocess.EXIT_SHARD_FAILED, preprocess.EXIT_BAD_INPUT,
                 preprocess.EXIT_NOTHING_STORED, preprocess.EXIT_LOCKED):
        assert re.search(rf"^\| {code} \|", readme, flags=re.M), code


def _module_graph(package: str) -> dict[str, set[str]]:
    """Module → the modules of ``package`` it imports (``from pkg import sub`` is ``pkg.sub``)."""
    files = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (REPO / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                subs = {f"{node.module}.{a.name}" for a in node.names} & files.keys()
                deps |= subs or ({node.module} & files.keys())
        graph[name] = deps - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep, path + [dep])):
                return found
        state[node] = 2
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n, [n]))), None)


def test_no_module_imports_one_that_imports_it_back():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    for package in ("pipelines", "tsi_model"):
        cycle = _cycle(_module_graph(package))
        assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_layer_table_in_the_docs_is_the_one_enforced_here():
    """docs/architecture.md's layer table states exactly ALLOWED (one fact, written once)."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    stated: dict[str, set[str]] = {}
    for package, may in re.findall(r"^\| (?:\d+|top) \| (.+) \| (.+) \|$", doc, flags=re.M):
        names = {n.split()[0] for n in may.split(",") if n.strip() not in ("—", "anything")}
        for unit in re.findall(r"`pipelines/(\w+)(?:\.py|/)`", package):
            stated[f"pipelines.{unit}"] = {f"pipelines.{n}" for n in names if n != "tsi_model"}
    assert stated == ALLOWED, {u: stated.get(u, set()) ^ ALLOWED.get(u, set())
                               for u in set(stated) | set(ALLOWED)
                               if stated.get(u) != ALLOWED.get(u)}
