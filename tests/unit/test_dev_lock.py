"""requirements/dev.lock pins every dependency that the development environment needs (the runtime ones, the
locked extras and the `dev` dependency group) by name, at a version pyproject.toml allows."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def locked_extras() -> list[str]:
    """The extras hack/lock.sh pins (its EXTRAS)."""
    match = re.search(r"^EXTRAS=\((.*)\)$", (ROOT / "hack" / "lock.sh").read_text(), re.M)
    assert match, "hack/lock.sh no longer sets EXTRAS"
    return match.group(1).split()


def declared() -> list[Requirement]:
    """The runtime dependencies, those of the locked extras (following the extras they name of the project), and
    the `dev` dependency group."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = project["optional-dependencies"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    requirements += [Requirement(line) for line in pyproject["dependency-groups"]["dev"]]
    pending, seen = locked_extras(), set()
    while pending:
        extra = pending.pop()
        seen.add(extra)
        for requirement in map(Requirement, extras[extra]):
            if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
                pending += [e for e in requirement.extras if e not in seen]
            else:
                requirements.append(requirement)
    return requirements


def pinned() -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    for line in (ROOT / "requirements" / "dev.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", line)
        if match:
            pins.setdefault(canonicalize_name(match.group(1)), []).append(match.group(2))
    return pins


def test_the_lock_pins_every_declared_dependency() -> None:
    pins = pinned()
    assert {"kopf", "pytest", "cryptography", "scikit-learn"} <= {canonicalize_name(r.name) for r in declared()}
    stale = [
        str(r)
        for r in declared()
        if canonicalize_name(r.name) not in pins
        or not all(r.specifier.contains(v, prereleases=True) for v in pins[canonicalize_name(r.name)])
    ]
    assert stale == [], f"requirements/dev.lock is stale for {stale}: run `bash hack/lock.sh` and commit the lock"
