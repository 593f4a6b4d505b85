"""Metric analysis end to end: the operator, a real Prometheus, real model servers and real traffic."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modeldeploy.core.analysis import Raw, evaluate, render_query
from modeldeploy.core.api import AnalysisMetric
from modeldeploy_dev.dataplane import LoadGenerator, ModelServers, PrometheusServer, reference_labeller
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
    {"name": "drift", "builtin": "predictionDrift", "window": "30s", "max": 0.25, "minSamples": 200},
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


ACCURACY = {
    "name": "accuracy",
    "builtin": "accuracy",
    "window": "20s",
    "minLabels": 40,
    "min": 0.9,
    "relative": {"maxDecrease": 0.05},
}


def labels_counted(prometheus: PrometheusServer, namespace: str, revision: str, track: str) -> float:
    """Labels for predictions of `revision` that pods of `track` counted."""
    found = prometheus.query(
        f'sum(modelserver_feedback_labels_total{{namespace="{namespace}",prediction_revision="{revision}",'
        f'modeldeploy_io_track="{track}"}})'
    )
    return float(found[0]["value"][1]) if found else 0.0


def labels_on_server(client: httpx.Client, port: int) -> dict[str, float]:
    """The server's own label counters by prediction revision, read from its /metrics."""
    text = client.get(f"http://127.0.0.1:{port}/metrics").text
    return {
        sample.labels["prediction_revision"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelserver_feedback_labels_total"
    }


def test_a_canary_as_accurate_on_delayed_labels_is_promoted(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    start_canary(cluster, namespace, servers, prometheus, metrics=[ACCURACY])
    with LoadGenerator(
        servers, route_weights(cluster, servers.namespace), labeller=reference_labeller(), label_delay=2.0
    ):
        done = wait_for(lambda: promoted(cluster, namespace), 120, "promotion on accuracy")
    measured = last_measurements(done)["accuracy"]
    assert measured["result"] == "Successful"
    assert measured["value"] >= 0.9


def test_a_canary_less_accurate_on_delayed_labels_is_rolled_back(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    # Shifted by 0.5, every canary prediction is the positive class; the labels are the unshifted model's classes.
    started = start_canary(cluster, namespace, servers, prometheus, metrics=[ACCURACY], prediction_shift=0.5)
    canary = started["status"]["canary"]["revision"]
    with LoadGenerator(
        servers, route_weights(cluster, servers.namespace), labeller=reference_labeller(), label_delay=2.0
    ) as load:
        rolled = wait_for(lambda: rolled_back(cluster, namespace), 120, "rollback on accuracy")
    assert rolled is not None
    assert load.labels_sent > 0
    assert load.labels_refused == 0
    rollback = rolled["status"]["lastRollback"]
    assert rollback["reason"] == "AnalysisFailed"
    assert "accuracy" in rollback["message"]
    measured = last_measurements(rolled)["accuracy"]
    assert measured["result"] == "Failed"
    assert measured["value"] < 0.9
    assert measured["stableValue"] > 0.95, "the stable track is right on its labels"
    # Labels went to both tracks' servers, and each was counted for the revision that made the prediction.
    assert labels_counted(prometheus, servers.namespace, canary, "stable") > 0

    # Labels that arrive once the canary's pods are gone still count for the canary's revision, not stable's.
    stable = rolled["status"]["stable"]["revision"]
    ids = []
    with httpx.Client(timeout=5) as client:
        port = servers.servers["canary"].port
        for _ in range(5):
            body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [0.1, 0.2, 0.3, 0.4]}]}
            ids.append(client.post(f"http://127.0.0.1:{port}/v2/models/fraud-scorer/infer", json=body).json()["id"])
        servers.stop("canary")
        stable_port = servers.servers["stable"].port
        before = labels_on_server(client, stable_port)
        answer = client.post(
            f"http://127.0.0.1:{stable_port}/v2/models/fraud-scorer/feedback",
            json={"labels": [{"id": i, "label": 0} for i in ids]},
        )
        after = labels_on_server(client, stable_port)
    assert answer.json() == {"accepted": 5, "duplicates": 0}
    assert after[canary] == before.get(canary, 0) + 5
    assert after[stable] == before[stable], "nothing mixed into the stable revision's counts"
    wait_for(
        lambda: labels_counted(prometheus, servers.namespace, canary, "stable") >= after[canary],
        30,
        "the late labels scraped for the canary's revision",
    )


