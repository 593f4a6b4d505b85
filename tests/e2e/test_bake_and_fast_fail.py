"""The bake after a promotion and critical bounds, end to end: the operator, a real Prometheus, real model servers.

The model servers run as local processes (KWOK pods run nothing): the test starts the process that the pods of each
track would run, and the load generator follows the HTTPRoute the operator writes. While a failed bake reverts, the
route's second backend is the `<name>-canary` Service, which then selects the warm pods of the previous revision: the
test's "canary" process serves the previous revision then.
"""

from __future__ import annotations

from collections.abc import Callable
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
WARM = f"{NAME}-previous"
SUCCESS_RATE = {"name": "success-rate", "builtin": "successRate", "window": "5s", "min": 0.95}


def spec(version: str, prometheus: PrometheusServer, interval: str = "2s", **rollout: Any) -> dict[str, Any]:
    settings = {
        "steps": [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
        "canaryReplicas": 1,
        "scaleDownDelaySeconds": 0,
        "analysis": {
            "interval": interval,
            "failureLimit": 0,
            "prometheus": {"address": prometheus.address},
            "metrics": [SUCCESS_RATE],
        },
        **rollout,
    }
    traffic = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "public"}]}}
    return serving_spec(model=model_version(version), rollout=settings, traffic=traffic, replicas=2)


def hold_pods(namespace: str) -> dict[str, Any]:
    """A quota at the pods the namespace has: no pod can be added while it stands."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "hold-pods", "namespace": namespace},
        "spec": {"hard": {"pods": "3"}},
    }


def md(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return cluster.require("mdep", NAME, namespace)


def route_weights(cluster: Cluster, namespace: str) -> Callable[[], tuple[int, int] | None]:
    def read() -> tuple[int, int] | None:
        route = cluster.get("httproute", NAME, namespace)
        if not route:
            return None
        refs = route["spec"]["rules"][0]["backendRefs"]
        return refs[0]["weight"], refs[1]["weight"] if len(refs) > 1 else 0

    return read


def start_canary(
    cluster: Cluster, namespace: str, servers: ModelServers, v1: dict[str, Any], v2: dict[str, Any]
) -> str:
    """v1 stable and serving, then v2 applied with a healthy canary server; returns v1's revision."""
    assert cluster.apply(modeldeployment(NAME, namespace, v1)).returncode == 0
    stable = wait_for(lambda: (m := md(cluster, namespace))["status"].get("stable") and m, what="v1 stable")
    previous = str(stable["status"]["stable"]["revision"])
    servers.start("stable", previous, "1")
    assert cluster.apply(modeldeployment(NAME, namespace, v2)).returncode == 0
    started = wait_for(lambda: (m := md(cluster, namespace))["status"].get("canary") and m, what="canary")
    servers.start("canary", started["status"]["canary"]["revision"], "2")
    return previous


