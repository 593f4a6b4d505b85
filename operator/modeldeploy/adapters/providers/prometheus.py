"""Prometheus (and what speaks its HTTP API: Thanos, Mimir, Cortex, VictoriaMetrics, Amazon Managed Prometheus).

Instant queries over `/api/v1/query`, bounded by the source's timeout. The client carries the source's headers
(e.g. X-Scope-OrgID), its CA bundle or insecureSkipVerify, and one of a bearer token, basic auth or SigV4.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any, ClassVar

import httpx

from modeldeploy.adapters.providers.base import Context, Provider, ProviderError, headers, verify
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
        return BearerAuth(context.secret_value(source.bearer_token_secret))
    if source.basic_auth_secret is not None:
        data = context.secret(source.basic_auth_secret)
        if "username" not in data or "password" not in data:
            raise ProviderError(
                f"Secret {context.namespace}/{source.basic_auth_secret} needs keys username and password"
            )
        return httpx.BasicAuth(data["username"], data["password"])
    return None


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

    def _vector(self, query: str) -> list[dict[str, Any]]:
        try:
            if self.post:
                response = self.client.post("/api/v1/query", data={"query": query})
            else:
                response = self.client.get("/api/v1/query", params={"query": query})
        except ProviderError as error:
            raise QueryError(str(error)) from error
        except httpx.HTTPError as error:
            raise QueryError(f"Prometheus at {self.source.address} unreachable: {type(error).__name__}") from error
        try:
            body = response.json()
        except ValueError as error:
            raise QueryError(f"Prometheus answered HTTP {response.status_code} without JSON") from error
        if not isinstance(body, dict):
            raise QueryError(f"Prometheus answered HTTP {response.status_code} with JSON that is not an API response")
        if body.get("status") != "success":
            raise QueryError(f"Prometheus rejected the query ({body.get('errorType')}): {body.get('error')}")
        data = body["data"]
        if data["resultType"] != "vector":
            raise QueryError(f"the query returned a {data['resultType']}, not an instant vector")
        return data["result"]  # type: ignore[no-any-return]

    def scalar(self, query: str) -> float | None:
        result = self._vector(query)
        if not result:
            return None
        if len(result) > 1:
            raise QueryError(f"the query returned {len(result)} series; aggregate it to one")
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def histogram(self, query: str) -> dict[float, float] | None:
        buckets = {
            float(item["metric"]["le"]): float(item["value"][1])
            for item in self._vector(query)
            if "le" in item["metric"]
        }
        return buckets or None

    def measure(self, query: MetricQuery) -> Raw:
        read = self.histogram if query.kind == "histogram" else self.scalar
        try:
            return Raw(canary=read(query.canary), stable=read(query.stable) if query.stable else None)
        except QueryError as error:
            return Raw(canary=None, error=str(error))

    def is_online(self) -> bool:
        try:
            return self.scalar("vector(1)") == 1.0
        except QueryError:
            return False