def test_a_canary_with_too_few_labels_holds(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    start_canary(cluster, namespace, servers, prometheus, metrics=[ACCURACY], prediction_shift=0.5)
    with LoadGenerator(
        servers, route_weights(cluster, servers.namespace), labeller=reference_labeller(), label_share=0.02
    ) as load:
        # About 0.6 canary labels a second: a dozen in the 20 s window, below minLabels 40.
        held = wait_for(
            lambda: (
                load.labels_sent >= 15
                and (m := md(cluster, namespace))["status"]["analysis"].get("consecutiveNoData", 0) >= 3
                and m
            ),
            90,
            "three NoData ticks while labels arrive",
        )
    assert held["status"].get("lastRollback") is None, "worse, but too few labels to say so: no rollback"
    assert held["status"]["canary"]["stepIndex"] == 1, "held at the analysis gate, not promoted"
    assert condition(held, "Progressing")["reason"] == "AnalysisNoData"
    assert "fewer than 40 labels" in last_measurements(held)["accuracy"]["message"]


# The builtin before predictionDrift was windowed: each track's histogram since its pods started.
CUMULATIVE_DRIFT = (
    'sum by (le) (modelserver_prediction_bucket{{namespace="{namespace}",modeldeploy_io_revision="{revision}"}})'
)
# Features moved along the sign of the demo model's coefficients: its predictions move up sharply.
DRIFT_DIRECTION = (-1.0, -1.0, 1.0, 1.0)


def test_a_late_drift_is_caught_over_the_window_where_the_cumulative_form_misses_it(
    prometheus: PrometheusServer,
) -> None:
    """Real model servers and a real Prometheus: a long good history on both tracks, then a drifted window on the
    canary. Since the pods started, the drift is diluted below the bound; over the window it breaches it."""
    namespace = f"drift-{uuid.uuid4().hex[:8]}"
    servers = ModelServers(prometheus, namespace)
    drift = AnalysisMetric.model_validate(
        {"name": "drift", "builtin": "predictionDrift", "window": "15s", "max": 0.25, "minSamples": 200}
    )
    try:
        ports = {track: servers.start(track, f"{track}1", "1").port for track in ("stable", "canary")}
        rng = random.Random(7)

        def send(track: str, rows: int, shift: float = 0.0) -> None:
            data = [rng.gauss(0, 1) + shift * DRIFT_DIRECTION[i % 4] for i in range(rows * 4)]
            body = {"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP64", "data": data}]}
            url = f"http://127.0.0.1:{ports[track]}/v2/models/fraud-scorer/infer"
            assert httpx.post(url, json=body, timeout=30).status_code == 200

        def histogram(promql: str) -> dict[float, float]:
            return {float(r["metric"]["le"]): float(r["value"][1]) for r in prometheus.query(promql)}

        def windowed(track: str) -> dict[float, float]:
            return histogram(render_query(drift, "modelserver", namespace, "fraud", f"{track}1", track))

        def cumulative(track: str) -> dict[float, float]:
            return histogram(CUMULATIVE_DRIFT.format(namespace=namespace, revision=f"{track}1"))

        for _ in range(10):  # the history: 10 000 predictions on each track from the same inputs
            send("stable", 1000)
            send("canary", 1000)
        wait_for(lambda: cumulative("canary").get(float("inf"), 0) >= 10_000, 60, "the history scraped")
        wait_for(
            lambda: windowed("canary").get(float("inf"), 1) == 0 and windowed("stable").get(float("inf"), 1) == 0,
            60,
            "the history out of the window",
        )
        send("stable", 400)
        send("canary", 400, shift=1.0)
        wait_for(
            lambda: windowed("canary").get(float("inf"), 0) >= 300 and windowed("stable").get(float("inf"), 0) >= 300,
            30,
            "the drifted window scraped",
        )
        over_window = evaluate(drift, Raw(canary=windowed("canary"), stable=windowed("stable")), "now")
        since_start = evaluate(drift, Raw(canary=cumulative("canary"), stable=cumulative("stable")), "now")
    finally:
        servers.close()
    assert since_start.result == "Successful", since_start.message
    assert over_window.result == "Failed", over_window.message
    assert over_window.value is not None
    assert since_start.value is not None
    assert over_window.value > 4 * since_start.value
