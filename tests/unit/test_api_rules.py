"""The cross-field rules (CEL) on their own, evaluated by a CEL engine: each one, its CRD copy and its bad spec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from modeldeploy.core import api, crd
from modeldeploy.core.api import ApiModel, Rule
from specs import bad_specs


def _models(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> Iterator[type[ApiModel]]:
    """Every API model reachable from `model` through its fields."""
    seen = set() if seen is None else seen
    if model in seen or not issubclass(model, ApiModel):
        return
    seen.add(model)
    yield model
    for field in model.model_fields.values():
        for candidate in _types(field.annotation):
            yield from _models(candidate, seen)


def _types(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _types(arg)


SPEC_RULES = [(model, rule) for model in _models(api.ModelDeploymentSpec) for rule in model.rules]
ALL_RULES = [rule for _, rule in SPEC_RULES] + list(api.NAME_RULES)


def _crd_rules(node: Any) -> Iterator[dict[str, str]]:
    if isinstance(node, dict):
        yield from node.get("x-kubernetes-validations", [])
        for value in node.values():
            yield from _crd_rules(value)
    elif isinstance(node, list):
        for value in node:
            yield from _crd_rules(value)


def test_the_crd_carries_exactly_the_declared_rules() -> None:
    # A model used in two places (a Secret reference, say) carries its rules in both.
    in_crd = {(r["rule"], r["message"]) for r in _crd_rules(crd.openapi_schema())}
    declared = {(rule.expression, rule.message) for rule in ALL_RULES}
    assert in_crd == declared
    assert len(declared) >= 20


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda rule: rule.message[:60])
def test_every_rule_has_a_bad_spec_that_admission_refuses_with_its_message(rule: Rule) -> None:
    refused_at_admission = [c for c in bad_specs("cel") if c["api_error"] in rule.message]
    assert refused_at_admission, f"no stage-cel case in tests/data/bad_specs.yaml for: {rule.message}"


# (model, object on the wire after defaulting, expected): the rule's own truth table, independent of pydantic.
def _rule(model: type[ApiModel], fragment: str) -> Rule:
    return next(rule for rule in model.rules if fragment in rule.message)


CASES = [
    (_rule(api.EnvSource, "exactly one"), {"secretKeyRef": {"name": "s", "key": "k"}}, True),
    (_rule(api.EnvSource, "exactly one"), {}, False),
    (
        _rule(api.EnvSource, "exactly one"),
        {"secretKeyRef": {"name": "s", "key": "k"}, "configMapKeyRef": {"name": "c", "key": "k"}},
        False,
    ),
    (_rule(api.EnvVar, "both"), {"name": "A", "value": "1"}, True),
    (_rule(api.EnvVar, "both"), {"name": "A", "value": "1", "valueFrom": {}}, False),
    (_rule(api.Runtime, "custom"), {"preset": "modelserver"}, True),
    (_rule(api.Runtime, "custom"), {"preset": "custom", "image": "i", "port": 1}, True),
    (_rule(api.Runtime, "custom"), {"preset": "custom", "image": "i"}, False),
    (_rule(api.Autoscaling, "minReplicas"), {"maxReplicas": 2}, True),
    (_rule(api.Autoscaling, "minReplicas"), {"minReplicas": 2, "maxReplicas": 2}, True),
    (_rule(api.Autoscaling, "minReplicas"), {"minReplicas": 3, "maxReplicas": 2}, False),
    (_rule(api.Step, "exactly one"), {"setWeight": 0}, True),
    (_rule(api.Step, "exactly one"), {}, False),
    (_rule(api.Step, "exactly one"), {"setWeight": 10, "pause": {}}, False),
    (_rule(api.Rollout, "needs rollout.analysis"), {"steps": [{"setWeight": 5}]}, True),
    (_rule(api.Rollout, "needs rollout.analysis"), {"steps": [{"setWeight": 5}, {"analysis": {}}]}, False),
    (_rule(api.Rollout, "an analysis step needs a setWeight"), {}, True),
    (_rule(api.Rollout, "an analysis step needs a setWeight"), {"steps": []}, True),
    (_rule(api.Rollout, "an analysis step needs a setWeight"), {"steps": [{"setWeight": 5}, {"analysis": {}}]}, True),
    (_rule(api.Rollout, "an analysis step needs a setWeight"), {"steps": [{"pause": {}}, {"analysis": {}}]}, False),
    (_rule(api.Rollout, "an analysis step needs a setWeight"), {"steps": [{"setWeight": 0}, {"analysis": {}}]}, False),
    (_rule(api.Rollout, "an analysis step needs a setWeight"), {"steps": [{"analysis": {}}, {"setWeight": 50}]}, False),
    (_rule(api.PrometheusSource, "not both"), {"address": "http://p"}, True),
    (_rule(api.PrometheusSource, "not both"), {"basicAuthSecret": "b", "bearerTokenSecret": {}}, False),
    (_rule(api.AnalysisMetric, "exactly one of builtin"), {"builtin": "successRate"}, True),
    (_rule(api.AnalysisMetric, "exactly one of builtin"), {"builtin": "successRate", "query": "q"}, False),
    (_rule(api.AnalysisMetric, "exactly one of builtin"), {}, False),
    (_rule(api.AnalysisMetric, "needs a bound"), {"relative": {}}, True),
    (_rule(api.AnalysisMetric, "needs a bound"), {"name": "m"}, False),
    (_rule(api.AnalysisMetric, "min must not"), {"min": 0.1, "max": 0.1}, True),
    (_rule(api.AnalysisMetric, "min must not"), {"min": 1, "max": 0.5}, False),
    (_rule(api.AnalysisMetric, "exactly one of builtin"), {"web": {}}, True),
    (_rule(api.AnalysisMetric, "exactly one of builtin"), {"query": "q", "web": {}}, False),
    (_rule(api.PrometheusSource, "sigv4"), {"sigv4": {}}, True),
    (_rule(api.PrometheusSource, "sigv4"), {"bearerTokenSecret": {}}, True),
    (_rule(api.PrometheusSource, "sigv4"), {"sigv4": {}, "basicAuthSecret": "b"}, False),
    (_rule(api.Header, "exactly one"), {"name": "X", "value": "a"}, True),
    (_rule(api.Header, "exactly one"), {"name": "X", "valueFrom": {}}, True),
    (_rule(api.Header, "exactly one"), {"name": "X"}, False),
    (_rule(api.Header, "exactly one"), {"name": "X", "value": "a", "valueFrom": {}}, False),
    (_rule(api.Tls, "at most one"), {"insecureSkipVerify": False}, True),
    (_rule(api.Tls, "at most one"), {"caConfigMap": {}, "insecureSkipVerify": False}, True),
    (_rule(api.Tls, "at most one"), {"caSecret": {}, "insecureSkipVerify": True}, False),
    (_rule(api.Tls, "at most one"), {"caSecret": {}, "caConfigMap": {}}, False),
    (_rule(api.WebMetric, "POST"), {"method": "GET"}, True),
    (_rule(api.WebMetric, "POST"), {"method": "POST", "body": "{}"}, True),
    (_rule(api.WebMetric, "POST"), {"method": "GET", "body": "{}"}, False),
    (_rule(api.WebMetric, "POST"), {"body": "{}"}, False),
    (_rule(api.Analysis, "metrics or templates"), {"metrics": [{}]}, True),
    (_rule(api.Analysis, "metrics or templates"), {"templates": [{}]}, True),
    (_rule(api.Analysis, "metrics or templates"), {"metrics": [], "templates": []}, False),
    (_rule(api.Analysis, "metrics or templates"), {}, False),
    (_rule(api.Analysis, "need rollout.analysis.prometheus"), {"prometheus": {}, "metrics": [{"query": "q"}]}, True),
    (_rule(api.Analysis, "need rollout.analysis.prometheus"), {"templates": [{}], "metrics": [{"query": "q"}]}, True),
    (_rule(api.Analysis, "need rollout.analysis.prometheus"), {"metrics": [{"web": {}}]}, True),
    (_rule(api.Analysis, "need rollout.analysis.prometheus"), {"metrics": [{"builtin": "successRate"}]}, False),
    (_rule(api.Analysis, "need rollout.analysis.prometheus"), {"templates": [], "metrics": [{"query": "q"}]}, False),
    (_rule(api.Traffic, "gatewayAPI"), {"router": "gatewayAPI", "gatewayAPI": {}}, True),
    (_rule(api.Traffic, "gatewayAPI"), {"router": "gatewayAPI"}, False),
    (_rule(api.Traffic, "gatewayAPI"), {"router": "replicas", "gatewayAPI": {}}, False),
    (_rule(api.Traffic, "istio"), {"router": "replicas"}, True),
    (_rule(api.Traffic, "istio"), {"router": "nginx", "istio": {}}, False),
    (_rule(api.Traffic, "nginx"), {"router": "nginx", "nginx": {}}, True),
    (_rule(api.Traffic, "nginx"), {"router": "nginx"}, False),
    (_rule(api.ModelDeploymentSpec, "mutually exclusive"), {"replicas": 1}, True),
    (_rule(api.ModelDeploymentSpec, "mutually exclusive"), {"replicas": 1, "autoscaling": {}}, False),
    (
        _rule(api.ModelDeploymentSpec, "MLServer"),
        {"runtime": {"preset": "mlserver"}, "rollout": {"analysis": {"metrics": [{"builtin": "successRate"}]}}},
        True,
    ),
    (
        _rule(api.ModelDeploymentSpec, "MLServer"),
        {"runtime": {"preset": "mlserver"}, "rollout": {"analysis": {"templates": [{"name": "std"}]}}},
        True,
    ),
    (
        _rule(api.ModelDeploymentSpec, "MLServer"),
        {"runtime": {"preset": "mlserver"}, "rollout": {"analysis": {"metrics": [{"builtin": "predictionDrift"}]}}},
        False,
    ),
    (
        _rule(api.ModelDeploymentSpec, "feedback counters"),
        {"runtime": {"preset": "mlserver"}, "rollout": {"analysis": {"metrics": [{"builtin": "successRate"}]}}},
        True,
    ),
    (
        _rule(api.ModelDeploymentSpec, "feedback counters"),
        {"runtime": {"preset": "modelserver"}, "rollout": {"analysis": {"metrics": [{"builtin": "accuracy"}]}}},
        True,
    ),
    (
        _rule(api.ModelDeploymentSpec, "feedback counters"),
        {"runtime": {"preset": "mlserver"}, "rollout": {"analysis": {"metrics": [{"builtin": "accuracy"}]}}},
        False,
    ),
    (
        _rule(api.ModelDeploymentSpec, "feedback counters"),
        {"runtime": {"preset": "mlserver"}, "rollout": {"analysis": {"metrics": [{"builtin": "meanAbsoluteError"}]}}},
        False,
    ),
    (_rule(api.ModelDeploymentSpec, "canaryReplicas"), {"rollout": {"canaryReplicas": 2}}, False),
    (
        _rule(api.ModelDeploymentSpec, "canaryReplicas"),
        {"traffic": {"router": "istio"}, "rollout": {"canaryReplicas": 2}},
        True,
    ),
    (_rule(api.ModelDeploymentSpec, "100%"), {"rollout": {"steps": [{"setWeight": 99}]}}, True),
    (_rule(api.ModelDeploymentSpec, "100%"), {"rollout": {"steps": [{"setWeight": 100}]}}, False),
    (
        _rule(api.ModelDeploymentSpec, "100%"),
        {"traffic": {"router": "nginx"}, "rollout": {"steps": [{"setWeight": 100}]}},
        True,
    ),
    (_rule(api.Relative, "at least one"), {"maxRatio": 1.1}, True),
    (_rule(api.Relative, "at least one"), {}, False),
    (_rule(api.PrometheusSource, "timeout"), {"timeout": "250ms"}, True),
    (_rule(api.PrometheusSource, "timeout"), {"timeout": "0s"}, False),
    (_rule(api.WebMetric, "timeout"), {}, True),
    (_rule(api.WebMetric, "timeout"), {"timeout": "0ms"}, False),
    (_rule(api.AnalysisMetric, "window"), {"window": "5m"}, True),
    (_rule(api.AnalysisMetric, "referenceWindow must"), {}, True),
    (_rule(api.AnalysisMetric, "referenceWindow must"), {"referenceWindow": "1h"}, True),
    (_rule(api.AnalysisMetric, "referenceWindow must"), {"referenceWindow": "0s"}, False),
    (_rule(api.AnalysisMetric, "referenceWindow is"), {"builtin": "accuracy"}, True),
    (_rule(api.AnalysisMetric, "referenceWindow is"), {"builtin": "predictionDrift", "referenceWindow": "1h"}, True),
    (_rule(api.AnalysisMetric, "referenceWindow is"), {"builtin": "accuracy", "referenceWindow": "1h"}, False),
    (_rule(api.AnalysisMetric, "referenceWindow is"), {"query": "x", "referenceWindow": "1h"}, False),
    (_rule(api.AnalysisMetric, "window"), {"window": "0m"}, False),
    (_rule(api.Analysis, "interval"), {"interval": "1s"}, True),
    (_rule(api.Analysis, "interval"), {"interval": "500ms"}, False),
    (_rule(api.Analysis, "interval"), {"interval": "0s"}, False),
    (_rule(api.Rollout, "could never measure"), {"steps": [{"pause": {}}]}, True),
    (_rule(api.Rollout, "could never measure"), {"analysis": {}}, True),
    (_rule(api.Rollout, "could never measure"), {"analysis": {"startingStep": 4}}, True),
    (_rule(api.Rollout, "could never measure"), {"analysis": {"startingStep": 5}}, False),
    (_rule(api.Rollout, "could never measure"), {"analysis": {}, "steps": []}, False),
    (_rule(api.Rollout, "could never measure"), {"analysis": {}, "steps": [{"setWeight": 0}, {"pause": {}}]}, False),
    (
        _rule(api.Rollout, "could never measure"),
        {"analysis": {"startingStep": 2}, "steps": [{"setWeight": 10}, {"pause": {}}]},
        True,
    ),
    (
        _rule(api.Rollout, "could never measure"),
        {"analysis": {"startingStep": 3}, "steps": [{"setWeight": 10}, {"pause": {}}]},
        False,
    ),
    (_rule(api.Webhook, "exactly one of url"), {"url": "http://h/"}, True),
    (_rule(api.Webhook, "exactly one of url"), {"urlFrom": {}}, True),
    (_rule(api.Webhook, "exactly one of url"), {}, False),
    (_rule(api.Notification, "exactly one of url"), {"url": "http://h/", "urlFrom": {}}, False),
    (_rule(api.Webhook, "timeout"), {}, True),
    (_rule(api.Webhook, "timeout"), {"timeout": "60s"}, True),
    (_rule(api.Webhook, "timeout"), {"timeout": "61s"}, False),
    (_rule(api.Notification, "timeout"), {"timeout": "0s"}, False),
    (_rule(api.Webhook, "confirm-rollout"), {"type": "confirm-rollout"}, True),
    (_rule(api.Webhook, "confirm-rollout"), {"type": "confirm-rollout", "onFailure": "hold"}, True),
    (_rule(api.Webhook, "confirm-rollout"), {"type": "confirm-rollout", "onFailure": "fail"}, False),
    (_rule(api.Webhook, "confirm-rollout"), {"type": "confirm-promotion", "onFailure": "fail"}, True),
    (_rule(api.Rollout, "webhooks names"), {}, True),
    (_rule(api.Rollout, "webhooks names"), {"webhooks": [{"name": "a"}, {"name": "b"}]}, True),
    (_rule(api.Rollout, "webhooks names"), {"webhooks": [{"name": "a"}, {"name": "a"}]}, False),
    (_rule(api.Rollout, "notifications names"), {"notifications": [{"name": "a"}]}, True),
    (_rule(api.Rollout, "notifications names"), {"notifications": [{"name": "a"}, {"name": "a"}]}, False),
    (_rule(api.ModelSource, "must start with"), {"uri": "pvc://claim/m"}, True),
    (_rule(api.ModelSource, "must start with"), {"uri": "hdfs://nn/m"}, False),
    (_rule(api.ModelSource, "registry model.uri"), {"uri": "models:/fraud/12"}, True),
    (_rule(api.ModelSource, "registry model.uri"), {"uri": "models:/fraud@champion"}, True),
    (_rule(api.ModelSource, "registry model.uri"), {"uri": "models:/fraud/latest"}, False),
    (_rule(api.ModelSource, "registry model.uri"), {"uri": "s3://b/k"}, True),
    (_rule(api.ModelSource, "pvc model.uri"), {"uri": "pvc://models/fraud/7"}, True),
    (_rule(api.ModelSource, "pvc model.uri"), {"uri": "pvc://"}, False),
    (_rule(api.ModelSource, "registry is required"), {"uri": "models:/m@a", "registry": {}}, True),
    (_rule(api.ModelSource, "registry is required"), {"uri": "s3://b/k", "registry": {}}, False),
    (_rule(api.ModelSource, "version is required"), {"uri": "s3://b/k", "version": "1"}, True),
    (_rule(api.ModelSource, "version is required"), {"uri": "models:/m@a"}, True),
    (_rule(api.ModelSource, "version is required"), {"uri": "s3://b/k"}, False),
    (_rule(api.ModelSource, "storage.s3"), {"uri": "models:/m@a", "storage": {"s3": {}}}, True),
    (_rule(api.ModelSource, "storage.s3"), {"uri": "gs://b/k", "storage": {"s3": {}}}, False),
    (_rule(api.EnvFromSource, "exactly one"), {"secretRef": "a"}, True),
    (_rule(api.EnvFromSource, "exactly one"), {}, False),
    (_rule(api.Volume, "exactly one of configMap"), {"name": "a", "projected": {}}, True),
    (_rule(api.Volume, "exactly one of configMap"), {"name": "a"}, False),
    (_rule(api.Volume, "exactly one of configMap"), {"name": "a", "secret": {}, "csi": {}}, False),
    (_rule(api.Volume, "model volume"), {"name": "ca"}, True),
    (_rule(api.Volume, "model volume"), {"name": "model"}, False),
    (_rule(api.PodPlacement, "must name one"), {"volumes": [{"name": "a"}], "volumeMounts": [{"name": "a"}]}, True),
    (_rule(api.PodPlacement, "must name one"), {"volumes": [{"name": "a"}], "volumeMounts": [{"name": "b"}]}, False),
    (_rule(api.PodPlacement, "mount elsewhere"), {"volumeMounts": [{"mountPath": "/mnt/extra"}]}, True),
    (_rule(api.PodPlacement, "mount elsewhere"), {"volumeMounts": [{"mountPath": "/mnt/models"}]}, False),
    (_rule(api.PodPlacement, "pod.labels"), {"labels": {"team": "risk"}}, True),
    (_rule(api.PodPlacement, "pod.labels"), {"labels": {"app.kubernetes.io/name": "x"}}, False),
    (
        _rule(api.ModelDeploymentSpec, "GPU pods"),
        {"runtime": {"resources": {"limits": {"nvidia.com/gpu": 1}}}, "traffic": {"router": "istio"}},
        False,
    ),
    (
        _rule(api.ModelDeploymentSpec, "GPU pods"),
        {
            "runtime": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
            "traffic": {"router": "istio"},
            "rollout": {"canaryReplicas": 1},
        },
        True,
    ),
    (_rule(api.ModelDeploymentSpec, "GPU pods"), {"runtime": {"resources": {"limits": {"cpu": 1}}}}, True),
    (_rule(api.Rollout, "bakeWarmReplicas needs"), {"bakeSeconds": 60, "bakeWarmReplicas": 2}, True),
    (_rule(api.Rollout, "bakeWarmReplicas needs"), {"bakeWarmReplicas": 2}, False),
    (_rule(api.Rollout, "without metrics nothing"), {"bakeSeconds": 60, "analysis": {}}, True),
    (_rule(api.Rollout, "without metrics nothing"), {"bakeSeconds": 60}, False),
    (_rule(api.Rollout, "one analysis.interval"), {"bakeSeconds": 30, "analysis": {"interval": "30s"}}, True),
    (_rule(api.Rollout, "one analysis.interval"), {"bakeSeconds": 60, "analysis": {}}, True),
    (_rule(api.Rollout, "one analysis.interval"), {"bakeSeconds": 20, "analysis": {}}, False),
    (_rule(api.Rollout, "one analysis.interval"), {"bakeSeconds": 59, "analysis": {"interval": "1m"}}, False),
    (_rule(api.ModelDeploymentSpec, "bakeSeconds needs a weighted"), {"rollout": {"bakeSeconds": 60}}, False),
    (
        _rule(api.ModelDeploymentSpec, "bakeSeconds needs a weighted"),
        {"traffic": {"router": "istio"}, "rollout": {"bakeSeconds": 60}},
        True,
    ),
    (_rule(api.ModelDeploymentSpec, "bakeSeconds needs a weighted"), {"rollout": {}}, True),
    (_rule(api.Critical, "needs min or max"), {"min": 0.5}, True),
    (_rule(api.Critical, "needs min or max"), {}, False),
    (_rule(api.Critical, "must not exceed"), {"min": 1, "max": 1}, True),
    (_rule(api.Critical, "must not exceed"), {"min": 2, "max": 1}, False),
    (_rule(api.AnalysisMetric, "critical bound contradicts"), {"min": 0.9}, True),
    (_rule(api.AnalysisMetric, "critical bound contradicts"), {"min": 0.9, "critical": {"min": 0.5}}, True),
    (_rule(api.AnalysisMetric, "critical bound contradicts"), {"min": 0.9, "critical": {"min": 0.9}}, True),
    (_rule(api.AnalysisMetric, "critical bound contradicts"), {"max": 0.2, "critical": {"max": 1}}, True),
    (_rule(api.AnalysisMetric, "critical bound contradicts"), {"relative": {}, "critical": {"max": 1}}, True),
    (_rule(api.AnalysisMetric, "critical bound contradicts"), {"min": 0.9, "critical": {"min": 0.95}}, False),
    (_rule(api.AnalysisMetric, "critical bound contradicts"), {"max": 0.2, "critical": {"max": 0.1}}, False),
    (_rule(api.AnalysisMetric, "critical bound contradicts"), {"max": 0.2, "critical": {"min": 0.5}}, False),
    (_rule(api.AnalysisMetric, "critical bound contradicts"), {"min": 0.9, "critical": {"max": 0.5}}, False),
    (_rule(api.Analysis, "criticalInterval"), {"criticalInterval": "500ms"}, True),
    (_rule(api.Analysis, "criticalInterval"), {"criticalInterval": "100ms"}, False),
    (api.NAME_RULES[0], {"metadata": {"name": "a" * 52}}, True),
    (api.NAME_RULES[0], {"metadata": {"name": "a" * 53}}, False),
    (api.NAME_RULES[1], {"metadata": {"name": "fraud-scorer"}}, True),
    (api.NAME_RULES[1], {"metadata": {"name": "fraud.v2"}}, False),
    (api.NAME_RULES[1], {"metadata": {"name": "9lives"}}, False),
]


@pytest.mark.parametrize(("rule", "wire", "holds"), CASES, ids=lambda x: str(x)[:50])
def test_rule_truth_table(rule: Rule, wire: dict[str, Any], holds: bool) -> None:
    assert rule.holds(wire) is holds


def test_every_rule_has_a_truth_table_case_each_way() -> None:
    for rule in ALL_RULES:
        outcomes = {holds for case_rule, _, holds in CASES if case_rule is rule}
        assert outcomes == {True, False}, rule.message


def test_a_rule_that_does_not_compile_is_refused_at_import() -> None:
    with pytest.raises(Exception, match=r"(?i)pars|syntax|unexpected"):
        Rule("self.a ==", "broken")
