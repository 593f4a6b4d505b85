"""Analysis templates: merged into the analysis that runs, read only while a canary measures, held on when missing,
and a change mid-canary recorded and announced."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fake_kube import FakeKube
from modeldeploy.adapters import providers
from modeldeploy.core.analysis import MetricQuery, Raw, queries
from modeldeploy.core.api import Analysis, AnalysisTemplateSpec, TemplateRef
from modeldeploy.core.presets import SpecError
from modeldeploy.core.templates import Template, resolve
from modeldeploy.reconcile import Reconciler
from specs import model_version, valid_spec

PROM_A = {"address": "http://prom-a:9090"}
PROM_B = {"address": "http://prom-b:9090"}
OK = {"name": "success-rate", "builtin": "successRate", "min": 0.99}
P99 = {"name": "p99", "builtin": "latencyP99", "max": 2.0}
ACCURACY = {"name": "accuracy", "web": {"url": "http://acc/score", "jsonPath": "$.accuracy"}, "min": 0.9}


def template(name: str, metrics: list[dict[str, Any]], prometheus: dict[str, Any] | None = None, **kw: Any) -> Template:
    spec = AnalysisTemplateSpec.model_validate(
        {"metrics": metrics, **({"prometheus": prometheus} if prometheus else {})}
    )
    return Template(kind=kw.get("kind", "AnalysisTemplate"), name=name, generation=kw.get("generation", 1), spec=spec)


def analysis(**fields: Any) -> Analysis:
    return Analysis.model_validate(fields)


def test_templates_metrics_come_first_each_with_its_prometheus() -> None:
    resolved = resolve(
        analysis(
            prometheus=PROM_A, templates=[{"name": "std"}, {"name": "platform", "clusterScope": True}], metrics=[P99]
        ),
        [template("std", [OK], PROM_B), template("platform", [ACCURACY], kind="ClusterAnalysisTemplate", generation=4)],
        "modelserver",
    )
    assert [m.name for m in resolved.analysis.metrics] == ["success-rate", "accuracy", "p99"]
    assert resolved.sources["success-rate"].address == "http://prom-b:9090", "the template's own Prometheus"
    assert resolved.sources["p99"].address == "http://prom-a:9090"
    assert "accuracy" not in resolved.sources, "web metrics need no Prometheus"
    assert resolved.templates == ("AnalysisTemplate/std@generation 1", "ClusterAnalysisTemplate/platform@generation 4")
    planned = queries(resolved.analysis, "modelserver", "risk", "fraud", "c1", None, resolved.sources)
    assert [(q.provider, getattr(q.settings, "address", None)) for q in planned] == [
        ("prometheus", "http://prom-b:9090"),
        ("web", None),
        ("prometheus", "http://prom-a:9090"),
    ]


def test_the_objects_own_metric_wins_and_a_prometheus_can_come_from_a_template() -> None:
    own = {**OK, "min": 0.5}
    resolved = resolve(analysis(templates=[{"name": "std"}], metrics=[own]), [template("std", [OK, P99], PROM_B)], "x")
    assert [(m.name, m.min) for m in resolved.analysis.metrics] == [("p99", None), ("success-rate", 0.5)]
    assert resolved.sources["success-rate"].address == "http://prom-b:9090", "the first template's Prometheus"


def test_two_templates_defining_one_metric_is_invalid_and_names_both() -> None:
    with pytest.raises(
        SpecError, match="'success-rate' is defined by both AnalysisTemplate/std and ClusterAnalysisTemplate/platform"
    ):
        resolve(
            analysis(prometheus=PROM_A, templates=[{"name": "std"}, {"name": "platform", "clusterScope": True}]),
            [template("std", [OK]), template("platform", [OK], kind="ClusterAnalysisTemplate")],
            "modelserver",
        )


def test_a_template_referenced_twice_counts_once() -> None:
    resolved = resolve(
        analysis(prometheus=PROM_A, templates=[{"name": "std"}, {"name": "std"}]), [template("std", [OK])] * 2, "x"
    )
    assert [m.name for m in resolved.analysis.metrics] == ["success-rate"]


@pytest.mark.parametrize(
    ("fields", "templates", "runtime", "message"),
    [
        (
            {"templates": [{"name": "std"}]},
            [template("std", [OK])],
            "modelserver",
            "'success-rate' of AnalysisTemplate/std needs a Prometheus",
        ),
        (
            {"templates": [{"name": "web"}], "metrics": [P99]},
            [template("web", [ACCURACY])],
            "modelserver",
            "'p99' needs a Prometheus",
        ),
        (
            {"prometheus": PROM_A, "templates": [{"name": "std"}]},
            [template("std", [{"name": "drift", "builtin": "predictionDrift", "max": 0.2}])],
            "mlserver",
            "predictionDrift needs a prediction histogram",
        ),
        (
            {"prometheus": PROM_A, "templates": [{"name": "std"}]},
            [template("std", [{"name": "acc", "builtin": "accuracy", "min": 0.9}])],
            "mlserver",
            "accuracy and meanAbsoluteError need the feedback counters",
        ),
    ],
    ids=[
        "template-metric-without-prometheus",
        "own-metric-without-prometheus",
        "drift-on-mlserver",
        "accuracy-on-mlserver",
    ],
)
def test_what_only_the_merged_analysis_shows_is_invalid(
    fields: dict[str, Any], templates: list[Template], runtime: str, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        resolve(analysis(**fields), templates, runtime)


def test_a_malformed_template_is_invalid_and_named() -> None:
    with pytest.raises(SpecError, match=r"AnalysisTemplate risk/std is invalid: spec.metrics: .*at least 1 item"):
        Template.from_object(TemplateRef(name="std"), "risk", {"metadata": {"generation": 2}, "spec": {"metrics": []}})
    found = Template.from_object(
        TemplateRef(name="p", cluster_scope=True), "risk", {"metadata": {"generation": 7}, "spec": {"metrics": [OK]}}
    )
    assert found.label == "ClusterAnalysisTemplate/p@generation 7"


# -- the reconcile -------------------------------------------------------------------------------------------


ROLLOUT = {
    "steps": [{"setWeight": 50}, {"analysis": {"measurements": 3}}],
    "analysis": {"interval": "10s", "templates": [{"name": "std-gates"}]},
}


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A JSON merge patch (RFC 7386), as the API server applies status patches."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


class Kube(FakeKube):
    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.writes.append(("patch-status", "ModelDeployment"))
        merge(self.md.setdefault("status", {}), patch)


class Measured:
    """Stands in for the providers: every query answers `value`, and each tick is remembered."""

    def __init__(self, value: float = 0.999) -> None:
        self.value = value
        self.ticks: list[list[str]] = []

    def __call__(self, planned: list[MetricQuery], context: providers.Context, transport: Any = None) -> list[Raw]:
        self.ticks.append([q.metric.name for q in planned])
        return [Raw(canary=self.value) for _ in planned]


def std_gates(generation: int = 1, metrics: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "std-gates", "namespace": "ns", "generation": generation},
        "spec": {"prometheus": PROM_A, "metrics": metrics or [OK]},
    }


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> Measured:
    fake = Measured()
    monkeypatch.setattr("modeldeploy.reconcile.providers.measure", fake)
    return fake


def canary_at_weight(kube: Kube) -> Reconciler:
    """v7 stable, v8 a canary at 50%; no measurement taken yet."""
    reconciler = Reconciler(kube)
    reconciler.reconcile("ns", "fraud-scorer")
    kube.md["spec"]["model"] = model_version("8")
    kube.md["metadata"]["generation"] = 2
    for _ in range(5):
        reconciler.reconcile("ns", "fraud-scorer")
        canary = kube.md["status"].get("canary")
        if canary and canary["weight"] == 50 and kube.md["status"]["analysis"].get("metrics"):
            break
    return reconciler


def due_again(kube: Kube) -> None:
    kube.md["status"]["analysis"]["nextMeasurementAt"] = datetime(2000, 1, 1, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kube: Kube, type_: str) -> dict[str, Any]:
    return next(c for c in kube.md["status"]["conditions"] if c["type"] == type_)


def test_templates_are_read_only_while_a_canary_measures(measured: Measured) -> None:
    kube = Kube(valid_spec(rollout=ROLLOUT))
    reads: list[str] = []
    kube.templates[(False, "std-gates")] = std_gates()
    original = kube.get_analysis_template

    def counted(cluster_scope: bool, namespace: str, name: str) -> dict[str, Any] | None:
        reads.append(name)
        return original(cluster_scope, namespace, name)

    kube.get_analysis_template = counted  # type: ignore[method-assign]
    reconciler = Reconciler(kube)
    reconciler.reconcile("ns", "fraud-scorer")
    reconciler.reconcile("ns", "fraud-scorer")
    assert reads == [], "an idle object reads no template"
    canary_at_weight(kube)
    assert reads == ["std-gates"]
    assert measured.ticks == [["success-rate"]]
    analysis = kube.md["status"]["analysis"]
    assert analysis["templates"] == ["AnalysisTemplate/std-gates@generation 1"]
    assert [m["name"] for m in analysis["metrics"]] == ["success-rate"]
    assert analysis["metrics"][0]["measurements"][-1]["result"] == "Successful"


def test_a_missing_template_holds_the_canary_and_says_so(measured: Measured) -> None:
    kube = Kube(valid_spec(rollout=ROLLOUT))
    reconciler = Reconciler(kube)
    reconciler.reconcile("ns", "fraud-scorer")
    kube.md["spec"]["model"] = model_version("8")
    kube.md["metadata"]["generation"] = 2
    for _ in range(4):
        again = reconciler.reconcile("ns", "fraud-scorer")
    status = kube.md["status"]
    assert measured.ticks == [], "nothing is measured without the template"
    degraded = condition(kube, "Degraded")
    assert degraded["reason"] == "AnalysisTemplateNotFound"
    assert degraded["message"].startswith("AnalysisTemplate ns/std-gates not found; the canary holds")
    assert status["canary"]["weight"] == 50, "held where it was: neither promoted nor rolled back"
    assert status.get("lastRollback") is None
    assert "AnalysisTemplateNotFound" in kube.events
    assert again == 10.0, "looked at again after an interval, without a watch event"
    writes = len(kube.writes)
    reconciler.reconcile("ns", "fraud-scorer")
    assert len(kube.writes) == writes, "holding writes nothing new"

    kube.templates[(False, "std-gates")] = std_gates()
    reconciler.reconcile("ns", "fraud-scorer")
    assert measured.ticks == [["success-rate"]]
    assert condition(kube, "Degraded")["status"] == "False"
    assert "Recovered" in kube.events


def test_two_templates_with_one_metric_are_reported_as_invalid_spec(measured: Measured) -> None:
    rollout = {
        **ROLLOUT,
        "analysis": {"templates": [{"name": "std-gates"}, {"name": "platform", "clusterScope": True}]},
    }
    kube = Kube(valid_spec(rollout=rollout))
    kube.templates[(False, "std-gates")] = std_gates()
    kube.templates[(True, "platform")] = {**std_gates(), "kind": "ClusterAnalysisTemplate"}
    canary_at_weight(kube)
    degraded = condition(kube, "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert "defined by both AnalysisTemplate/std-gates and ClusterAnalysisTemplate/platform" in degraded["message"]
    assert kube.md["status"]["canary"] is not None
    assert measured.ticks == []


def test_a_template_changed_mid_canary_applies_from_the_next_tick_with_an_event(measured: Measured) -> None:
    kube = Kube(valid_spec(rollout=ROLLOUT))
    kube.templates[(False, "std-gates")] = std_gates()
    reconciler = canary_at_weight(kube)
    assert measured.ticks == [["success-rate"]]
    kube.templates[(False, "std-gates")] = std_gates(generation=2, metrics=[OK, P99])
    due_again(kube)
    reconciler.reconcile("ns", "fraud-scorer")
    assert measured.ticks[-1] == ["success-rate", "p99"]
    analysis = kube.md["status"]["analysis"]
    assert analysis["templates"] == ["AnalysisTemplate/std-gates@generation 2"]
    assert analysis["consecutiveSuccesses"] == 2, "counts carry over"
    assert "AnalysisTemplateChanged" in kube.events
    due_again(kube)
    reconciler.reconcile("ns", "fraud-scorer")
    assert kube.events.count("AnalysisTemplateChanged") == 1, "announced once"
