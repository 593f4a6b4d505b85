"""Prometheus (and what speaks its HTTP API: Thanos, Mimir, Cortex, VictoriaMetrics, Amazon Managed Prometheus).

Instant queries over `/api/v1/query`, the canary's and the stable track's within one deadline (the source's
timeout). The client carries the source's headers (e.g. X-Scope-OrgID), its CA bundle or insecureSkipVerify, and
one of a bearer token, basic auth or SigV4.

Every answer maps to a value, no data, or an error: a sample value is parsed from Prometheus' string form (or a
plain JSON number); NaN is no data (a ratio of no requests); +Inf, -Inf, a number too large for a float or
anything that is not a number is an error that says what came back, as is an answer without `data`, `result` or
`resultType`, a result that is not an instant vector (or a scalar), or a histogram whose bucket bound or count is
not a number.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any, ClassVar

import httpx

from modeldeploy.adapters.providers.base import (
    Context,
    Deadline,
    DeadlineExceededError,
    Provider,
    ProviderError,
    fetch,
    headers,
    verify,
)
from modeldeploy.adapters.providers.sigv4 import SigV4Auth
from modeldeploy.core.analysis import MetricQuery, Raw
from modeldeploy.core.api import PrometheusSource, parse_duration


class QueryError(Exception):
    pass


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def auth(source: PrometheusSource, context: Context) -> httpx.Auth | None:
    """The source's authentication, credentials read from the Secret it names."""
    if source.sigv4 is not None:
        return SigV4Auth(source.sigv4.region, source.sigv4.service, timeout=parse_duration(source.timeout))
    if source.bearer_token_secret is not None:
        return BearerAuth(context.credential(source.bearer_token_secret))
    if source.basic_auth_secret is not None:
        secret = f"Secret {context.namespace}/{source.basic_auth_secret}"
        data = context.secret(source.basic_auth_secret)
        if "username" not in data or "password" not in data:
            raise ProviderError(f"{secret} needs keys username and password")
        username = context.checked(data["username"], f"key 'username' of {secret}")
        return httpx.BasicAuth(username, context.checked(data["password"], f"key 'password' of {secret}", True))
    return None


