"""The reconcile loop against an in-memory API: what it writes, and when it writes nothing."""

import copy
import json

import pytest
from kubernetes.client.exceptions import ApiException

from modeldeploy.reconcile import Reconciler
from specs import valid_spec


class FakeKube:
    def __init__(self, spec, name="fraud-scorer"):
        self.md = {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "ns", "uid": "uid-1", "generation": 1},
            "spec": spec,
        }
        self.objects: dict[tuple[str, str], dict] = {}
        self.writes: list[tuple[str, str]] = []
        self.events: list[str] = []
        self.reject: str | None = None

    def get_modeldeployment(self, namespace, name):
        return copy.deepcopy(self.md)

    def get(self, kind, namespace, name):
        return copy.deepcopy(self.objects.get((kind, name)))

    def list_children(self, kind, namespace, owner_name):
        return [
            copy.deepcopy(o)
            for (k, _), o in self.objects.items()
            if k == kind and o["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == owner_name
        ]

    def apply(self, obj):
        if self.reject:
            raise ApiException(status=422, reason="Unprocessable Entity")
        self.writes.append(("apply", obj["kind"]))
        live = copy.deepcopy(obj)
        live["metadata"]["uid"] = f"uid-{obj['kind']}"
        live["status"] = {
            "observedGeneration": 1,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "conditions": [{"type": "Available", "status": "True"}],
        }
        live["metadata"]["generation"] = 1
        self.objects[(obj["kind"], obj["metadata"]["name"])] = live
        return copy.deepcopy(live)

    def delete(self, kind, namespace, name, uid):
        self.writes.append(("delete", kind))
        del self.objects[(kind, name)]

    def patch_status(self, namespace, name, patch):
        self.writes.append(("patch-status", "ModelDeployment"))
        status = self.md.setdefault("status", {})
        for key, value in patch.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value

    def emit_event(self, owner, event):
        self.events.append(event.reason)


def test_first_reconcile_creates_children_then_a_second_writes_nothing() -> None:
    kube = FakeKube(valid_spec())
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert sorted(kube.writes) == [
        ("apply", "Deployment"),
        ("apply", "Service"),
        ("apply", "Service"),
        ("patch-status", "ModelDeployment"),
    ]
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

    kube.list_children = broken
    with pytest.raises(ApiException):
        Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert "status" not in kube.md


def test_a_deleted_object_is_left_alone() -> None:
    kube = FakeKube(valid_spec())
    kube.get_modeldeployment = lambda *_: None
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert kube.writes == []
    assert json.dumps(kube.objects) == "{}"


def test_prometheus_credentials_come_from_the_named_secret() -> None:
    import httpx

    from modeldeploy.core.api import PrometheusSource
    from modeldeploy.reconcile import BearerAuth, ReconcileError

    kube = FakeKube(valid_spec())
    secrets = {"prom-token": {"token": "s3cret"}, "prom-basic": {"username": "u", "password": "p"}}
    kube.read_secret = lambda namespace, name: secrets[name]
    reconciler = Reconciler(kube)

    bearer = reconciler._prometheus_auth(
        "ns", PrometheusSource(address="http://p:9090", bearer_token_secret={"name": "prom-token", "key": "token"})
    )
    request = next(bearer.auth_flow(httpx.Request("GET", "http://p:9090/api/v1/query")))
    assert isinstance(bearer, BearerAuth)
    assert request.headers["Authorization"] == "Bearer s3cret"
    basic = reconciler._prometheus_auth("ns", PrometheusSource(address="http://p:9090", basic_auth_secret="prom-basic"))
    assert isinstance(basic, httpx.BasicAuth)
    assert reconciler._prometheus_auth("ns", PrometheusSource(address="http://p:9090")) is None
    with pytest.raises(ReconcileError, match="has no key 'missing'"):
        reconciler._prometheus_auth(
            "ns",
            PrometheusSource(address="http://p:9090", bearer_token_secret={"name": "prom-token", "key": "missing"}),
        )


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
