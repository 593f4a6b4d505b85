"""Metric analysis end to end: the operator, a real Prometheus, real model servers and real traffic."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modeldeploy_dev.dataplane import LoadGenerator, ModelServers, PrometheusServer
from modeldeploy_dev.testing import (
    Cluster,
    Operator,
    condition,
    model_version,
    modeldeployment,
    serving_spec,
    view_rows,
    wait_for,
)

pytestmark = pytest.mark.e2e
NAME = "fraud"
METRICS = [
    {"name": "success-rate", "builtin": "successRate", "window": "10s", "min": 0.95},
    {"name": "p99-latency", "builtin": "latencyP99", "window": "10s", "relative": {"maxRatio": 10}, "max": 0.2},
    {"name": "drift", "builtin": "predictionDrift", "window": "10s", "max": 0.25, "minSamples": 200},
]


def spec(
    version: str, prometheus: PrometheusServer, metrics: list[dict[str, Any]] | None = None, **analysis: Any
) -> dict[str, Any]:
    rollout = {
        "steps": [{"setWeight": 50}, {"analysis": {"measurements": 3}}],
        "canaryReplicas": 1,
        "scaleDownDelaySeconds": 0,
        "analysis": {
            "interval": "2s",
            "failureLimit": 0,
            "prometheus": {"address": prometheus.address},
            "metrics": metrics or METRICS,
            **analysis,
        },
    }
    traffic = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "public"}]}}
    return serving_spec(model=model_version(version), rollout=rollout, traffic=traffic, replicas=2)


@pytest.fixture
def servers(prometheus: PrometheusServer, namespace: str) -> Iterator[ModelServers]:
    running = ModelServers(prometheus, namespace)
    yield running
    running.close()


def md(cluster: Cluster, namespace: str) -> dict[str, Any]:
    found = cluster.get("mdep", NAME, namespace)
    assert found is not None
    return found


def start_canary(
    cluster: Cluster,
    namespace: str,
    servers: ModelServers,
    prometheus: PrometheusServer,
    metrics: list[dict[str, Any]] | None = None,
    **faults: float,
) -> dict[str, Any]:
    """v1 stable and serving, then v2 applied; the canary's model server runs with `faults`."""
    assert cluster.apply(modeldeployment(NAME, namespace, spec("1", prometheus, metrics))).returncode == 0
    stable = wait_for(lambda: (m := md(cluster, namespace))["status"].get("stable") and m, what="v1 stable")
    servers.start("stable", stable["status"]["stable"]["revision"], "1")
    assert cluster.apply(modeldeployment(NAME, namespace, spec("2", prometheus, metrics))).returncode == 0
    started = wait_for(lambda: (m := md(cluster, namespace))["status"].get("canary") and m, what="canary")
    servers.start("canary", started["status"]["canary"]["revision"], "2", **faults)
    return started


