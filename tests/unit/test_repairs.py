"""Repairs say so, refused writes are reported once, and the apply body carries any Unicode."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import pytest
from kubernetes.client.exceptions import ApiException

from fake_kube import FakeKube
from modeldeploy.adapters.kube import Kube
from modeldeploy.core.repairs import ChildMemory, differences
from modeldeploy.core.status import Event
from modeldeploy.reconcile import Reconciler
from specs import model_version, valid_spec

KEY = ("ns", "fraud-scorer")


class Recording(FakeKube):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.posted: list[Event] = []

    def emit_event(self, owner: dict[str, Any], event: Event) -> None:
        super().emit_event(owner, event)
        self.posted.append(event)

    def repairs(self) -> list[tuple[str, str, str]]:
        return [(e.type, e.reason, e.message) for e in self.posted if e.reason.startswith("Child")]


def settled() -> tuple[Recording, Reconciler]:
    """Children created, then seen live by a second reconcile."""
    kube = Recording(valid_spec())
    reconciler = Reconciler(kube)
    reconciler.reconcile(*KEY)
    reconciler.reconcile(*KEY)
    return kube, reconciler


def test_a_child_edited_by_someone_else_is_set_back_with_an_event_that_names_the_change() -> None:
    kube, reconciler = settled()
    deployment = kube.objects[("Deployment", "fraud-scorer")]
    deployment["spec"]["replicas"] = 9
    deployment["metadata"]["resourceVersion"] = "999"
    reconciler.reconcile(*KEY)
    assert kube.objects[("Deployment", "fraud-scorer")]["spec"]["replicas"] == 3
    assert kube.repairs() == [
        (
            "Warning",
            "ChildRepaired",
            "Restored Deployment fraud-scorer: it was changed by someone else (spec.replicas 9 → 3)",
        )
    ]
    kube.posted.clear()
    reconciler.reconcile(*KEY)
    assert kube.repairs() == [], "said once"


def test_a_child_deleted_by_someone_else_is_recreated_with_an_event() -> None:
    kube, reconciler = settled()
    del kube.objects[("Service", "fraud-scorer")]
    reconciler.reconcile(*KEY)
    assert ("Service", "fraud-scorer") in kube.objects
    assert kube.repairs() == [
        ("Warning", "ChildRecreated", "Recreated Service fraud-scorer: it was deleted by someone else")
    ]


def test_our_own_changes_and_children_never_seen_are_not_repairs() -> None:
    kube, reconciler = settled()
    kube.md["spec"] = valid_spec(replicas=5)  # the spec changed: the Deployment differs because we want it to
    kube.md["metadata"]["generation"] = 2
    reconciler.reconcile(*KEY)
    assert kube.objects[("Deployment", "fraud-scorer")]["spec"]["replicas"] == 5
    fresh = Recording(valid_spec())
    first = Reconciler(fresh)
    first.reconcile(*KEY)
    fresh.objects.clear()  # a read that lags behind our own first writes
    first.reconcile(*KEY)
    assert kube.repairs() == []
    assert fresh.repairs() == []


def test_after_a_restart_the_status_tells_which_deployments_existed() -> None:
    kube, _ = settled()
    kube.md["spec"]["model"] = model_version("8")
    kube.md["spec"]["rollout"] = {"steps": [{"setWeight": 20}, {"pause": {}}]}
    kube.md["metadata"]["generation"] = 2
    before = Reconciler(kube)
    for _ in range(3):
        before.reconcile(*KEY)
    assert kube.md["status"]["canary"]["replicas"] >= 1
    del kube.objects[("Deployment", "fraud-scorer-canary")]
    edited = kube.objects[("Service", "fraud-scorer")]
    edited["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "someone"
    restarted = Reconciler(kube)  # knows nothing yet
    restarted.reconcile(*KEY)
    assert ("Deployment", "fraud-scorer-canary") in kube.objects
    assert [r[1:] for r in kube.repairs()] == [
        ("ChildRecreated", "Recreated Deployment fraud-scorer-canary: it was deleted by someone else")
    ], "the edit is set back silently: without memory, who made it cannot be told"


def test_a_stale_read_of_our_own_write_is_not_someone_elses_change() -> None:
    memory = ChildMemory()
    desired = {"kind": "Service", "metadata": {"name": "s"}, "spec": {"port": 1}}
    seen = {"kind": "Service", "metadata": {"name": "s", "resourceVersion": "10"}, "spec": {"port": 1}}
    written = {"kind": "Service", "metadata": {"name": "s", "resourceVersion": "11"}, "spec": {"port": 1}}
    memory.remember(KEY, "u", [desired], {("Service", "s"): seen}, {("Service", "s"): written}, set())
    stale = {"kind": "Service", "metadata": {"name": "s", "resourceVersion": "10"}, "spec": {"port": 0}}
    assert memory.judge(KEY, "u", desired, stale) is None
    edited = {"kind": "Service", "metadata": {"name": "s", "resourceVersion": "12"}, "spec": {"port": 0}}
    repair = memory.judge(KEY, "u", desired, edited)
    assert repair is not None
    assert repair.message == "Restored Service s: it was changed by someone else (spec.port 0 → 1)"
    assert memory.judge(KEY, "another-uid", desired, edited) is None, "a namesake starts over"


def test_differences_name_each_path() -> None:
    live = {"spec": {"rules": [{"backendRefs": [{"name": "a", "weight": 100}, {"name": "b", "weight": 50}]}]}}
    desired = {"spec": {"rules": [{"backendRefs": [{"name": "a", "weight": 75}, {"name": "b", "weight": 25}]}]}}
    assert differences(live, desired) == [
        "spec.rules[0].backendRefs[0].weight 100 → 75",
        "spec.rules[0].backendRefs[1].weight 50 → 25",
    ]
    assert differences({"a": [1]}, {"a": [1, 2], "b": "x"}) == ["a 1 items → 2", 'b absent → "x"']


# -- writes the API server refuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "reason", "says"),
    [
        (413, "Request entity too large: limit is 3145728", "ApplyFailed", "larger than the API server stores"),
        (500, "etcdserver: request is too large", "ApplyFailed", "larger than the API server stores"),
        (500, "Internal error occurred: failed to allocate a serviceIP: range is full", "ApplyFailed", "range is full"),
        (409, "Operation cannot be fulfilled: the object has been modified", "ApplyFailed", "has been modified"),
        (403, 'services "x" is forbidden: exceeded quota: q, requested: services=1', "ApplyFailed", "exceeded quota"),
        (422, 'Deployment.apps "x" is invalid: metadata.annotations: Too long', "InvalidSpec", "Too long"),
    ],
)
def test_a_refused_write_is_reported_once_and_retried_with_backoff(
    status: int, message: str, reason: str, says: str
) -> None:
    kube = Recording(valid_spec())
    original = kube.apply
    refusing = True

    def refused(*_: Any) -> NoReturn:
        error = ApiException(status=status, reason="Refused")
        error.body = json.dumps({"kind": "Status", "message": message, "code": status})
        raise error

    kube.apply = lambda obj: refused() if refusing else original(obj)  # type: ignore[method-assign]
    reconciler = Reconciler(kube)
    delays = [reconciler.reconcile(*KEY) for _ in range(4)]  # never raises: no traceback per try
    degraded = next(c for c in kube.md["status"]["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", reason)
    assert message in degraded["message"]
    assert says in degraded["message"]
    assert delays == [1.0, 2.0, 4.0, 8.0]
    warnings = [e.reason for e in kube.posted if e.type == "Warning"]
    assert warnings == [{"ApplyFailed": "ApplyFailed", "InvalidSpec": "SpecRejected"}[reason]], "one Event"
    assert kube.writes.count(("patch-status", "ModelDeployment")) == 1, "one status write"
    refusing = False
    assert reconciler.reconcile(*KEY) is None
    assert kube.md["status"]["phase"] == "Ready"
    assert "Recovered" in [e.reason for e in kube.posted]
    refusing = True
    kube.objects.clear()
    assert reconciler.reconcile(*KEY) == 1.0, "the backoff starts over after a success"


# -- the apply body -----------------------------------------------------------------------------------------------


class Response:
    status = 200

    def __init__(self, body: bytes) -> None:
        self.data = body

    def read(self) -> None:
        pass


class ApiClient:
    """Records what `Kube.apply` sends through the generated client's request plumbing."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, str], bytes]] = []

    def param_serialize(self, method: str, path: str, **kwargs: Any) -> tuple[Any, ...]:
        query = "&".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in kwargs["query_params"])
        return method, f"https://api{path}?{query}", kwargs["header_params"], None, None

    def call_api(self, method: str, url: str, header_params: dict[str, str], body: bytes) -> Response:
        self.sent.append((method, url, header_params, body))
        return Response(body)


def test_the_apply_body_is_utf8_json_so_any_unicode_reaches_the_api_server() -> None:
    kube = Kube.__new__(Kube)
    kube.api_client = ApiClient()  # type: ignore[assignment]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fraud", "namespace": "risk"},
        "spec": {"template": {"spec": {"containers": [{"name": "s", "env": [{"name": "E", "value": "🚀 é"}]}]}}},
    }
    assert kube.apply(deployment) == deployment
    ((method, url, headers, body),) = kube.api_client.sent  # type: ignore[attr-defined]
    assert (method, headers["Content-Type"]) == ("PATCH", "application/apply-patch+yaml")
    assert url == "https://api/apis/apps/v1/namespaces/risk/deployments/fraud?fieldManager=modeldeploy&force=true"
    assert "🚀 é".encode() in body, "raw UTF-8, never \\ud83d\\ude80 surrogate escapes (the YAML decoder refuses them)"
    assert b"\\ud83d" not in body
