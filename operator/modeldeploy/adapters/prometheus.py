"""Prometheus, queried over its HTTP API with a bounded timeout. Errors become Error measurements, not crashes."""

from __future__ import annotations

import math
from typing import Any

import httpx

from modeldeploy.core.analysis import MetricQuery, Raw
from modeldeploy.core.api import PrometheusSource, parse_duration


class QueryError(Exception):
    pass


class Prometheus:
    def __init__(self, source: PrometheusSource, auth: httpx.Auth | None = None) -> None:
        self.source = source
        self.client = httpx.Client(
            base_url=source.address.rstrip("/"), timeout=parse_duration(source.timeout), auth=auth
        )

    def close(self) -> None:
        self.client.close()

    def _vector(self, query: str) -> list[dict[str, Any]]:
        try:
            response = self.client.get("/api/v1/query", params={"query": query})
        except httpx.HTTPError as error:
            raise QueryError(f"Prometheus at {self.source.address} unreachable: {type(error).__name__}") from error
        try:
            body = response.json()
        except ValueError as error:
            raise QueryError(f"Prometheus answered HTTP {response.status_code} without JSON") from error
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
