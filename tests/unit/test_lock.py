"""The lock of tested versions covers what pyproject asks for, and the image installs with it."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "infra/constraints.txt"
DOCKERFILE = REPO / "infra/docker/Dockerfile"


def _pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_every_dependency_is_pinned_at_a_version_pyproject_accepts():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins()
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    for spec in wanted:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name == canonicalize_name(project["name"]):  # an extra of this package itself
            continue
        if name == "torch":  # the deployer's build: pinned by setup.sh and the image, not here
            assert name not in pins
            continue
        assert name in pins, f"{req.name} is not in {LOCK.name}: run scripts/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (spec, pins[name])
    assert not any("+" in v for v in pins.values()), "local version labels must be stripped"


def test_the_image_installs_with_the_lock_and_only_existing_extras():
    text = DOCKERFILE.read_text()
    assert "infra/constraints.txt" in text and "PIP_CONSTRAINT" in text
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
                 ["optional-dependencies"])
    for extra in re.findall(r"optional-dependencies'\]\['([^']+)'\]", text):
        assert extra in extras, f"the Dockerfile installs extra {extra!r}, pyproject has none"
    for copied in re.findall(r"^COPY --chown=\S+ (\S+) ", text, flags=re.M):
        assert (REPO / copied).exists(), f"the Dockerfile copies {copied}, which does not exist"
