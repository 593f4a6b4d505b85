"""Reads for the audit report: a ModelDeployment's Events, and metrics over a window from Prometheus.

The metrics are the analysis' own PromQL (`core.analysis.queries`), asked as range queries (`/api/v1/query_range`)
so that a report made after the fact shows each value as the analysis would have seen it at every step. The
Prometheus client is the analysis provider's (same address, headers, TLS and credentials), and each query is
bounded by the source's timeout. Every answer maps to values or a QueryError that says what went wrong.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import httpx
from kubernetes import client

from modeldeploy.adapters.providers.base import Context, Deadline
from modeldeploy.adapters.providers.prometheus import PrometheusProvider, QueryError
from modeldeploy.core import api
from modeldeploy.core.api import PrometheusSource, parse_duration
from modeldeploy.core.report import EventRecord, Window
from modeldeploy.core.status import parse_time

Values = list[tuple[float, float]]


def read_events(core: client.CoreV1Api, namespace: str, name: str, uid: str | None) -> list[EventRecord]:
    """The Events about this ModelDeployment (this object, not an earlier one of the same name), oldest first."""
    selector = f"involvedObject.kind={api.KIND},involvedObject.name={name}"
    response: Any = core.list_namespaced_event(namespace, field_selector=selector, _preload_content=False)
    listing = json.loads(response.data)
    records = []
    for item in listing.get("items") or []:
        involved = item.get("involvedObject") or {}
        if uid and involved.get("uid") not in (None, uid):
            continue
        stamp = (
            item.get("lastTimestamp")
            or item.get("eventTime")
            or item.get("firstTimestamp")
            or (item.get("metadata") or {}).get("creationTimestamp")
        )
        if not stamp:
            continue
        source = item.get("reportingComponent") or (item.get("source") or {}).get("component") or "unknown"
        records.append(
            EventRecord(
                at=parse_time(stamp),
                type=str(item.get("type") or "Normal"),
                reason=str(item.get("reason") or ""),
                message=str(item.get("message") or ""),
                source=str(source),
                count=int(item.get("count") or 1),
            )
        )
    return sorted(records, key=lambda r: r.at)


class RangeReader:
    """Range queries against one Prometheus source."""

    def __init__(
        self, source: PrometheusSource, context: Context, transport: httpx.BaseTransport | None = None
    ) -> None:
        """ProviderError when the source's credentials or CA bundle cannot be read; `transport` replaces the
        network in tests."""
        self.source = source
        self.provider = PrometheusProvider.build(source, context, transport)

    def close(self) -> None:
        self.provider.close()

    def _matrix(self, query: str, window: Window) -> list[tuple[dict[str, Any], Values]]:
        params = {
            "query": query,
            "start": _unix(window.start),
            "end": _unix(window.end),
            "step": f"{window.step_seconds}s",
        }
        data = self.provider.api_data(
            "/api/v1/query_range", params, Deadline.after(parse_duration(self.source.timeout))
        )
        if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise QueryError("Prometheus answered a range query without a matrix")
        out = []
        for item in data["result"]:
            if not isinstance(item, dict) or not isinstance(item.get("values"), list):
                raise QueryError("a series of the matrix has no values")
            labels: dict[str, Any] = item["metric"] if isinstance(item.get("metric"), dict) else {}
            out.append((labels, [pair for v in item["values"] if (pair := _pair(v)) is not None]))
        return out

    def scalar(self, query: str, window: Window) -> Values:
        """One series over the window ([] when Prometheus has none)."""
        series = self._matrix(query, window)
        if len(series) > 1:
            raise QueryError(f"the query returned {len(series)} series; aggregate it to one")
        return series[0][1] if series else []

    def histogram(self, query: str, window: Window) -> dict[float, Values]:
        """{bucket bound: cumulative counts over the window}."""
        buckets: dict[float, Values] = {}
        for labels, values in self._matrix(query, window):
            try:
                buckets[float(labels["le"])] = values
            except (KeyError, ValueError, TypeError):
                continue
        return buckets


def _pair(value: Any) -> tuple[float, float] | None:
    """A [time, "value"] pair; one that is not two numbers is left out (NaN stays: the core makes it a gap)."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    try:
        at, number = float(value[0]), float(value[1])
    except (TypeError, ValueError, OverflowError):
        return None
    return (at, number) if math.isfinite(at) else None


def _unix(at: datetime) -> str:
    return f"{at.timestamp():.3f}"


__all__ = ["QueryError", "RangeReader", "read_events"]
