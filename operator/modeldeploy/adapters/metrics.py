"""The operator's own Prometheus metrics. Labels stay bounded: no per-object series."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import get_args

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from modeldeploy.core.api import Phase

RECONCILES = Counter("modeldeploy_reconcile_total", "Reconciles of ModelDeployments, by result.", ["result"])
RECONCILE_ERRORS = Counter(
    "modeldeploy_reconcile_errors_total", "Reconciles that failed and were retried, by error.", ["error"]
)
RECONCILE_SECONDS = Histogram(
    "modeldeploy_reconcile_duration_seconds",
    "Time spent in one reconcile.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_WRITES = Counter(
    "modeldeploy_api_writes_total", "Writes the operator sent to the API server, by kind and verb.", ["kind", "verb"]
)
ROLLOUT_OUTCOMES = Counter(
    "modeldeploy_rollout_outcomes_total",
    "Canaries that ended, by outcome (Promoted, RolledBack, Aborted, Superseded).",
    ["outcome"],
)
MEASUREMENTS = Counter("modeldeploy_analysis_measurements_total", "Analysis measurements by result.", ["result"])
ROLLBACKS = Counter("modeldeploy_rollbacks_total", "Canaries rolled back, by reason.", ["reason"])
WORKQUEUE_DEPTH = Gauge("modeldeploy_workqueue_depth", "ModelDeployments waiting for a reconcile.")
CACHE_OBJECTS = Gauge(
    "modeldeploy_cache_objects", "Objects in the informer cache the reconciles read from, by kind.", ["kind"]
)
RECONCILES_IN_FLIGHT = Gauge("modeldeploy_reconciles_in_flight", "Reconciles running now.")
SHARD = Gauge(
    "modeldeploy_shard", "1, labelled with the shard this replica serves and the number of shards.", ["shard", "shards"]
)
CHILD_REPAIRS = Counter(
    "modeldeploy_child_repairs_total",
    "Children set back after someone else changed them (action restored) or recreated after someone else deleted "
    "them (action recreated), by kind.",
    ["kind", "action"],
)
REGISTRY_REQUESTS = Counter(
    "modeldeploy_registry_requests_total",
    "Model registry lookups and tag writes, by operation and result (ok or the failure reason).",
    ["operation", "result"],
)
WEBHOOK_CALLS = Counter(
    "modeldeploy_webhook_calls_total",
    "Gate webhook calls (retries included in one call), by hook type and result (passed or failed).",
    ["type", "result"],
)
NOTIFICATIONS = Counter(
    "modeldeploy_notifications_total",
    "Notification delivery tries, by event and result: delivered, retried (a try failed, another is scheduled) "
    "or failed (given up).",
    ["event", "result"],
)
PHASES: tuple[Phase, ...] = get_args(Phase)


class ObjectCollector(Collector):
    """Per-object state, forgotten when the object goes: so no series outlives its ModelDeployment.

    modeldeploy_objects{phase}: how many ModelDeployments are in each phase;
    modeldeploy_canary_weight{namespace,name}: the canary's actual weight, for objects with a canary;
    modeldeploy_analysis_value{namespace,name,metric}: the canary's last measured values.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str], str] = {}
        self._weights: dict[tuple[str, str], int] = {}
        self._analysis: dict[tuple[str, str], dict[str, float]] = {}
        self._bounds: dict[tuple[str, str], dict[tuple[str, str], float]] = {}

    def set(
        self,
        namespace: str,
        name: str,
        phase: str | None,
        canary_weight: int | None = None,
        analysis: dict[str, float] | None = None,
        bounds: dict[tuple[str, str], float] | None = None,
    ) -> None:
        key = (namespace, name)
        with self._lock:
            if analysis:
                self._analysis[key] = analysis
                self._bounds[key] = bounds or {}
            else:
                self._analysis.pop(key, None)
                self._bounds.pop(key, None)
            if phase is None:
                self._phases.pop(key, None)
            else:
                self._phases[key] = phase
            if canary_weight is None:
                self._weights.pop(key, None)
            else:
                self._weights[key] = canary_weight

    def collect(self) -> Iterator[GaugeMetricFamily]:
        phases = GaugeMetricFamily("modeldeploy_objects", "ModelDeployments by phase.", labels=["phase"])
        weights = GaugeMetricFamily(
            "modeldeploy_canary_weight",
            "Percent of traffic the canary in progress gets now.",
            labels=["namespace", "name"],
        )
        with self._lock:
            counts: dict[str, int] = dict.fromkeys(PHASES, 0)
            for phase in self._phases.values():
                counts[phase] = counts.get(phase, 0) + 1
            current = dict(self._weights)
            measured = {key: dict(values) for key, values in self._analysis.items()}
            limits = {key: dict(values) for key, values in self._bounds.items()}
        for phase, count in counts.items():
            phases.add_metric([phase], count)
        for (namespace, name), weight in sorted(current.items()):
            weights.add_metric([namespace, name], weight)
        values = GaugeMetricFamily(
            "modeldeploy_analysis_value",
            "The canary's last measured value per analysis metric, while its canary runs.",
            labels=["namespace", "name", "metric"],
        )
        for (namespace, name), per_metric in sorted(measured.items()):
            for metric, value in sorted(per_metric.items()):
                values.add_metric([namespace, name, metric], value)
        bounds = GaugeMetricFamily(
            "modeldeploy_analysis_bound",
            "Absolute bounds of each analysis metric (side min or max), while its canary runs.",
            labels=["namespace", "name", "metric", "side"],
        )
        for (namespace, name), per_bound in sorted(limits.items()):
            for (metric, side), bound in sorted(per_bound.items()):
                bounds.add_metric([namespace, name, metric, side], bound)
        yield phases
        yield weights
        yield values
        yield bounds


OBJECTS = ObjectCollector()
REGISTRY.register(OBJECTS)


def serve(port: int, address: str = "0.0.0.0") -> None:
    start_http_server(port, addr=address)
