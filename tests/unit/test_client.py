"""The SDK (modeldeploy.client): the outcome of the applied generation, and every API answer mapped to one line."""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modeldeploy.client import (
    Client,
    ClusterUnreachableError,
    CRDNotInstalledError,
    ForbiddenError,
    InvalidSpecError,
    NoAnswerError,
    NotFoundError,
    RolloutFailedError,
)


def sdk() -> Client:
    configuration = k8s.Configuration(host="https://api.example:6443")
    return Client(namespace="risk", api_client=k8s.ApiClient(configuration))


def ready(generation: int, observed: int, revision: str, version: str = "2") -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud", "generation": generation, "resourceVersion": f"{generation}-{observed}"},
        "status": {
            "observedGeneration": observed,
            "targetRevision": revision,
            "stable": {"revision": revision, "model": {"version": version}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "X", "observedGeneration": observed}],
            "history": [{"revision": revision, "outcome": "Promoted"}],
        },
    }


def test_wait_skips_the_status_of_the_previous_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([ready(3, 2, "old", "1"), ready(3, 2, "old", "1"), ready(3, 3, "new")])
    client = sdk()
    monkeypatch.setattr(client, "get", lambda name, namespace=None: next(answers))
    seen: list[str] = []
    result = client.wait(
        "fraud", timeout=10, generation=3, poll=0, on_change=lambda md: seen.append(md["metadata"]["resourceVersion"])
    )
    assert (result.outcome, result.reason, result.exit_code) == ("Succeeded", "revision new (version 2) promoted", 0)
    assert seen == ["3-2", "3-2", "3-3"], "every poll"


def test_wait_times_out_with_where_it_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    client = sdk()
    monkeypatch.setattr(client, "get", lambda name, namespace=None: ready(4, 3, "old"))
    result = client.wait("fraud", timeout=0.05, poll=0.01)
    assert (result.outcome, result.exit_code) == ("TimedOut", 2)
    assert result.reason == "timed out after 0.05s: the operator has not observed generation 4 (is it running?)"
    with pytest.raises(RolloutFailedError) as raised:
        result.check()
    assert raised.value.exit_code == 2
    assert str(raised.value) == f"risk/fraud TimedOut: {result.reason}"


def api_error(status: int, body: dict[str, Any] | None = None, reason: str = "") -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps(body) if body is not None else None
    return error


@pytest.mark.parametrize(
    ("raised", "expected", "message"),
    [
        (
            api_error(404, {"message": "the server could not find the requested resource", "details": {}}),
            CRDNotInstalledError,
            "the ModelDeployment CRD (modeldeployments.modeldeploy.io/v1alpha1) is not installed",
        ),
        (
            api_error(404, {"message": 'modeldeployments "fraud" not found', "details": {"name": "fraud"}}),
            NotFoundError,
            "ModelDeployment risk/fraud: not found",
        ),
        (
            api_error(
                404, {"message": 'namespaces "risk" not found', "details": {"name": "risk", "kind": "namespaces"}}
            ),
            NotFoundError,
            'ModelDeployment risk/fraud: namespaces "risk" not found',
        ),
        (
            api_error(403, {"message": 'modeldeployments "fraud" is forbidden: User "v" cannot get\nresource'}),
            ForbiddenError,
            'forbidden: modeldeployments "fraud" is forbidden: User "v" cannot get resource',
        ),
        (
            api_error(422, {"message": "spec.model: Invalid value: model.uri must start with one of s3://"}),
            InvalidSpecError,
            "refused by the API server: spec.model: Invalid value: model.uri must start with one of s3://",
        ),
        (
            urllib3.exceptions.MaxRetryError(None, "/apis", reason=ConnectionRefusedError("Connection refused")),  # type: ignore[arg-type]
            ClusterUnreachableError,
            "cannot reach the API server at https://api.example:6443: Connection refused",
        ),
    ],
)
def test_api_answers_become_one_line_errors(
    monkeypatch: pytest.MonkeyPatch, raised: Exception, expected: type[Exception], message: str
) -> None:
    client = sdk()

    def fail(*_: Any, **__: Any) -> None:
        raise raised

    monkeypatch.setattr(client.custom, "get_namespaced_custom_object", fail)
    with pytest.raises(expected) as caught:
        client.get("fraud")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_control_nobody_answers_raises_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    client = sdk()
    monkeypatch.setattr(client, "get", lambda name, namespace=None: {"status": {"lastAction": {"id": "other"}}})
    monkeypatch.setattr(client, "_merge_patch", lambda *_: {})
    monkeypatch.setattr(client, "whoami", lambda: "ci-bot")
    with pytest.raises(NoAnswerError, match=r"has not answered within 0\.1s") as caught:
        client.promote("fraud", wait=0.1)
    assert caught.value.exit_code == 2
