"""Every job has one shape, through ``pipelines/cli.py`` (read with ``ast``, nothing imported).

A job is a docstring, imports, constants (its ``FLAGS``: flag -> config key), ``parser()``,
``main(argv)`` and the ``__main__`` guard: ``parser`` starts from ``cli.parser`` and adds the
job's flags; ``main`` parses ``argv``, resolves its typed config with the one
``cli.resolve_config``, and hands the call of its library function to ``cli.run``, which maps
errors to the exit status the docstring documents.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
JOBS = sorted(p for p in (REPO / "jobs").glob("*.py") if p.name != "__init__.py")
# argparse outside pipelines/cli.py: the operations jobs' shared flags, and the dataset
# generator's own documented tool (``python -m pipelines.synthetic``, infra/local/README.md)
ARGV_TOOLS = {"pipelines/ops/cli.py", "pipelines/synthetic/__init__.py"}


def _calls(tree: ast.AST) -> set[str]:
    """``cli.parser``, ``cli.run`` …: the dotted names of every call in ``tree``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            names.add(f"{node.func.value.id}.{node.func.attr}")
    return names


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
            and [ast.unparse(s) for s in node.body] == ["sys.exit(main())"] and not node.orelse)


def _shape_problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    problems = []
    if not ast.get_docstring(tree) or "Exit status" not in ast.get_docstring(tree):
        problems.append("no docstring documenting its exit status")
    imports_cli = any(isinstance(n, ast.ImportFrom) and n.module == "pipelines"
                      and any(a.name == "cli" for a in n.names) for n in tree.body)
    if not imports_cli:
        problems.append("does not import the shared module (from pipelines import cli)")
    functions = {}
    for node in tree.body[1:]:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or _is_main_guard(node):
            continue
        if isinstance(node, ast.Assign) and all(isinstance(t, (ast.Name, ast.Tuple))
                                                for t in node.targets):
            continue  # constants: exit codes, flag maps
        if isinstance(node, ast.FunctionDef) and node.name in ("parser", "main"):
            functions[node.name] = node
            continue
        problems.append(f"line {node.lineno}: module-level {type(node).__name__} beyond "
                        "imports, constants, parser(), main() and the __main__ guard")
    if set(functions) != {"parser", "main"}:
        return problems + [f"defines {sorted(functions)}, not parser() and main()"]
    if functions["parser"].args.args or "cli.parser" not in _calls(functions["parser"]):
        problems.append("parser() takes arguments or does not start from cli.parser")
    main = functions["main"]
    if [a.arg for a in main.args.args] != ["argv"]:
        problems.append("main() does not take (argv)")
    missing = {"cli.resolve_config", "cli.run"} - _calls(main)
    if missing:
        problems.append(f"main() does not call {sorted(missing)}")
    if not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "parser"
               for n in ast.walk(main)):
        problems.append("main() does not parse with parser()")
    if "argparse.ArgumentParser" in _calls(tree):
        problems.append("builds its own argparse parser")
    return problems


def test_every_job_has_the_one_shape():
    assert len(JOBS) >= 11
    problems = {p.name: _shape_problems(p) for p in JOBS}
    problems = {name: found for name, found in problems.items() if found}
    assert not problems, problems


def test_there_is_one_resolve_config_and_library_code_parses_no_argv():
    defs, argv = [], []
    for folder in ("pipelines", "jobs", "tsi_model", "benchmarks", "infra", "tests"):
        for path in (REPO / folder).rglob("*.py"):
            rel, text = str(path.relative_to(REPO)), path.read_text(encoding="utf-8")
            if "resolve_config" not in text and "argparse" not in text:
                continue
            tree = ast.parse(text)
            defs += [rel for n in ast.walk(tree)
                     if isinstance(n, ast.FunctionDef) and n.name == "resolve_config"]
            if folder == "pipelines" and rel not in ARGV_TOOLS | {"pipelines/cli.py"}:
                argv += [rel for n in ast.walk(tree) if isinstance(n, ast.Import)
                         and any(a.name == "argparse" for a in n.names)]
    assert defs == ["pipelines/cli.py"], defs
    assert not argv, f"library modules that parse a command line: {argv}"