def rolled_back(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    m = md(cluster, namespace)
    return m if m["status"].get("lastRollback") else None


def promoted(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    m = md(cluster, namespace)
    history = m["status"].get("history") or []
    return m if history and history[-1]["outcome"] == "Promoted" else None


def route_weights(cluster: Cluster, namespace: str) -> Callable[[], tuple[int, int] | None]:
    def read() -> tuple[int, int] | None:
        route = cluster.get("httproute", NAME, namespace)
        if not route:
            return None
        refs = route["spec"]["rules"][0]["backendRefs"]
        # With no canary running or draining, the route names only the stable Service.
        return refs[0]["weight"], refs[1]["weight"] if len(refs) > 1 else 0

    return read


def last_measurements(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m["measurements"][-1] for m in obj["status"]["analysis"]["metrics"] if m["measurements"]}


def test_a_good_canary_is_promoted(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    start_canary(cluster, namespace, servers, prometheus)
    with LoadGenerator(servers, route_weights(cluster, servers.namespace)) as load:
        done = wait_for(lambda: promoted(cluster, namespace), 120, "promotion on good metrics")
    assert done is not None
    assert load.sent["canary"] > 0, "the canary got traffic through the route's weight"
    assert done["status"]["history"][-1]["outcome"] == "Promoted"
    assert set(last_measurements(done)) == {"success-rate", "p99-latency", "drift"}
    assert all(m["result"] == "Successful" for m in last_measurements(done).values())
    assert done["status"]["analysis"]["timeToRollbackSeconds"] == 2


@pytest.mark.parametrize(
    ("faults", "metric"),
    [
        ({"error_rate": 0.5}, "success-rate"),
        ({"error_rate": 1.0}, "success-rate"),
        ({"extra_latency_seconds": 0.3}, "p99-latency"),
        ({"prediction_shift": 0.5}, "drift"),
    ],
    ids=["errors", "all-errors", "slower", "drift"],
)
def test_a_worse_canary_is_rolled_back(
    cluster: Cluster,
    operator: Operator,
    namespace: str,
    servers: ModelServers,
    prometheus: PrometheusServer,
    faults: dict[str, float],
    metric: str,
) -> None:
    start_canary(cluster, namespace, servers, prometheus, metrics=None, **faults)
    with LoadGenerator(servers, route_weights(cluster, servers.namespace)):
        rolled = wait_for(lambda: rolled_back(cluster, namespace), 120, f"rollback on {metric}")
    assert rolled is not None
    rollback = rolled["status"]["lastRollback"]
    assert rollback["reason"] == "AnalysisFailed"
    assert metric in rollback["message"]
    assert last_measurements(rolled)[metric]["result"] == "Failed"
    assert condition(rolled, "Degraded")["reason"] == "RolledBack"
    route = cluster.get("httproute", NAME, namespace)
    assert route is not None
    # 0% to the canary while it drains; then the route names the stable Service alone.
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] in ([100, 0], [100])
    assert "RolledBack" in cluster.event_reasons(NAME, namespace)
    assert rolled["spec"]["model"]["version"] == "2", "the spec is never rewritten"
    assert operator.metrics().get('modeldeploy_rollbacks_total{reason="AnalysisFailed"}', 0) >= 1
    shown = md(cluster, namespace)
    view = cluster.modeldeploy("status", NAME, "-n", namespace)
    rows = view_rows(view)
    # The analysis table: one row per metric with its last result and bound (metric, result, canary, stable, bound).
    for name, measurement in last_measurements(shown).items():
        assert rows[name][0] == measurement["result"], f"{name}: {rows[name]}"
        assert rows[name][3] == measurement.get("bound", ""), f"{name}: {rows[name]}"
    assert rows[metric][0] == "Failed"
    assert rows["Degraded"][:2] == ["True", "RolledBack"]
    assert f"revision {rollback['revision']} (AnalysisFailed)" in view, "the last rollback and its reason"


def test_no_traffic_holds_and_does_not_roll_back(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    start_canary(cluster, namespace, servers, prometheus)
    held = wait_for(
        lambda: (m := md(cluster, namespace))["status"]["analysis"].get("consecutiveNoData", 0) >= 3 and m,
        60,
        "three NoData ticks",
    )
    assert held["status"].get("lastRollback") is None
    assert held["status"]["canary"]["stepIndex"] == 1, "held at the analysis gate"
    assert condition(held, "Progressing")["reason"] == "AnalysisNoData"


def test_prometheus_down_holds_then_recovers(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    start_canary(cluster, namespace, servers, prometheus)
    with LoadGenerator(servers, route_weights(cluster, servers.namespace)):
        prometheus.stop()
        try:
            held = wait_for(
                lambda: (m := md(cluster, namespace))["status"]["analysis"].get("consecutiveErrors", 0) >= 2 and m,
                60,
                "Error ticks while Prometheus is down",
            )
            assert held["status"].get("lastRollback") is None
            assert held["status"]["canary"] is not None
            assert "unreachable" in condition(held, "Progressing")["message"]
        finally:
            prometheus.start()
        wait_for(lambda: promoted(cluster, namespace), 120, "promotion once Prometheus is back")


def test_broken_promql_is_reported_not_fatal(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    broken = [{"name": "broken", "query": "sum(rate(modelserver_requests_total[", "max": 1}]
    start_canary(cluster, namespace, servers, prometheus, metrics=broken)
    held = wait_for(
        lambda: (m := md(cluster, namespace))["status"]["analysis"].get("lastResult") == "Error" and m,
        60,
        "an Error measurement",
    )
    progressing = condition(held, "Progressing")
    assert progressing["reason"] == "AnalysisError"
    assert "Prometheus rejected the query" in progressing["message"]
    assert "AnalysisError" in cluster.event_reasons(NAME, namespace)
    assert operator.process is not None
    assert operator.process.poll() is None, "the operator did not crash"
