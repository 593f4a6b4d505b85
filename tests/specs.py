"""Test data shared by the unit and end-to-end suites."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).resolve().parent.parent / "manifests" / "examples" / "fraud-scorer.yaml"


def bad_specs(*stages: str) -> list[dict[str, Any]]:
    cases = yaml.safe_load((DATA / "bad_specs.yaml").read_text())["cases"]
    return [c for c in cases if not stages or c["stage"] in stages]


def valid_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text())["spec"])
    spec.update(overrides)
    return spec


# A container that really serves on a real kubelet (kind) as well as under KWOK: agnhost's HTTP echo server.
SERVING_RUNTIME = {
    "preset": "custom",
    "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
    "port": 8080,
    "args": ["netexec", "--http-port=8080"],
}


def serving_spec(**overrides: Any) -> dict[str, Any]:
    """A spec whose pods become Ready on any cluster, for the end-to-end tests; no canary steps by default."""
    return valid_spec(**{"runtime": SERVING_RUNTIME, "rollout": {"steps": []}, **overrides})


def model_version(version: str) -> dict[str, str]:
    """The example's model at another version."""
    return {
        "name": "fraud-scorer",
        "version": version,
        "uri": f"s3://models/fraud-scorer/{version}",
        "format": "sklearn",
    }
