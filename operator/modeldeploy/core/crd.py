"""Generates the ModelDeployment CRD from the pydantic models.

Pydantic emits JSON Schema; the API server wants a structural OpenAPI v3 schema. The conversion inlines
`$ref`s, folds `Optional[X]` into `X`, maps `int | str` to `x-kubernetes-int-or-string`, and drops the
keywords a structural schema does not allow (`title`, `default: null`, `const`).
"""

from __future__ import annotations

from typing import Any

import yaml

from modeldeploy.core import api

DROPPED_KEYS = {"title", "examples", "$defs"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        return _fold_any_of(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED_KEYS or (key == "default" and value is None):
            continue
        # Structural schemas forbid properties next to additionalProperties; pruning drops unknowns anyway.
        if key == "additionalProperties" and value is False:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema 2020 gives the bound; OpenAPI v3.0 wants the bound plus a flag.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        else:
            out[key] = _structural(value, defs)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _fold_any_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    branches = [_structural(b, defs) for b in node["anyOf"] if b.get("type") != "null"]
    if len(branches) == 1:
        single: dict[str, Any] = _structural({**branches[0], **outer}, defs)
        return single
    types = sorted(b.get("type", "") for b in branches)
    if types == ["integer", "string"]:
        string_branch = next(b for b in branches if b["type"] == "string")
        constraints = {k: v for k, v in string_branch.items() if k != "type"}
        return {
            **_structural(outer, defs),
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            **constraints,
        }
    raise ValueError(f"cannot express anyOf {types} in a structural schema")


def schema_of(model: type[api.ApiModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _structural(raw, raw.get("$defs", {}))
    return schema


def openapi_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": schema_of(api.ModelDeploymentSpec),
            "status": schema_of(api.ModelDeploymentStatus),
        },
        "x-kubernetes-validations": [rule.validation() for rule in api.NAME_RULES],
    }


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": ["all", "modeldeploy"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Stable",
                            "type": "string",
                            "jsonPath": ".status.stable.model.version",
                            "description": "Model version of the stable revision",
                        },
                        {
                            "name": "Canary",
                            "type": "string",
                            "jsonPath": ".status.canary.model.version",
                            "description": "Model version of the canary in progress",
                        },
                        {
                            "name": "Weight",
                            "type": "integer",
                            "jsonPath": ".status.canary.actualWeight",
                            "description": "Percent of traffic the canary gets now",
                        },
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def template_crd(kind: str, plural: str, scope: str, short_name: str) -> dict[str, Any]:
    """AnalysisTemplate (namespaced) or ClusterAnalysisTemplate: metrics defined once, referenced by name."""
    spec = schema_of(api.AnalysisTemplateSpec)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": ["modeldeploy"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": [
                        {
                            "name": "Metrics",
                            "type": "string",
                            "jsonPath": ".spec.metrics[*].name",
                            "description": "The metrics it defines",
                        },
                        {"name": "Prometheus", "type": "string", "jsonPath": ".spec.prometheus.address"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                            },
                        }
                    },
                }
            ],
        },
    }


def crds() -> list[dict[str, Any]]:
    """Every CRD the operator serves, in the order they are applied."""
    return [
        crd(),
        template_crd(api.TEMPLATE_KIND, api.TEMPLATE_PLURAL, "Namespaced", "mdat"),
        template_crd(api.CLUSTER_TEMPLATE_KIND, api.CLUSTER_TEMPLATE_PLURAL, "Cluster", "mdcat"),
    ]


def file_name(definition: dict[str, Any]) -> str:
    """`<group>_<plural>.yaml`, the name each CRD has in crds/, the chart and the kustomize base."""
    return f"{definition['spec']['group']}_{definition['spec']['names']['plural']}.yaml"


def crd_files() -> dict[str, str]:
    """File name -> YAML for every CRD: what crds/, charts/modeldeploy/crds/ and manifests/base/crds/ hold."""
    return {file_name(definition): to_yaml(definition) for definition in crds()}


def to_yaml(definition: dict[str, Any]) -> str:
    return yaml.safe_dump(definition, sort_keys=False, width=120)


def crd_yaml() -> str:
    return to_yaml(crd())
