"""Every relative link in the README and docs/ reaches a file, and its #anchor a heading there.

The README links to one page per job and the pages link to each other instead of repeating
facts, so a moved section must not leave a link behind. Standard library only, no subprocess.
"""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "infra" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text()), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n, base = 0, slug
        while slug in found:
            n += 1
            slug = f"{base}-{n}"
        found.add(slug)
    return found


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{path.relative_to(REPO)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    return problems


def test_every_relative_link_and_anchor_resolves():
    problems = [p for doc in DOCS for p in broken_links(doc)]
    assert not problems, "\n".join(problems)


def test_the_checker_sees_a_broken_anchor(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("# A page\n\n## Set-up: `scripts/setup.sh`\n\n[ok](#set-up-scriptssetupsh) "
                    "[bad](#set-up) [gone](b.md)\n")
    assert [p.split(": ", 1)[1] for p in _relative(broken_links, page, tmp_path)] == [
        "#set-up (no such heading)", "b.md (no such file)"]


def _relative(check, page: Path, root: Path) -> list[str]:
    global REPO
    saved, REPO = REPO, root
    try:
        return check(page)
    finally:
        REPO = saved


def test_every_job_is_in_the_layer_table_and_the_config_table():
    jobs = {p.stem for p in (REPO / "jobs").glob("*.py") if p.stem != "__init__"}
    architecture = (REPO / "docs" / "architecture.md").read_text()
    [listed] = re.findall(r"^\| top \| `jobs/`.*\| anything \|$", architecture, flags=re.M)
    configuration = (REPO / "docs" / "configuration.md").read_text()
    missing = {f"{j} (architecture.md)" for j in jobs if f"`{j}`" not in listed}
    missing |= {f"{j} (configuration.md)" for j in jobs
                if f"| `python -m jobs.{j}` |" not in configuration}
    assert not missing, sorted(missing)
