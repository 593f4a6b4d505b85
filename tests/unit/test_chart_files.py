"""The Helm chart and the kustomize base, as files: copies in sync, a strict values schema, no ignored values.

Rendering and installing them needs the helm and kubectl binaries: tests/e2e/test_install.py does that.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"
BASE = ROOT / "manifests" / "base"


def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def errors(candidate: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(candidate)]


def with_override(path: str, value: Any) -> dict[str, Any]:
    candidate = values()
    *parents, leaf = path.split(".")
    node = candidate
    for key in parents:
        node = node[key]
    node[leaf] = value
    return candidate


def test_chart_versions_follow_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["apiVersion"] == "v2"
    assert (chart["version"], chart["appVersion"]) == ("0.1.0", "0.1.0")
    assert chart["appVersion"] == package, "the image tag defaults to appVersion, which must be the package's version"
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "ghcr.io/modeldeploy/modeldeploy", "newTag": package}]


def test_schema_is_draft7_and_accepts_the_defaults() -> None:
    assert schema()["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema())
    assert errors(values()) == []
    assert errors(with_override("rbac.scope", "namespaced") | {"watchNamespaces": ["team-a", "team-b"]}) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("replicaCount", 2, "Additional properties are not allowed ('replicaCount' was unexpected)"),
        ("operator.workers", "four", "'four' is not of type 'integer'"),
        ("operator.workers", 0, "0 is less than the minimum of 1"),
        ("operator.logFormat", "xml", "'xml' is not one of ['json', 'text']"),
        ("rbac.scope", "global", "'global' is not one of ['cluster', 'namespaced']"),
        ("rbac.verbs", ["*"], "Additional properties are not allowed ('verbs' was unexpected)"),
        ("watchNamespaces", "team-a", "'team-a' is not of type 'array'"),
        ("watchNamespaces", ["Team_A"], "'Team_A' does not match"),
        ("ha.enabled", "yes", "'yes' is not of type 'boolean'"),
        ("image.tag", 1.0, "1.0 is not of type 'string'"),
        ("serviceMonitor.enabled", "true", "'true' is not of type 'boolean'"),
        ("serviceMonitor.interval", "30", "'30' does not match"),
        ("modelPodMonitor.port", 8080, "8080 is not of type 'string'"),
        ("strategy.type", "BlueGreen", "'BlueGreen' is not one of ['Recreate', 'RollingUpdate']"),
        ("podAnnotations", {"a": 1}, "1 is not of type 'string'"),
        ("strategy", {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}, "'RollingUpdate' was expected"),
        ("strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "lots"}}, "'lots' does not match"),
        ("ha.podDisruptionBudget", {"enabled": True, "minAvailable": 0}, "0 is less than the minimum of 1"),
        ("rbac.aggregateRoles", "yes", "'yes' is not of type 'boolean'"),
        ("extraEnv", [{"value": "x"}], "'name' is a required property"),
        ("extraVolumeMounts", [{"name": "ca", "mountPath": "etc/ca"}], "'etc/ca' does not match"),
        ("analysisCredentials.secrets", {"risk": "token"}, "'token' is not of type 'array'"),
        ("analysisCredentials.secrets", {"Risk!": ["token"]}, "'Risk!' does not match"),
        ("analysisCredentials.secrets", {"risk": []}, "should be non-empty"),
        ("analysisCredentials.serviceAccounts", {}, "'serviceAccounts' was unexpected"),
    ],
)
def test_schema_rejects_bad_values(path: str, value: Any, message: str) -> None:
    found = errors(with_override(path, value))
    assert any(message in error for error in found), found


def _paths(node: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the values; an empty map or a list is a leaf."""
    paths = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths.extend(_paths(value, f"{path}."))
        else:
            paths.append(path)
    return paths


def _schema_paths(node: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        if "properties" in sub:
            paths.extend(_schema_paths(sub, f"{path}."))
        else:
            paths.append(path)
    return paths


def test_every_value_is_in_the_schema_and_used_by_a_template() -> None:
    value_paths = _paths(values())
    # Maps whose keys the schema leaves open (Kubernetes' own types), or whose default is empty (`strategy`).
    free_form = {"resources.requests", "resources.limits", "podSecurityContext", "containerSecurityContext", "strategy"}

    def collapsed(paths: list[str]) -> set[str]:
        return {p for p in paths if not any(p.startswith(f"{f}.") for f in free_form)} | free_form

    assert collapsed(value_paths) == collapsed(_schema_paths(schema())), (
        "values.yaml and values.schema.json list different keys"
    )
    assert all(
        schema()["properties"][key].get("additionalProperties") is False for key in ("image", "operator", "rbac")
    )

    templates = "\n".join(p.read_text() for p in (CHART / "templates").iterdir())
    references = set(re.findall(r"\.Values\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)", templates))
    ignored = [p for p in value_paths if not any(p == r or p.startswith(f"{r}.") for r in references)]
    assert ignored == [], f"values that no template reads: {ignored}"


def test_defaults_are_the_documented_ones() -> None:
    defaults = values()
    assert defaults["image"] == {
        "repository": "ghcr.io/modeldeploy/modeldeploy",
        "tag": "",
        "pullPolicy": "IfNotPresent",
    }
    assert defaults["rbac"]["scope"] == "cluster"
    assert defaults["watchNamespaces"] == []
    assert defaults["ha"] == {
        "enabled": False,
        "replicas": 2,
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
    }
    assert defaults["strategy"] == {}, "empty: the chart picks Recreate for one replica, a rolling update for HA"
    assert defaults["rbac"]["aggregateRoles"] is True
    assert defaults["analysisCredentials"] == {"secrets": {}, "configMaps": {}}, "no Secret is read unless named"
    assert (defaults["extraEnv"], defaults["extraVolumes"], defaults["extraVolumeMounts"]) == ([], [], [])
    assert defaults["serviceMonitor"]["enabled"] is False
    assert defaults["modelPodMonitor"]["enabled"] is False


@pytest.mark.parametrize(
    "copy",
    [CHART / "crds" / "clusterkopfpeerings.yaml", BASE / "crds" / "clusterkopfpeerings.yaml"],
    ids=["chart", "kustomize-base"],
)
def test_peering_crd_copies_are_byte_identical(copy: Path) -> None:
    source = ROOT / "manifests" / "peering" / "clusterkopfpeerings.yaml"
    assert copy.read_bytes() == source.read_bytes(), f"{copy} is stale: cp {source} {copy}"
