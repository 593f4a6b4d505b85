"""The MLflow registry adapter over httpx.MockTransport: every answer maps to a version or a reason."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from modeldeploy.adapters.registries.mlflow import MlflowClient, RegistryError
from modeldeploy.core.api import MlflowRegistry, RegistryReference

SETTINGS = MlflowRegistry(tracking_uri="http://mlflow.test:5000")
ALIAS = RegistryReference(name="fraud", version=None, alias="champion")
VERSION = RegistryReference(name="fraud", version="3", alias=None)


def client(
    handler: Callable[[httpx.Request], httpx.Response], credentials: dict[str, str] | None = None
) -> MlflowClient:
    return MlflowClient(SETTINGS, credentials, timeout=2, transport=httpx.MockTransport(handler))


def registry(requests: list[httpx.Request], version: str = "7", status: str = "READY") -> Callable[..., httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        path = request.url.path
        if path.endswith("registered-models/alias") or path.endswith("model-versions/get"):
            body = {"model_version": {"name": "fraud", "version": version, "run_id": "run-1", "status": status}}
            return httpx.Response(200, json=body)
        if path.endswith("model-versions/get-download-uri"):
            return httpx.Response(200, json={"artifact_uri": f"s3://mlflow/1/run-1/artifacts/model-{version}"})
        if path.endswith("model-versions/set-tag"):
            return httpx.Response(200, json={})
        return httpx.Response(404, json={"error_code": "ENDPOINT_NOT_FOUND"})

    return handle


def test_an_alias_resolves_to_its_version_and_download_uri() -> None:
    requests: list[httpx.Request] = []
    answer = client(registry(requests)).resolve(ALIAS)
    assert (answer.version, answer.download_uri, answer.run_id) == (
        "7",
        "s3://mlflow/1/run-1/artifacts/model-7",
        "run-1",
    )
    assert dict(requests[0].url.params) == {"name": "fraud", "alias": "champion"}
    assert dict(requests[1].url.params) == {"name": "fraud", "version": "7"}


def test_a_version_is_looked_up_as_named() -> None:
    requests: list[httpx.Request] = []
    assert client(registry(requests, version="3")).resolve(VERSION).version == "3"
    assert requests[0].url.path == "/api/2.0/mlflow/model-versions/get"


def test_a_token_with_a_trailing_newline_is_sent_clean() -> None:
    requests: list[httpx.Request] = []
    client(registry(requests), {"MLFLOW_TRACKING_TOKEN": "s3cr3t\n"}).resolve(ALIAS)
    assert requests[0].headers["Authorization"] == "Bearer s3cr3t"


def test_basic_auth_from_user_and_password() -> None:
    requests: list[httpx.Request] = []
    client(registry(requests), {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}).resolve(ALIAS)
    assert requests[0].headers["Authorization"] == "Basic dTpw"


def _failing(response: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    return handle


@pytest.mark.parametrize(
    ("answer", "reason", "message"),
    [
        (httpx.ConnectError("refused"), "RegistryUnavailable", "unreachable: ConnectError"),
        (httpx.ReadTimeout("slow"), "RegistryUnavailable", "unreachable: ReadTimeout"),
        (httpx.Response(502, text="<html>bad gateway</html>"), "RegistryUnavailable", "HTTP 502 without JSON"),
        (
            httpx.Response(401, json={"error_code": "UNAUTHENTICATED"}),
            "RegistryUnauthorized",
            "refused the credentials",
        ),
        (
            httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no alias"}),
            "AliasNotFound",
            "the registry has no alias 'champion' of model 'fraud'",
        ),
        (httpx.Response(200, json={"model_version": {"version": "x"}}), "RegistryError", "without a model version"),
        (httpx.Response(200, content=json.dumps([1, 2])), "RegistryUnavailable", "without JSON"),
    ],
)
def test_every_odd_answer_is_a_reason(answer: httpx.Response | Exception, reason: str, message: str) -> None:
    with pytest.raises(RegistryError) as raised:
        client(_failing(answer)).resolve(ALIAS)
    assert raised.value.reason == reason
    assert message in raised.value.message


def test_a_version_still_registering_is_not_served() -> None:
    with pytest.raises(RegistryError) as raised:
        client(registry([], status="PENDING_REGISTRATION")).resolve(ALIAS)
    assert raised.value.reason == "ModelVersionNotReady"


def test_tags_are_written_one_by_one() -> None:
    requests: list[httpx.Request] = []
    client(registry(requests)).tag("fraud", "7", {"modeldeploy.outcome": "Promoted", "modeldeploy.reason": "x"})
    bodies = [json.loads(r.content) for r in requests]
    assert bodies == [
        {"name": "fraud", "version": "7", "key": "modeldeploy.outcome", "value": "Promoted"},
        {"name": "fraud", "version": "7", "key": "modeldeploy.reason", "value": "x"},
    ]
