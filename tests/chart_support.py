"""The Helm chart and the kustomize base as the render and install tests see them."""

from __future__ import annotations

from typing import Any

import yaml

from modeldeploy_dev.testing import REPO, Helm

CHART = REPO / "charts" / "modeldeploy"
BASE = REPO / "manifests" / "base"
SYSTEM = "modeldeploy-system"
RELEASE = "modeldeploy"
SERVICE_ACCOUNT = "modeldeploy"  # the chart names it after the release; the kustomize base uses the same name


def render(helm: Helm, *args: str) -> list[dict[str, Any]]:
    """`helm template` of the chart as release RELEASE in SYSTEM, as a list of objects."""
    out = helm("template", RELEASE, str(CHART), "--namespace", SYSTEM, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def operator_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]
