"""The operator's own Prometheus metrics. Labels stay bounded: no per-object series."""

from __future__ import annotations

import threading
from collections.abc import Iterator

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
WORKQUEUE_DEPTH = Gauge("modeldeploy_workqueue_depth", "ModelDeployments waiting for a reconcile.")
RECONCILES_IN_FLIGHT = Gauge("modeldeploy_reconciles_in_flight", "Reconciles running now.")
PHASES: tuple[Phase, ...] = ("Pending", "Progressing", "Ready", "ScaledToZero", "Degraded")


class PhaseCollector(Collector):
    """modeldeploy_objects{phase}: how many ModelDeployments are in each phase."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[str, str] = {}

    def set(self, key: str, phase: str | None) -> None:
        with self._lock:
            if phase is None:
                self._phases.pop(key, None)
            else:
                self._phases[key] = phase

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("modeldeploy_objects", "ModelDeployments by phase.", labels=["phase"])
        with self._lock:
            counts: dict[str, int] = dict.fromkeys(PHASES, 0)
            for phase in self._phases.values():
                counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            family.add_metric([phase], count)
        yield family


OBJECTS = PhaseCollector()
REGISTRY.register(OBJECTS)


def serve(port: int, address: str = "0.0.0.0") -> None:
    start_http_server(port, addr=address)