def baking(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    m = md(cluster, namespace)
    bake = m["status"].get("bake")
    return m if bake and bake["phase"] == "Baking" else None


def test_a_canary_that_degrades_in_its_bake_is_reverted_to_the_warm_previous_revision(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    v2 = spec("2", prometheus, bakeSeconds=600)
    previous = start_canary(cluster, namespace, servers, spec("1", prometheus, bakeSeconds=600), v2)
    with LoadGenerator(servers, route_weights(cluster, namespace)) as load:
        promoted = wait_for(lambda: baking(cluster, namespace), 180, "promotion and the bake")
        bake = promoted["status"]["bake"]
        revision = bake["revision"]
        assert bake["previous"]["revision"] == previous
        warm = wait_for(lambda: cluster.get("deployment", WARM, namespace), what="the warm Deployment")
        assert warm["spec"]["replicas"] == 1
        assert warm["spec"]["template"]["metadata"]["labels"]["modeldeploy.io/revision"] == previous
        # The pods as they now are: v2 on the stable track, v1 warm (no traffic while the bake passes).
        servers.start("stable", revision, "2")
        servers.start("canary", previous, "1")
        wait_for(
            lambda: (md(cluster, namespace)["status"].get("analysis") or {}).get("consecutiveSuccesses", 0) >= 1,
            120,
            "a passing measurement of the new stable in its bake",
        )
        assert condition(md(cluster, namespace), "Baking")["status"] == "True"
        rows = view_rows(cluster.modeldeploy("status", NAME, "-n", namespace))
        assert rows["Baking"][:2] == ["True", "BakeInProgress"]
        assert "s left" in cluster.modeldeploy("status", NAME, "-n", namespace)
        wait_for(
            lambda: (md(cluster, namespace)["status"].get("bake") or {}).get("readyWarmReplicas", 0) >= 1,
            60,
            "a ready warm pod",
        )
        # No pod may be added from here on, so the stable track cannot roll back until the quota goes: the revert
        # stays where traffic is on the warm pods, for the test to look at.
        assert cluster.apply(hold_pods(namespace)).returncode == 0
        servers.start("stable", revision, "2", error_rate=1.0)  # then it degrades
        failed = wait_for(
            lambda: (m := md(cluster, namespace))["status"].get("lastRollback") and m, 120, "the bake to fail"
        )
        rollback = failed["status"]["lastRollback"]
        assert (rollback["reason"], rollback["revision"]) == ("BakeFailed", revision)
        assert "success-rate" in rollback["message"]
        assert ">= 0.95" in rollback["message"], "the bound"
        assert failed["status"]["history"][-1]["outcome"] == "RolledBack"
        wait_for(lambda: route_weights(cluster, namespace)() == (0, 100), 60, "all traffic on the warm revision")
        service = cluster.require("service", f"{NAME}-canary", namespace)
        assert service["spec"]["selector"]["modeldeploy.io/track"] == "previous"
        served = load.sent["canary"]
        wait_for(lambda: load.sent["canary"] > served + 20, 60, "the warm pods serving")
        reasons = cluster.event_reasons(NAME, namespace)
        assert "BakeFailed" in reasons
        assert "RolledBack" in reasons
        reverting = md(cluster, namespace)
        assert reverting["status"]["bake"]["phase"] == "Reverting"
        assert condition(reverting, "Baking")["reason"] == "BakeFailed"
        # The stable track rolls back to the previous revision; then the warm pods go.
        cluster.kubectl("delete", "resourcequota", "hold-pods", "-n", namespace)
        servers.start("stable", previous, "1")
        done = wait_for(
            lambda: (m := md(cluster, namespace))["status"].get("bake") is None and m, 180, "the revert to finish"
        )
    assert done["status"]["stable"]["revision"] == previous
    assert done["status"]["rejectedRevision"] == revision
    assert condition(done, "Degraded")["reason"] == "RolledBack"
    stable = cluster.require("deployment", NAME, namespace)
    assert stable["spec"]["template"]["metadata"]["labels"]["modeldeploy.io/revision"] == previous
    wait_for(lambda: cluster.get("deployment", WARM, namespace) is None, 60, "the warm Deployment gone")
    assert route_weights(cluster, namespace)() in ((100, 0), (100, None))
    assert operator.metrics().get('modeldeploy_rollbacks_total{reason="BakeFailed"}', 0) >= 1


def test_a_bake_that_passes_ends_with_the_warm_pods_gone_and_a_restart_keeps_its_window(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    v2 = spec("2", prometheus, bakeSeconds=150, bakeWarmReplicas=2)
    start_canary(cluster, namespace, servers, spec("1", prometheus), v2)
    with LoadGenerator(servers, route_weights(cluster, namespace)):
        promoted = wait_for(lambda: baking(cluster, namespace), 180, "promotion and the bake")
        bake = promoted["status"]["bake"]
        servers.start("stable", bake["revision"], "2")
        servers.stop("canary")
        warm = wait_for(lambda: cluster.get("deployment", WARM, namespace), what="the warm Deployment")
        assert warm["spec"]["replicas"] == 2
        operator.restart()
        after = md(cluster, namespace)["status"]
        resumed = after.get("bake")
        assert resumed is not None, f"the restart kept the bake: {after}, {cluster.event_reasons(NAME, namespace)}"
        assert (resumed["startedAt"], resumed["endsAt"]) == (bake["startedAt"], bake["endsAt"])
        done = wait_for(
            lambda: (m := md(cluster, namespace))["status"].get("bake") is None and m, 300, "the bake to pass"
        )
    assert "BakePassed" in cluster.event_reasons(NAME, namespace)
    assert done["status"].get("lastRollback") is None
    assert done["status"]["stable"]["revision"] == bake["revision"]
    assert condition(done, "Ready")["status"] == "True"
    assert all(c["type"] != "Baking" for c in done["status"]["conditions"])
    wait_for(lambda: cluster.get("deployment", WARM, namespace) is None, 60, "the warm Deployment gone")


def test_a_critical_breach_rolls_back_without_waiting_for_the_analysis_interval(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    metric = {**SUCCESS_RATE, "critical": {"min": 0.5}}
    steps = [{"setWeight": 50}, {"analysis": {"measurements": 100}}]  # the gate never opens
    v2 = spec("2", prometheus, interval="30s", steps=steps)
    v2["rollout"]["analysis"]["metrics"] = [metric]
    start_canary(cluster, namespace, servers, spec("1", prometheus), v2)
    with LoadGenerator(servers, route_weights(cluster, namespace)):
        measured = wait_for(
            lambda: ((m := md(cluster, namespace))["status"].get("analysis") or {}).get("nextMeasurementAt") and m,
            120,
            "the first analysis tick",
        )
        canary = measured["status"]["canary"]
        servers.start("canary", canary["revision"], "2", error_rate=1.0)
        rolled = wait_for(
            lambda: (m := md(cluster, namespace))["status"].get("lastRollback") and m, 120, "the critical rollback"
        )
    rollback = rolled["status"]["lastRollback"]
    assert rollback["reason"] == "CriticalBreach", "the critical check, not an analysis tick, rolled it back"
    assert "success-rate" in rollback["message"]
    assert "critical bound >= 0.5" in rollback["message"]
    assert route_weights(cluster, namespace)() in ((100, 0), (100, None))
    assert "RolledBack" in cluster.event_reasons(NAME, namespace)
