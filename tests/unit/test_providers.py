"""Metric providers against httpx.MockTransport: Prometheus (headers, TLS, bearer, basic, SigV4) and web (JSONPath).

Every answer a provider can get maps to a value, no data, or an error with a message; none raises.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import certifi
import httpx
import pytest
from kubernetes.client.exceptions import ApiException

from modeldeploy.adapters import providers
from modeldeploy.adapters.providers import PROVIDERS, Context, ProviderError
from modeldeploy.adapters.providers.base import verify, where
from modeldeploy.adapters.providers.prometheus import PrometheusProvider
from modeldeploy.adapters.providers.sigv4 import SigV4Auth
from modeldeploy.adapters.providers.web import WebProvider
from modeldeploy.core.analysis import MetricQuery, Raw, evaluate, queries
from modeldeploy.core.api import Analysis, AnalysisMetric, PrometheusSource, Tls, WebMetric

Handler = Callable[[httpx.Request], httpx.Response]
AT = "2026-11-30T12:00:00Z"


class Store:
    """Secrets and ConfigMaps of one namespace; an unknown name is a 404, a name in `forbidden` a 403."""

    def __init__(
        self, secrets: dict[str, dict[str, str]] | None = None, config_maps: dict[str, dict[str, str]] | None = None
    ):
        self.secrets = secrets or {}
        self.config_maps = config_maps or {}
        self.forbidden: set[str] = set()
        self.reads: list[str] = []

    def _read(self, kind: str, data: dict[str, dict[str, str]], name: str) -> dict[str, str]:
        self.reads.append(f"{kind}/{name}")
        if name in self.forbidden:
            raise ApiException(status=403, reason="Forbidden")
        if name not in data:
            raise ApiException(status=404, reason="Not Found")
        return dict(data[name])

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        return self._read("Secret", self.secrets, name)

    def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        return self._read("ConfigMap", self.config_maps, name)


def context(store: Store | None = None) -> Context:
    return Context("risk", "fraud", store or Store())


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {}, "value": [1.0, value]} for value in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def recorder(answer: Handler) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return answer(request)

    return seen, httpx.MockTransport(handle)


def plan(
    metrics: list[dict[str, Any]], prometheus: dict[str, Any] | None = None, stable: str | None = "s1"
) -> list[MetricQuery]:
    analysis = Analysis.model_validate({"metrics": metrics, **({"prometheus": prometheus} if prometheus else {})})
    return queries(analysis, "modelserver", "risk", "fraud", "c1", stable)


PROM = {"address": "http://prom:9090"}
SUCCESS = {"name": "ok", "builtin": "successRate", "min": 0.9}


def measure_one(
    metric: dict[str, Any], answer: Handler, prometheus: dict[str, Any] | None = None, store: Store | None = None
) -> tuple[Raw, list[httpx.Request]]:
    seen, transport = recorder(answer)
    (query,) = plan([metric], prometheus)
    (raw,) = providers.measure([query], context(store), transport)
    return raw, seen


# -- the registry ---------------------------------------------------------------------------------------------


def test_every_provider_the_api_names_is_registered() -> None:
    from typing import get_args

    from modeldeploy.core.api import ProviderName

    assert set(PROVIDERS) == set(get_args(ProviderName))
    assert PROVIDERS["prometheus"] is PrometheusProvider
    assert PROVIDERS["web"] is WebProvider


def test_metrics_with_the_same_settings_share_one_provider_and_credentials_are_read_once() -> None:
    store = Store(secrets={"token": {"token": "t0k"}})
    prometheus = {**PROM, "bearerTokenSecret": {"name": "token", "key": "token"}}
    seen, transport = recorder(lambda _: httpx.Response(200, json=vector("0.99")))
    planned = plan([SUCCESS, {"name": "q", "query": "vector(1)", "max": 2}], prometheus)
    raws = providers.measure(planned, context(store), transport)
    assert [r.canary for r in raws] == [0.99, 0.99]
    assert store.reads == ["Secret/token"]
    assert len(seen) == 2


def test_a_provider_that_cannot_be_built_is_an_error_for_each_of_its_metrics_only() -> None:
    prometheus = {**PROM, "bearerTokenSecret": {"name": "missing", "key": "token"}}
    web = {"name": "acc", "web": {"url": "http://acc/score", "jsonPath": "$.accuracy"}, "min": 0.9}
    _, transport = recorder(lambda _: httpx.Response(200, json={"accuracy": 0.95}))
    raws = providers.measure(plan([SUCCESS, web], prometheus), context(), transport)
    assert raws[0].error == "cannot read Secret risk/missing: Not Found"
    assert raws[1] == Raw(canary=0.95, stable=None)


# -- Prometheus ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(200, json=vector("0.97")), Raw(canary=0.97, stable=None)),
        (httpx.Response(200, json=vector()), Raw(canary=None, stable=None)),
        (httpx.Response(200, json=vector("NaN")), Raw(canary=None, stable=None)),
        (
            httpx.Response(200, json=vector("1", "2")),
            Raw(canary=None, error="the query returned 2 series; aggregate it to one"),
        ),
        (
            httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "parse error"}),
            Raw(canary=None, error="Prometheus rejected the query (bad_data): parse error"),
        ),
        (
            httpx.Response(401, text="no org id"),
            Raw(canary=None, error="Prometheus answered HTTP 401 without JSON"),
        ),
    ],
    ids=["value", "empty", "nan", "two-series", "rejected", "not-json"],
)
def test_prometheus_answers_map_to_value_no_data_or_error(answer: httpx.Response, expected: Raw) -> None:
    raw, seen = measure_one(SUCCESS, lambda _: answer, PROM)
    assert raw == expected
    assert seen[0].url.path == "/api/v1/query"
    assert 'modeldeploy_io_revision="c1"' in seen[0].url.params["query"]


def test_prometheus_unreachable_is_an_error_not_a_crash() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    raw, _ = measure_one(SUCCESS, refuse, PROM)
    assert raw.error == "Prometheus at http://prom:9090 unreachable: ConnectError"


def test_prometheus_sends_headers_from_values_and_secrets() -> None:
    store = Store(secrets={"tenant": {"id": "team-b"}})
    prometheus = {
        "address": "http://mimir:8080/prometheus",
        "headers": [
            {"name": "X-Scope-OrgID", "valueFrom": {"secretKeyRef": {"name": "tenant", "key": "id"}}},
            {"name": "X-Extra", "value": "1"},
        ],
    }
    raw, seen = measure_one(SUCCESS, lambda _: httpx.Response(200, json=vector("1")), prometheus, store)
    assert raw.canary == 1.0
    assert seen[0].headers["X-Scope-OrgID"] == "team-b"
    assert seen[0].headers["X-Extra"] == "1"
    assert seen[0].url.path == "/prometheus/api/v1/query", "a path prefix in the address is kept"


def test_prometheus_bearer_token_and_basic_auth_come_from_the_named_secret() -> None:
    store = Store(secrets={"token": {"token": "s3cret"}, "basic": {"username": "u", "password": "p"}})
    ok = lambda _: httpx.Response(200, json=vector("1"))  # noqa: E731
    _, seen = measure_one(SUCCESS, ok, {**PROM, "bearerTokenSecret": {"name": "token", "key": "token"}}, store)
    assert seen[0].headers["Authorization"] == "Bearer s3cret"
    _, seen = measure_one(SUCCESS, ok, {**PROM, "basicAuthSecret": "basic"}, store)
    assert seen[0].headers["Authorization"] == httpx.BasicAuth("u", "p")._auth_header
    _, seen = measure_one(SUCCESS, ok, PROM, store)
    assert "Authorization" not in seen[0].headers


@pytest.mark.parametrize(
    ("prometheus", "forbidden", "message"),
    [
        ({"bearerTokenSecret": {"name": "token", "key": "nope"}}, set(), "Secret risk/token has no key 'nope'"),
        ({"basicAuthSecret": "token"}, set(), "Secret risk/token needs keys username and password"),
        (
            {"bearerTokenSecret": {"name": "token", "key": "token"}},
            {"token"},
            "cannot read Secret risk/token: Forbidden",
        ),
        (
            {"headers": [{"name": "X-Scope-OrgID", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "id"}}}]},
            set(),
            "cannot read Secret risk/gone: Not Found",
        ),
        ({"tls": {"caConfigMap": {"name": "ca", "key": "nope"}}}, set(), "ConfigMap risk/ca has no key 'nope'"),
        (
            {"tls": {"caSecret": {"name": "token", "key": "token"}}},
            set(),
            "the CA bundle in Secret risk/token is not PEM",
        ),
    ],
    ids=["missing-key", "basic-without-keys", "forbidden", "header-secret-missing", "ca-key-missing", "ca-not-pem"],
)
def test_unusable_credentials_are_an_error_that_names_them_and_never_their_value(
    prometheus: dict[str, Any], forbidden: set[str], message: str
) -> None:
    store = Store(secrets={"token": {"token": "s3cret"}}, config_maps={"ca": {"ca.crt": "x"}})
    store.forbidden = forbidden
    raw, seen = measure_one(SUCCESS, lambda _: httpx.Response(200, json=vector("1")), {**PROM, **prometheus}, store)
    assert raw.error is not None
    assert raw.error.startswith(message)
    assert "s3cret" not in raw.error
    assert seen == [], "nothing is sent without the credentials"


def test_tls_verification_system_cas_a_bundle_from_a_secret_or_configmap_or_none() -> None:
    pem = Path(certifi.where()).read_text()
    store = Store(secrets={"ca": {"ca.crt": pem}}, config_maps={"ca": {"ca.crt": pem}})
    assert verify(None, context(store)) is True
    assert verify(Tls(insecure_skip_verify=True), context(store)) is False
    for tls in (Tls(ca_secret={"name": "ca", "key": "ca.crt"}), Tls(ca_config_map={"name": "ca", "key": "ca.crt"})):
        checked = verify(tls, context(store))
        assert isinstance(checked, ssl.SSLContext)
        assert checked.verify_mode == ssl.CERT_REQUIRED
        assert checked.cert_store_stats()["x509_ca"] > 10


def test_prometheus_is_online_when_it_answers_vector_1() -> None:
    source = PrometheusSource.model_validate(PROM)
    up = PrometheusProvider.build(
        source, context(), httpx.MockTransport(lambda _: httpx.Response(200, json=vector("1")))
    )
    assert up.is_online()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    down = PrometheusProvider.build(source, context(), httpx.MockTransport(refuse))
    assert not down.is_online()


def test_prometheus_histograms_for_drift() -> None:
    buckets = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"le": "0.5"}, "value": [1, "40"]},
                {"metric": {"le": "+Inf"}, "value": [1, "100"]},
            ],
        },
    }
    drift = {"name": "drift", "builtin": "predictionDrift", "max": 0.2}
    raw, seen = measure_one(drift, lambda _: httpx.Response(200, json=buckets), PROM)
    assert raw.canary == {0.5: 40.0, float("inf"): 100.0}
    assert raw.stable == raw.canary
    assert len(seen) == 2, "canary and stable"


# -- SigV4 --------------------------------------------------------------------------------------------------


def _reference_signature(request: httpx.Request, secret: str, region: str, service: str) -> str:
    """SigV4 from the AWS documentation, for a request without a query string, signing host, content-type,
    x-amz-date and x-amz-security-token."""
    amz_date = request.headers["x-amz-date"]
    names = ["content-type", "host", "x-amz-date", "x-amz-security-token"]
    canonical_headers = "".join(f"{n}:{request.headers[n].strip()}\n" for n in names)
    canonical = "\n".join(
        [
            request.method,
            request.url.path,
            "",
            canonical_headers,
            ";".join(names),
            hashlib.sha256(request.content).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_sigv4_signs_each_query_for_amazon_managed_prometheus(monkeypatch: pytest.MonkeyPatch) -> None:
    from awscrt.auth import AwsCredentialsProvider

    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    static = AwsCredentialsProvider.new_static("AKIDEXAMPLE", secret, "session-token")
    monkeypatch.setattr("modeldeploy.adapters.providers.sigv4.default_credentials", lambda: static)
    address = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-0123"
    prometheus = {"address": address, "sigv4": {"region": "eu-west-1"}, "headers": [{"name": "X-Team", "value": "a"}]}
    raw, seen = measure_one(SUCCESS, lambda _: httpx.Response(200, json=vector("0.995")), prometheus)
    assert raw.canary == 0.995
    (request,) = seen
    assert request.method == "POST", "the PromQL goes in the signed body, not the query string"
    assert request.url.path == "/workspaces/ws-0123/api/v1/query"
    assert 'modeldeploy_io_revision="c1"' in parse_qs(request.content.decode())["query"][0]
    authorization = request.headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/aps/aws4_request" in authorization
    assert request.headers["x-amz-date"].endswith("Z")
    assert request.headers["x-amz-security-token"] == "session-token"
    assert request.headers["X-Team"] == "a"
    signature = authorization.rsplit("Signature=", 1)[1]
    assert signature == _reference_signature(request, secret, "eu-west-1", "aps")


def test_sigv4_without_credentials_or_without_awscrt_is_an_error_that_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from awscrt.auth import AwsCredentialsProvider

    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    empty = AwsCredentialsProvider.new_environment()  # the chain's first link, with nothing to find
    monkeypatch.setattr("modeldeploy.adapters.providers.sigv4.default_credentials", lambda: empty)
    prometheus = {"address": "https://aps.example", "sigv4": {"region": "eu-west-1"}}
    raw, seen = measure_one(SUCCESS, lambda _: httpx.Response(200, json=vector("1")), prometheus)
    assert raw.error is not None
    assert raw.error.startswith("SigV4 signing failed (no usable AWS credentials?)")
    assert seen == [], "nothing is sent unsigned"
    monkeypatch.setitem(sys.modules, "awscrt", None)  # as if modeldeploy[aws] were not installed
    with pytest.raises(ProviderError, match=r"install modeldeploy\[aws\]"):
        SigV4Auth("eu-west-1", "aps").sign(httpx.Request("POST", "https://aps.example/api/v1/query"))


# -- web ----------------------------------------------------------------------------------------------------


def web_metric(**web: Any) -> dict[str, Any]:
    return {"name": "accuracy", "web": {"url": "http://acc:8080/score", "jsonPath": "$.accuracy", **web}, "min": 0.9}


@pytest.mark.parametrize(
    ("body", "json_path", "expected"),
    [
        ({"accuracy": 0.93}, "$.accuracy", Raw(canary=0.93)),
        ({"accuracy": 1}, "{$.accuracy}", Raw(canary=1.0)),
        ({"accuracy": "0.91"}, "$.accuracy", Raw(canary=0.91)),
        ({"healthy": True}, "$.healthy", Raw(canary=1.0)),
        ({"healthy": False}, "$.healthy", Raw(canary=0.0)),
        (
            {"metrics": [{"name": "auc", "value": 0.8}, {"name": "f1", "value": 0.7}]},
            "$.metrics[?(@.name=='f1')].value",
            Raw(canary=0.7),
        ),
        ({"accuracy": None}, "$.accuracy", Raw(canary=None)),
        ({"other": 1}, "$.accuracy", Raw(canary=None)),
        ({"accuracy": []}, "$.accuracy", Raw(canary=None)),
        ({"accuracy": "n/a"}, "$.accuracy", Raw(canary=None, error="jsonPath $.accuracy matched 'n/a', not a number")),
        (
            {"accuracy": "NaN"},
            "$.accuracy",
            Raw(canary=None, error="jsonPath $.accuracy matched nan, not a finite number"),
        ),
        (
            {"accuracy": "Infinity"},
            "$.accuracy",
            Raw(canary=None, error="jsonPath $.accuracy matched inf, not a finite number"),
        ),
        (
            {"accuracy": {"v": 1}},
            "$.accuracy",
            Raw(canary=None, error="jsonPath $.accuracy matched an object, not a number"),
        ),
        (
            {"accuracy": [1, 2]},
            "$.accuracy",
            Raw(canary=None, error="jsonPath $.accuracy matched a list, not a number"),
        ),
        (
            {"a": [{"v": 1}, {"v": 2}]},
            "$.a[*].v",
            Raw(canary=None, error="jsonPath $.a[*].v matched 2 values; point it at one"),
        ),
    ],
    ids=[
        "number",
        "argo-braces",
        "numeric-string",
        "true",
        "false",
        "filter",
        "null",
        "no-match",
        "empty-list",
        "string",
        "nan",
        "inf",
        "object",
        "list",
        "two-matches",
    ],
)
def test_web_answers_map_to_value_no_data_or_error(body: Any, json_path: str, expected: Raw) -> None:
    raw, _ = measure_one(web_metric(jsonPath=json_path), lambda _: httpx.Response(200, json=body))
    assert raw == expected


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(503, text="busy"), "http://acc:8080/score answered HTTP 503"),
        (httpx.Response(302, headers={"Location": "/elsewhere"}), "http://acc:8080/score answered HTTP 302"),
        (httpx.Response(200, text="<html>"), "http://acc:8080/score answered HTTP 200 without JSON"),
        (httpx.Response(204), None),
        (httpx.Response(200, text="  \n"), None),
    ],
    ids=["5xx", "redirect", "not-json", "no-content", "blank"],
)
def test_web_non_2xx_is_an_error_and_an_empty_answer_no_data(answer: httpx.Response, error: str | None) -> None:
    raw, _ = measure_one(web_metric(), lambda _: answer)
    assert raw == Raw(canary=None, error=error)


def test_web_messages_never_show_the_query_string() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    raw, _ = measure_one(web_metric(url="http://acc:8080/score?apiKey=s3cret"), refuse)
    assert raw.error == "http://acc:8080/score unreachable: ConnectError"
    assert where("https://user:pw@h:1/p?k=v") == "https://h:1/p"


def test_web_asks_canary_and_stable_separately_with_their_variables() -> None:
    answers = {"canary": 0.97, "stable": 0.95}
    metric = {
        "name": "accuracy",
        "window": "10m",
        "web": {
            "url": "http://acc.{{namespace}}:8080/models/{{name}}/{{track}}?revision={{revision}}&window={{window}}",
            "jsonPath": "$.accuracy",
        },
        "relative": {"maxDecrease": 0.01},
    }
    raw, seen = measure_one(
        metric, lambda r: httpx.Response(200, json={"accuracy": answers[r.url.path.rsplit("/", 1)[1]]})
    )
    assert raw == Raw(canary=0.97, stable=0.95)
    assert [str(r.url) for r in seen] == [
        "http://acc.risk:8080/models/fraud/canary?revision=c1&window=10m",
        "http://acc.risk:8080/models/fraud/stable?revision=s1&window=10m",
    ]
    assert evaluate(AnalysisMetric.model_validate(metric), raw, AT).result == "Successful"


def test_web_post_sends_the_body_and_headers_from_secrets() -> None:
    store = Store(secrets={"acc": {"key": "k-123"}})
    metric = web_metric(
        method="POST",
        body='{"model": "{{name}}", "revision": "{{revision}}"}',
        headers=[{"name": "X-Api-Key", "valueFrom": {"secretKeyRef": {"name": "acc", "key": "key"}}}],
    )
    raw, seen = measure_one(metric, lambda _: httpx.Response(200, json={"accuracy": 0.92}), store=store)
    assert raw.canary == 0.92
    (request,) = seen
    assert request.method == "POST"
    assert json.loads(request.content) == {"model": "fraud", "revision": "c1"}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Api-Key"] == "k-123"


def test_web_is_online_when_its_server_answers_anything() -> None:
    settings = WebMetric.model_validate({"url": "http://acc:8080/score", "jsonPath": "$.a"})
    seen, transport = recorder(lambda _: httpx.Response(404))
    assert WebProvider.build(settings, context(), transport).is_online()
    assert str(seen[0].url) == "http://acc:8080/"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert not WebProvider.build(settings, context(), httpx.MockTransport(refuse)).is_online()


def test_a_json_path_that_does_not_parse_is_refused_with_the_spec() -> None:
    with pytest.raises(ValueError, match=r"jsonPath '\$\.\[' does not parse"):
        WebMetric.model_validate({"url": "http://acc/score", "jsonPath": "$.["})


# -- evaluation of what providers return -----------------------------------------------------------------------


def test_an_infinite_value_is_an_error_not_a_failure_or_a_stored_value() -> None:
    metric = AnalysisMetric.model_validate({"name": "p99", "builtin": "latencyP99", "max": 0.5})
    measured = evaluate(metric, Raw(canary=float("inf")), AT)
    assert measured.result == "Error"
    assert measured.value is None
    assert "not a finite number" in measured.message
    assert json.dumps(measured.model_dump(mode="json"))  # what the status patch carries


# -- every odd answer maps to a measurement; none stalls the tick (issue 12) -------------------------------------


def answer(data: Any) -> dict[str, Any]:
    return {"status": "success", "data": data}


def samples(*items: Any) -> dict[str, Any]:
    return answer({"resultType": "vector", "result": list(items)})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (vector("+Inf"), "the value is '+Inf', not a finite number"),
        (vector("-Inf"), "the value is '-Inf', not a finite number"),
        (vector("1e999"), "the value is '1e999', not a finite number"),
        (vector("abc"), "the value is 'abc', not a number"),
        (samples({"metric": {}, "value": [1, None]}), "the value is None, not a number"),
        (samples({"metric": {}, "value": [1, True]}), "the value is True, not a number"),
        (samples({"metric": {}, "value": [1, {"v": 1}]}), "the value is {'v': 1}, not a number"),
        (samples({"metric": {}, "value": "0.5"}), "a sample has value '0.5', not [time, value]"),
        (samples({"metric": {}}), "a sample has value None, not [time, value]"),
        (samples("0.5"), "a sample of the result is '0.5', not an object"),
        (samples({"metric": "x", "value": [1, "1"]}), "a sample's labels are 'x', not an object"),
        ({"status": "success"}, "Prometheus answered success without data.resultType and data.result"),
        (answer(None), "Prometheus answered success without data.resultType and data.result"),
        (answer([1, 2]), "Prometheus answered success without data.resultType and data.result"),
        (answer({"result": []}), "Prometheus answered success without data.resultType and data.result"),
        (answer({"resultType": "vector"}), "Prometheus answered success without data.resultType and data.result"),
        (answer({"resultType": "vector", "result": {}}), "the query's result is {}, not a list of samples"),
        (answer({"resultType": "matrix", "result": []}), "the query returned a 'matrix', not an instant vector"),
        (answer({"resultType": ["x"], "result": []}), "the query returned a ['x'], not an instant vector"),
        ([1, 2], "Prometheus answered HTTP 200 with JSON that is not an API response"),
        ("ok", "Prometheus answered HTTP 200 with JSON that is not an API response"),
        (None, "Prometheus answered HTTP 200 with JSON that is not an API response"),
        ({"status": "weird"}, "Prometheus answered HTTP 200 without status success or error"),
        ({"status": "error"}, "Prometheus rejected the query (None): None"),
    ],
)
def test_every_odd_prometheus_answer_is_an_error_that_says_what_came_back(body: Any, expected: str) -> None:
    raw, _ = measure_one(SUCCESS, lambda _: httpx.Response(200, content=json.dumps(body).encode()), PROM)
    assert raw == Raw(canary=None, error=expected)
    measured = evaluate(AnalysisMetric.model_validate(SUCCESS), raw, AT)
    assert measured.result == "Error"
    assert json.dumps(measured.model_dump(mode="json"), allow_nan=False)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (answer({"resultType": "scalar", "result": [1, "0.25"]}), Raw(canary=0.25)),
        (answer({"resultType": "scalar", "result": [1, "NaN"]}), Raw(canary=None)),
        (samples({"value": [1, "0.5"]}), Raw(canary=0.5)),
        (samples({"metric": {}, "value": [1, 0.75]}), Raw(canary=0.75)),
        (samples({"metric": {}, "value": [1, "1e308"]}), Raw(canary=1e308)),
    ],
    ids=["scalar", "scalar-nan", "no-labels", "json-number", "huge-but-finite"],
)
def test_prometheus_scalars_and_plain_numbers_are_values(body: Any, expected: Raw) -> None:
    raw, _ = measure_one(SUCCESS, lambda _: httpx.Response(200, json=body), PROM)
    assert raw == expected


def test_a_body_that_is_not_json_or_too_deep_is_an_error() -> None:
    for text in ("[" * 100_000 + "]" * 100_000, '{"status": "success", "data": ', "\xff\xfe"):

        def answer(_: httpx.Request, text: str = text) -> httpx.Response:
            return httpx.Response(200, content=text.encode("latin-1"))

        raw, _ = measure_one(SUCCESS, answer, PROM)
        assert raw.error == "Prometheus answered HTTP 200 without JSON"


DRIFT = {"name": "drift", "builtin": "predictionDrift", "max": 0.2, "minSamples": 1}


def buckets(*pairs: tuple[Any, Any]) -> dict[str, Any]:
    return samples(*({"metric": {"le": le}, "value": [1, count]} for le, count in pairs))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (buckets(("0.5", "NaN"), ("+Inf", "100")), "the count of bucket le=0.5 is NaN, not a count"),
        (buckets(("0.5", "10"), ("+Inf", "NaN")), "the count of bucket le=+Inf is NaN, not a count"),
        (buckets(("0.5", "+Inf"), ("+Inf", "100")), "the count of bucket le=0.5 is '+Inf', not a finite number"),
        (buckets(("0.5", "-1"), ("+Inf", "100")), "the count of bucket le=0.5 is -1, not a count"),
        (buckets(("0.5", "x"), ("+Inf", "100")), "the count of bucket le=0.5 is 'x', not a number"),
        (buckets(("NaN", "1"), ("+Inf", "100")), "a histogram bucket has le='NaN', not a bucket bound"),
        (buckets(("half", "1"), ("+Inf", "100")), "a histogram bucket has le='half', not a bucket bound"),
        (buckets((0.5, "1"), ("+Inf", "100")), "a histogram bucket has le=0.5, not a bucket bound"),
        (buckets(("0.5", "1"), ("0.5", "2")), "the query returned bucket le=0.5 twice; aggregate it with sum by (le)"),
    ],
)
def test_a_histogram_with_nan_infinity_or_a_bad_bucket_is_an_error(body: Any, expected: str) -> None:
    raw, _ = measure_one(DRIFT, lambda _: httpx.Response(200, json=body), PROM)
    assert raw == Raw(canary=None, error=expected)


def test_no_measurement_ever_carries_a_value_json_cannot_hold() -> None:
    """Whatever a provider hands over, the status gets a finite number or none (the API server refuses NaN)."""
    nan, inf = float("nan"), float("inf")
    odd: list[float | dict[float, float] | None] = [
        nan,
        inf,
        -inf,
        1e308,
        {0.5: nan, inf: 100.0},
        {nan: 1.0, inf: 100.0},
        {0.5: 40.0, inf: inf},
        {0.5: -5.0, inf: 100.0},
        {0.5: 150.0, inf: 100.0},
        None,
    ]
    metrics = [
        AnalysisMetric.model_validate(m)
        for m in (
            {"name": "s", "query": "q", "max": 1},
            {"name": "r", "query": "q", "relative": {"maxRatio": 1.2, "maxIncrease": 1e308}},
            DRIFT,
        )
    ]
    for metric in metrics:
        for canary in odd:
            for stable in odd:
                measured = evaluate(metric, Raw(canary=canary, stable=stable), AT)
                json.dumps(measured.model_dump(mode="json"), allow_nan=False)  # raises on NaN or infinity


def test_a_web_number_too_large_for_a_float_is_an_error() -> None:
    raw, _ = measure_one(web_metric(), lambda _: httpx.Response(200, content=b'{"accuracy": 1' + b"0" * 400 + b"}"))
    assert raw == Raw(canary=None, error="jsonPath $.accuracy matched a number too large for a float")


def test_an_answer_above_the_size_limit_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modeldeploy.adapters.providers.base.MAX_ANSWER_BYTES", 1000)
    raw, _ = measure_one(SUCCESS, lambda _: httpx.Response(200, content=b" " * 5000), PROM)
    assert raw.error == "the answer is larger than 0 MiB"


def test_a_provider_that_raises_or_cannot_be_built_is_an_error_not_a_stuck_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: Any) -> Raw:
        raise RuntimeError("bug")

    monkeypatch.setattr(PrometheusProvider, "measure", broken)
    raw, _ = measure_one(SUCCESS, lambda _: httpx.Response(200, json=vector("1")), PROM)
    assert raw.error == "Prometheus failed: RuntimeError"

    def unusable(*_: Any) -> PrometheusProvider:
        raise httpx.UnsupportedProtocol("no such scheme")

    monkeypatch.setattr(PrometheusProvider, "build", unusable)
    raw, _ = measure_one(SUCCESS, lambda _: httpx.Response(200, json=vector("1")), PROM)
    assert raw.error == "the prometheus provider cannot be used: UnsupportedProtocol: no such scheme"


# -- credentials read from Secrets ----------------------------------------------------------------------------


def test_a_token_with_a_trailing_newline_is_sent_without_it() -> None:
    store = Store(secrets={"token": {"token": "s3cret-t0ken\n"}, "basic": {"username": "u\n", "password": "p w\n"}})
    ok = lambda _: httpx.Response(200, json=vector("1"))  # noqa: E731
    raw, seen = measure_one(SUCCESS, ok, {**PROM, "bearerTokenSecret": {"name": "token", "key": "token"}}, store)
    assert raw.canary == 1.0
    assert seen[0].headers["Authorization"] == "Bearer s3cret-t0ken"
    _, seen = measure_one(SUCCESS, ok, {**PROM, "basicAuthSecret": "basic"}, store)
    assert seen[0].headers["Authorization"] == httpx.BasicAuth("u", "p w")._auth_header


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("s3cret t0ken", "whitespace"),
        ("s3cret\tt0ken", "control characters"),
        ("s3cret\x00t0ken", "control characters"),
        ("\n", ""),
    ],
)
def test_a_token_that_cannot_be_sent_is_refused_naming_the_secret_and_key_never_the_value(
    value: str, what: str
) -> None:
    store = Store(secrets={"token": {"token": value}})
    prometheus = {**PROM, "bearerTokenSecret": {"name": "token", "key": "token"}}
    raw, seen = measure_one(SUCCESS, lambda _: httpx.Response(200, json=vector("1")), prometheus, store)
    assert raw.error is not None
    assert raw.error.startswith("key 'token' of Secret risk/token ")
    assert (f"has {what} inside it" if what else "is empty") in raw.error
    assert "s3cret" not in raw.error
    assert "t0ken" not in raw.error
    assert seen == []
