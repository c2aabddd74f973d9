"""What a main job's console must not contain: duplicate lines, colour codes, ``nan``
placeholders, library warnings, and more lines than its stages need.

    python tests/console_check.py CONSOLE.txt [--max-lines N]

.ci/run pipes the smoke profile's console through this (the real run, every stage); the unit
tests in tests/unit/test_console.py use :func:`problems` on what they capture.
"""
from __future__ import annotations

import re
import sys

_NAN = re.compile(r"\bnan\b", re.IGNORECASE)
_WARNING = re.compile(r"\b\w*Warning\b:|\[WARNING\]|\bWARNING\b")


def problems(text: str, max_lines: int | None = None) -> list[str]:
    """Each problem of ``text`` as a short sentence (empty: the console is clean)."""
    lines = [line.split("\r")[-1] for line in text.splitlines()]  # a TTY's redrawn line: last
    found = []
    seen: set[str] = set()
    for line in lines:
        if "\x1b" in line:
            found.append(f"colour code in: {line[:80]!r}")
        if _NAN.search(line):
            found.append(f"nan in: {line[:80]!r}")
        if _WARNING.search(line):
            found.append(f"warning in: {line[:80]!r}")
        if line.strip() and line in seen:
            found.append(f"duplicate line: {line[:80]!r}")
        seen.add(line)
    if max_lines is not None and len(lines) > max_lines:
        found.append(f"{len(lines)} lines (at most {max_lines})")
    return found


def main(argv: list[str]) -> int:
    path, *rest = argv
    limit = int(rest[rest.index("--max-lines") + 1]) if "--max-lines" in rest else None
    with open(path, encoding="utf-8", errors="replace") as fh:
        found = problems(fh.read(), limit)
    for problem in found:
        print(f"console check: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