def sample(value: Any, what: str) -> float:
    """A sample value as Prometheus writes it ("0.5", "NaN", "+Inf"), or a plain JSON number; NaN stays NaN (the
    caller decides what it means), anything else that is not a finite number is a QueryError."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise QueryError(f"{what} is {_show(value)}, not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise QueryError(f"{what} is {_show(value)}, not a number") from None
    if math.isinf(number):
        raise QueryError(f"{what} is {_show(value)}, not a finite number")
    return number


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


class PrometheusProvider(Provider):
    name: ClassVar[str] = "Prometheus"

    def __init__(self, source: PrometheusSource, client: httpx.Client) -> None:
        self.source = source
        self.client = client
        # SigV4 signs the body's hash; a form body keeps PromQL out of the signed query string.
        self.post = source.sigv4 is not None

    @classmethod
    def build(
        cls, settings: PrometheusSource, context: Context, transport: httpx.BaseTransport | None = None
    ) -> PrometheusProvider:
        client = httpx.Client(
            base_url=settings.address.rstrip("/"),
            timeout=parse_duration(settings.timeout),
            auth=auth(settings, context),
            headers=headers(settings.headers, context),
            verify=verify(settings.tls, context),
            transport=transport,
        )
        return cls(settings, client)

    def close(self) -> None:
        self.client.close()

    def _ask(self, query: str, deadline: Deadline) -> dict[str, Any]:
        """The `data` of a successful answer to the instant query `query`."""
        return self.api_data("/api/v1/query", {"query": query}, deadline)

    def api_data(self, path: str, params: dict[str, str], deadline: Deadline) -> dict[str, Any]:
        """The `data` of a successful answer of the query API at `path` (instant or range); QueryError says why
        there is none."""
        try:
            if self.post:
                response = fetch(self.client, "POST", path, deadline, data=params)
            else:
                response = fetch(self.client, "GET", path, deadline, params=params)
        except (ProviderError, DeadlineExceededError) as error:
            raise QueryError(str(error)) from error
        except httpx.HTTPError as error:
            raise QueryError(f"Prometheus at {self.source.address} unreachable: {type(error).__name__}") from error
        try:
            body = response.json()
        except (ValueError, RecursionError) as error:
            raise QueryError(f"Prometheus answered HTTP {response.status_code} without JSON") from error
        if not isinstance(body, dict):
            raise QueryError(f"Prometheus answered HTTP {response.status_code} with JSON that is not an API response")
        if body.get("status") != "success":
            if body.get("status") == "error":
                kind, message = str(body.get("errorType"))[:100], str(body.get("error"))[:300]
                raise QueryError(f"Prometheus rejected the query ({kind}): {message}")
            raise QueryError(f"Prometheus answered HTTP {response.status_code} without status success or error")
        data = body.get("data")
        if not isinstance(data, dict) or "resultType" not in data or "result" not in data:
            raise QueryError("Prometheus answered success without data.resultType and data.result")
        return data

    def _series(self, data: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
        """(labels, raw value) of each sample of an instant vector (a scalar is one sample without labels)."""
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return [({}, self._pair(result, "the scalar"))]
        if kind != "vector":
            raise QueryError(f"the query returned a {_show(kind)}, not an instant vector")
        if not isinstance(result, list):
            raise QueryError(f"the query's result is {_show(result)}, not a list of samples")
        series = []
        for item in result:
            if not isinstance(item, dict):
                raise QueryError(f"a sample of the result is {_show(item)}, not an object")
            labels = item.get("metric", {})
            if not isinstance(labels, dict):
                raise QueryError(f"a sample's labels are {_show(labels)}, not an object")
            series.append((labels, self._pair(item.get("value"), "a sample")))
        return series

    @staticmethod
    def _pair(value: Any, what: str) -> Any:
        if not isinstance(value, list) or len(value) != 2:
            raise QueryError(f"{what} has value {_show(value)}, not [time, value]")
        return value[1]

    def scalar(self, query: str, deadline: Deadline) -> float | None:
        series = self._series(self._ask(query, deadline))
        if not series:
            return None
        if len(series) > 1:
            raise QueryError(f"the query returned {len(series)} series; aggregate it to one")
        value = sample(series[0][1], "the value")
        return None if math.isnan(value) else value

    def histogram(self, query: str, deadline: Deadline) -> dict[float, float] | None:
        buckets: dict[float, float] = {}
        for labels, raw in self._series(self._ask(query, deadline)):
            if "le" not in labels:
                continue
            le = labels["le"]
            try:
                bound = float(le) if isinstance(le, str) else math.nan
            except ValueError:
                bound = math.nan
            if math.isnan(bound):
                raise QueryError(f"a histogram bucket has le={_show(le)}, not a bucket bound")
            count = sample(raw, f"the count of bucket le={le}")
            if math.isnan(count) or count < 0:
                raise QueryError(f"the count of bucket le={le} is {raw!s:.40}, not a count")
            if bound in buckets:
                raise QueryError(f"the query returned bucket le={le} twice; aggregate it with sum by (le)")
            buckets[bound] = count
        return buckets or None

    def measure(self, query: MetricQuery, deadline: Deadline) -> Raw:
        read = self.histogram if query.kind == "histogram" else self.scalar
        try:
            canary = read(query.canary, deadline)
            return Raw(canary=canary, stable=read(query.stable, deadline) if query.stable else None)
        except QueryError as error:
            return Raw(canary=None, error=str(error))

    def is_online(self) -> bool:
        try:
            return self.scalar("vector(1)", Deadline.after(parse_duration(self.source.timeout))) == 1.0
        except QueryError:
            return False
