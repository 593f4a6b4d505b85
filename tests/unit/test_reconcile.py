"""The reconcile loop against an in-memory API: what it writes, and when it writes nothing."""

import inspect
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from fake_kube import FakeKube
from modeldeploy.adapters.kube import Kube, KubeApi
from modeldeploy.reconcile import Reconciler
from specs import valid_spec

# The fake is a KubeApi: mypy rejects this line when the protocol and the fake drift apart.
_fake_is_a_kube_api: KubeApi = FakeKube({})


def _parameters(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def test_the_fake_and_the_real_adapter_both_have_the_protocols_methods() -> None:
    methods = sorted(name for name, _ in inspect.getmembers(KubeApi, inspect.isfunction) if not name.startswith("_"))
    assert methods == [
        "apply",
        "delete",
        "emit_event",
        "get",
        "get_analysis_template",
        "get_modeldeployment",
        "list_children",
        "list_pods",
        "patch_status",
        "read_config_map",
        "read_secret",
    ]
    for name in methods:
        assert _parameters(getattr(FakeKube, name)) == _parameters(getattr(KubeApi, name)), name
        assert _parameters(getattr(Kube, name)) == _parameters(getattr(KubeApi, name)), name


def test_first_reconcile_creates_children_then_a_second_writes_nothing() -> None:
    kube = FakeKube(valid_spec())
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert sorted(kube.writes) == [
        ("apply", "Deployment"),
        ("apply", "Service"),
        ("patch-status", "ModelDeployment"),
    ], "no canary Service while no canary runs: an idle model costs one ClusterIP"
    assert kube.md["status"]["phase"] == "Ready"
    assert kube.events == ["RolloutStarted", "RolloutCompleted"]
    kube.writes.clear()
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert kube.writes == []


def test_drift_in_a_child_is_repaired() -> None:
    kube = FakeKube(valid_spec())
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    kube.objects[("Deployment", "fraud-scorer")]["spec"]["replicas"] = 9
    kube.writes.clear()
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert kube.writes == [("apply", "Deployment")]


def test_turning_autoscaling_off_deletes_only_our_hpa() -> None:
    kube = FakeKube(valid_spec(replicas=None, autoscaling={"maxReplicas": 4}))
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert ("HorizontalPodAutoscaler", "fraud-scorer") in kube.objects
    kube.objects[("HorizontalPodAutoscaler", "someone-elses")] = {
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "someone-elses", "uid": "x", "labels": {"app.kubernetes.io/instance": "fraud-scorer"}},
    }
    kube.md["spec"] = valid_spec(replicas=2)
    kube.writes.clear()
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert ("delete", "HorizontalPodAutoscaler") in kube.writes
    assert ("HorizontalPodAutoscaler", "fraud-scorer") not in kube.objects
    assert ("HorizontalPodAutoscaler", "someone-elses") in kube.objects


def test_an_object_we_do_not_own_is_never_taken_over() -> None:
    kube = FakeKube(valid_spec())
    kube.objects[("Service", "fraud-scorer")] = {"kind": "Service", "metadata": {"name": "fraud-scorer", "uid": "u"}}
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert ("apply", "Service") not in kube.writes
    degraded = next(c for c in kube.md["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "NameConflict"
    assert "Service ns/fraud-scorer already exists" in degraded["message"]


@pytest.mark.parametrize("spec", [valid_spec(replicas=-2), valid_spec(model={"name": "x"})])
def test_invalid_spec_touches_no_child(spec) -> None:
    kube = FakeKube(spec)
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert kube.writes == [("patch-status", "ModelDeployment")]
    assert kube.md["status"]["phase"] == "Degraded"
    assert kube.events == ["SpecRejected"]


def test_api_rejection_of_a_child_is_reported_as_invalid_spec() -> None:
    kube = FakeKube(valid_spec())
    kube.reject = "yes"
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    ready = next(c for c in kube.md["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "the API server rejected Deployment fraud-scorer" in ready["message"]


def test_transient_api_errors_propagate_for_a_retry() -> None:
    kube = FakeKube(valid_spec())

    def broken(*_args):
        raise ApiException(status=503, reason="Service Unavailable")

    kube.list_children = broken  # type: ignore[method-assign]  # the API server fails mid-reconcile
    with pytest.raises(ApiException):
        Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert "status" not in kube.md


def test_a_deleted_object_is_left_alone() -> None:
    kube = FakeKube(valid_spec())
    kube.get_modeldeployment = lambda *_: None  # type: ignore[method-assign]  # deleted since it was queued
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert kube.writes == []
    assert json.dumps(kube.objects) == "{}"


def test_ended_canaries_are_counted_even_with_a_full_history() -> None:
    from prometheus_client import REGISTRY

    from modeldeploy.core.api import ModelDeploymentStatus, RollbackStatus, ServedModel
    from modeldeploy.core.rollout import Decision
    from modeldeploy.core.status import Event
    from modeldeploy.reconcile import _count_outcomes

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    model = ServedModel(name="m", version="2", uri="s3://m/2")
    status = ModelDeploymentStatus(
        last_rollback=RollbackStatus(revision="r2", model=model, reason="AnalysisFailed", message="x", at="t")
    )
    before = value("modeldeploy_rollbacks_total", reason="AnalysisFailed")
    outcomes = value("modeldeploy_rollout_outcomes_total", outcome="RolledBack")
    decision = Decision(False, None, False, 0, status, [Event("Warning", "RolledBack", "x"), Event("Normal", "X", "")])
    _count_outcomes(decision)
    assert value("modeldeploy_rollbacks_total", reason="AnalysisFailed") == before + 1
    assert value("modeldeploy_rollout_outcomes_total", outcome="RolledBack") == outcomes + 1


@pytest.mark.parametrize(
    ("traffic", "kind", "router"),
    [
        ({"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}}, "HTTPRoute", "gatewayAPI"),
        ({"router": "istio"}, "VirtualService", "istio"),
        ({"router": "nginx", "nginx": {"host": "fraud.example.com"}}, "Ingress", "nginx"),
    ],
)
def test_a_router_kind_the_cluster_does_not_serve_is_reported(traffic: dict[str, Any], kind: str, router: str) -> None:
    kube = FakeKube(valid_spec(traffic=traffic))
    kube.not_served.add(kind)
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    degraded = next(c for c in kube.md["status"]["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RouterUnavailable")
    assert f"the cluster does not serve {kind} (" in degraded["message"]
    assert f"which the {router} traffic router writes" in degraded["message"]


def test_pods_are_read_for_a_digest_only_while_one_can_still_come() -> None:
    """A LIST of pods per reconcile costs the API server a scan of the namespace's pods: it is made while the
    pods are not ready, and for a short while after, never for an object that has long been Ready (every object
    after a restart)."""
    kube = FakeKube(valid_spec())  # an s3:// model: its pods' fetch reports a digest
    reconciler = Reconciler(kube)
    reconciler.reconcile("ns", "fraud-scorer")
    reconciler.reconcile("ns", "fraud-scorer")
    assert kube.md["status"]["phase"] == "Ready"
    kube.reads.clear()
    reconciler.reconcile("ns", "fraud-scorer")
    assert ("list", "Pod") in kube.reads, "just became ready: a digest may still be reported"
    ready = next(c for c in kube.md["status"]["conditions"] if c["type"] == "Ready")
    ready["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    kube.reads.clear()
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert ("list", "Pod") not in kube.reads, "long Ready: its pods will report nothing new"
