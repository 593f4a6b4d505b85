"""Canaries on the real control plane: every router, every step, rollback, manual controls, restarts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gitops_health import argocd_health, kstatus
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


def spec(version: str, **overrides: Any) -> dict[str, Any]:
    rollout = {
        "steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}],
        "scaleDownDelaySeconds": 1,
    }
    return serving_spec(model=model_version(version), rollout=rollout, **overrides)


def md(cluster: Cluster, namespace: str) -> dict[str, Any]:
    found = cluster.get("mdep", NAME, namespace)
    assert found is not None
    return found


def canary_at(cluster: Cluster, namespace: str, step_index: int, phase: str = "Paused") -> dict[str, Any] | None:
    obj = cluster.get("mdep", NAME, namespace)
    canary = ((obj or {}).get("status") or {}).get("canary") or {}
    if canary.get("stepIndex") == step_index and canary.get("phase") == phase:
        return obj
    return None


def deployment(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.require("deployment", name, namespace)


def start(cluster: Cluster, namespace: str, **overrides: Any) -> None:
    """v7 serving, then v8 applied: a canary starts."""
    assert cluster.apply(modeldeployment(NAME, namespace, spec("7", **overrides))).returncode == 0
    wait_for(lambda: cluster.ready(NAME, namespace, "7"), what="v7 Ready")
    assert cluster.apply(modeldeployment(NAME, namespace, spec("8", **overrides))).returncode == 0


def test_replicas_router_moves_through_every_step(cluster: Cluster, operator: Operator, namespace: str) -> None:
    start(cluster, namespace)
    stable_revision = md(cluster, namespace)["status"]["stable"]["revision"]

    at_25 = wait_for(lambda: canary_at(cluster, namespace, 1), what="step 1 done, paused at step 2")
    canary = at_25["status"]["canary"]
    assert (canary["weight"], canary["actualWeight"], canary["replicas"], canary["readyReplicas"]) == (25, 25, 1, 1)
    assert deployment(cluster, namespace, f"{NAME}-canary")["spec"]["replicas"] == 1
    stable = deployment(cluster, namespace, NAME)
    assert stable["spec"]["replicas"] == 3, "stable stays fully scaled"
    assert stable["metadata"]["labels"]["modeldeploy.io/revision"] == stable_revision
    assert cluster.require("service", NAME, namespace)["spec"]["selector"] == {"app.kubernetes.io/instance": NAME}
    assert at_25["status"]["phase"] == "Paused"
    assert condition(at_25, "Paused")["status"] == "True"
    assert (argocd_health(at_25)["status"], kstatus(at_25)) == ("Suspended", "InProgress")
    printed = cluster.printed("mdep", NAME, namespace)
    assert (printed["PHASE"], printed["STABLE"], printed["CANARY"], printed["WEIGHT"], printed["READY"]) == (
        "Paused",
        "7",
        "8",
        "25",
        "False",
    ), f"the printer columns show the canary and its weight: {printed}"
    view = view_rows(cluster.modeldeploy("status", NAME, "-n", namespace))
    assert view["model version"] == ["7", "8"]
    assert view["revision"] == [stable_revision, canary["revision"]]
    assert view["weight"] == ["75%", "25% (wanted 25%)"]
    assert view["pods ready"] == ["3/3", "1/1"]

    assert "skipped step 2/4" in cluster.modeldeploy("promote", NAME, "-n", namespace)
    at_50 = wait_for(lambda: canary_at(cluster, namespace, 3), what="step 3 done, paused at step 4")
    canary = at_50["status"]["canary"]
    assert (canary["weight"], canary["actualWeight"], canary["replicas"]) == (50, 50, 3)

    cluster.modeldeploy("promote", NAME, "-n", namespace)
    done = wait_for(lambda: cluster.ready(NAME, namespace, "8"), what="v8 promoted and Ready")
    assert (argocd_health(done)["status"], kstatus(done)) == ("Healthy", "Current")
    assert done["status"]["history"][-1]["outcome"] == "Promoted"
    assert done["status"]["history"][-1]["model"]["version"] == "8"
    wait_for(lambda: cluster.get("deployment", f"{NAME}-canary", namespace) is None, what="the canary to be removed")
    assert (
        deployment(cluster, namespace, NAME)["spec"]["template"]["metadata"]["labels"]["modeldeploy.io/revision"]
        == done["status"]["stable"]["revision"]
    )
    reasons = cluster.event_reasons(NAME, namespace)
    for reason in ("CanaryStarted", "WeightChanged", "PromotionStarted", "Promoted"):
        assert reason in reasons
    history = json.loads(cluster.modeldeploy("history", NAME, "-n", namespace, "-o", "json"))
    assert [(h["model"]["version"], h["outcome"]) for h in history] == [("7", "Deployed"), ("8", "Promoted")]
    view = view_rows(cluster.modeldeploy("status", NAME, "-n", namespace))
    assert view["revision"] == [done["status"]["stable"]["revision"], "-"], "promoted: stable runs it, no canary"
    assert view["model version"] == ["8", "-"]
    assert view["weight"] == ["100%", "-"]

    assert "set back to version 7" in cluster.modeldeploy("undo", NAME, "-n", namespace)
    back = wait_for(lambda: (m := md(cluster, namespace))["status"].get("canary") and m, what="a canary of v7 again")
    assert back["spec"]["model"]["version"] == "7"
    assert back["status"]["canary"]["model"]["version"] == "7"


def httproute_weights(cluster: Cluster, namespace: str) -> list[int] | None:
    route = cluster.get("httproute", NAME, namespace)
    return [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] if route else None


def virtualservice_weights(cluster: Cluster, namespace: str) -> list[int] | None:
    vs = cluster.get("virtualservice", NAME, namespace)
    return [r["weight"] for r in vs["spec"]["http"][0]["route"]] if vs else None


def nginx_weights(cluster: Cluster, namespace: str) -> list[int] | None:
    main = cluster.get("ingress", NAME, namespace)
    canary = cluster.get("ingress", f"{NAME}-canary", namespace)
    if not main:
        return None
    if not canary:
        return [100]  # no canary Ingress while no canary runs or drains
    weight = int(canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"])
    return [100 - weight, weight]


ROUTERS = {
    "gatewayAPI": (
        {
            "router": "gatewayAPI",
            "gatewayAPI": {"parentRefs": [{"name": "public"}], "hostnames": ["fraud.example.com"]},
        },
        httproute_weights,
    ),
    "istio": (
        {"router": "istio", "istio": {"hosts": ["fraud.example.com"], "gateways": ["public"]}},
        virtualservice_weights,
    ),
    "nginx": ({"router": "nginx", "nginx": {"host": "fraud.example.com"}}, nginx_weights),
}


@pytest.mark.parametrize("router", list(ROUTERS))
def test_weighted_router_writes_the_weight_at_every_step(
    cluster: Cluster, operator: Operator, namespace: str, router: str
) -> None:
    traffic, weights = ROUTERS[router]
    overrides = {"traffic": traffic}
    assert cluster.apply(modeldeployment(NAME, namespace, spec("7", **overrides))).returncode == 0
    wait_for(lambda: cluster.ready(NAME, namespace, "7"), what="v7 Ready")
    assert weights(cluster, namespace) == [100], "idle: everything to stable, naming no canary backend"
    assert cluster.require("service", NAME, namespace)["spec"]["selector"]["modeldeploy.io/track"] == "stable"
    assert cluster.get("service", f"{NAME}-canary", namespace) is None, "an idle model costs one ClusterIP"

    with_fixed_pods = spec("8", **overrides)
    with_fixed_pods["rollout"]["canaryReplicas"] = 2
    assert cluster.apply(modeldeployment(NAME, namespace, with_fixed_pods)).returncode == 0
    wait_for(lambda: canary_at(cluster, namespace, 1), what="paused after setWeight 25")
    assert weights(cluster, namespace) == [75, 25]
    assert deployment(cluster, namespace, f"{NAME}-canary")["spec"]["replicas"] == 2, "pods decoupled from weight"
    assert (
        cluster.require("service", f"{NAME}-canary", namespace)["spec"]["selector"]["modeldeploy.io/track"] == "canary"
    )
    # actualWeight is read back from the router object, so it follows one reconcile after the write.
    wait_for(lambda: md(cluster, namespace)["status"]["canary"]["actualWeight"] == 25, 30, "the weight read back")

    cluster.modeldeploy("promote", NAME, "-n", namespace)
    wait_for(lambda: canary_at(cluster, namespace, 3), what="paused after setWeight 50")
    assert weights(cluster, namespace) == [50, 50]
    assert deployment(cluster, namespace, f"{NAME}-canary")["spec"]["replicas"] == 2
    assert deployment(cluster, namespace, NAME)["spec"]["replicas"] == 3, "stable stays fully scaled"

    cluster.modeldeploy("promote", "--full", NAME, "-n", namespace)
    wait_for(lambda: cluster.ready(NAME, namespace, "8"), what="v8 promoted")
    assert weights(cluster, namespace) in ([100, 0], [100]), "no traffic to the canary while it drains"
    wait_for(lambda: weights(cluster, namespace) == [100], what="the canary backend gone after the scale-down delay")
    assert cluster.get("service", f"{NAME}-canary", namespace) is None


def test_progress_deadline_rolls_back_and_retry_tries_again(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    traffic, weights = ROUTERS["gatewayAPI"]
    assert cluster.apply(modeldeployment(NAME, namespace, spec("7", traffic=traffic))).returncode == 0
    good = wait_for(lambda: cluster.ready(NAME, namespace, "7"), what="v7 Ready")
    broken = spec("8", traffic=traffic)
    broken["runtime"] = {**broken["runtime"], "image": "registry.example/never-ready:8"}
    broken["rollout"]["progressDeadlineSeconds"] = 10
    assert cluster.apply(modeldeployment(NAME, namespace, broken)).returncode == 0

    waiting = wait_for(lambda: (m := md(cluster, namespace))["status"].get("canary") and m, what="canary started")
    assert waiting["status"]["canary"]["weight"] == 0, "no traffic to pods that are not ready"
    assert weights(cluster, namespace) == [100, 0]

    rolled = wait_for(lambda: (m := md(cluster, namespace))["status"].get("lastRollback") and m, 60, "rollback")
    rollback = rolled["status"]["lastRollback"]
    assert rollback["reason"] == "ProgressDeadlineExceeded"
    assert rollback["model"]["version"] == "8"
    assert condition(rolled, "Degraded")["reason"] == "RolledBack"
    assert (argocd_health(rolled)["status"], kstatus(rolled)) == ("Degraded", "Failed")
    assert rolled["status"]["phase"] == "Degraded"
    assert rolled["status"]["stable"] == good["status"]["stable"]
    assert rolled["status"]["history"][-1]["outcome"] == "RolledBack"
    assert rolled["spec"] == broken, "the user's spec is never rewritten"
    assert weights(cluster, namespace) in ([100, 0], [100]), "no traffic to the canary while it drains"
    wait_for(lambda: cluster.get("deployment", f"{NAME}-canary", namespace) is None, what="canary removed")
    wait_for(lambda: weights(cluster, namespace) == [100], what="the canary backend removed with it")
    assert "RolledBack" in cluster.event_reasons(NAME, namespace)

    # Not retried on its own: an unrelated change leaves it rolled back.
    cluster.kubectl("annotate", "mdep", NAME, "-n", namespace, "example.com/poke=1")
    assert wait_for(lambda: md(cluster, namespace)["metadata"]["annotations"].get("example.com/poke"), what="poke")
    assert "retrying revision" in cluster.modeldeploy("retry", NAME, "-n", namespace)
    again = wait_for(lambda: (m := md(cluster, namespace))["status"].get("canary") and m, what="a new canary")
    assert again["status"]["canary"]["revision"] == rollback["revision"]
    assert "Retried" in cluster.event_reasons(NAME, namespace)


def test_new_spec_supersedes_a_running_canary(cluster: Cluster, operator: Operator, namespace: str) -> None:
    start(cluster, namespace)
    first = wait_for(lambda: canary_at(cluster, namespace, 1), what="canary of v8 paused")["status"]["canary"]
    assert cluster.apply(modeldeployment(NAME, namespace, spec("9"))).returncode == 0
    second = wait_for(
        lambda: (m := canary_at(cluster, namespace, 1)) and m["status"]["canary"]["model"]["version"] == "9" and m,
        what="canary of v9",
    )
    assert second["status"]["canary"]["revision"] != first["revision"]
    assert second["status"]["history"][-1]["outcome"] == "Superseded"
    assert second["status"]["history"][-1]["revision"] == first["revision"]

    def canary_pod_revisions() -> set[str]:
        listing = cluster.kubectl(
            "get",
            "pods",
            "-n",
            namespace,
            "-l",
            "modeldeploy.io/track=canary",
            "-o",
            "jsonpath={.items[*].metadata.labels.modeldeploy\\.io/revision}",
        )
        return set(listing.stdout.split())

    wait_for(lambda: canary_pod_revisions() == {second["status"]["canary"]["revision"]}, what="only v9 canary pods")
    assert "Superseded" in cluster.event_reasons(NAME, namespace)


def test_abort_pause_and_resume(cluster: Cluster, operator: Operator, namespace: str) -> None:
    timed = spec("7")
    timed["rollout"]["steps"] = [{"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"pause": {}}]
    assert cluster.apply(modeldeployment(NAME, namespace, timed)).returncode == 0
    wait_for(lambda: cluster.ready(NAME, namespace, "7"), what="v7 Ready")
    cluster.modeldeploy("pause", NAME, "-n", namespace)
    timed8 = spec("8")
    timed8["rollout"] = timed["rollout"]
    assert cluster.apply(modeldeployment(NAME, namespace, timed8)).returncode == 0
    held = wait_for(lambda: canary_at(cluster, namespace, 0), what="canary held at step 1 while paused")
    assert held["status"]["canary"]["weight"] == 0
    assert condition(held, "Paused")["reason"] == "PausedByHand"
    cluster.modeldeploy("resume", NAME, "-n", namespace)
    wait_for(lambda: canary_at(cluster, namespace, 3), what="past the timed pause, waiting at the last step")

    assert "aborted" in cluster.modeldeploy("abort", NAME, "-n", namespace)
    aborted = wait_for(lambda: (m := md(cluster, namespace))["status"].get("lastRollback") and m, what="abort")
    assert aborted["status"]["lastRollback"]["reason"] == "Aborted"
    assert aborted["status"]["history"][-1]["outcome"] == "Aborted"
    wait_for(lambda: cluster.get("deployment", f"{NAME}-canary", namespace) is None, what="canary pods gone at once")
    assert "Aborted" in cluster.event_reasons(NAME, namespace)


def test_operator_restart_mid_canary_resumes_at_the_same_step(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    traffic, weights = ROUTERS["gatewayAPI"]
    start(cluster, namespace, traffic=traffic)
    # Settled: the router object carries the weight and the status has read it back.
    before = wait_for(
        lambda: (m := canary_at(cluster, namespace, 1)) and m["status"]["canary"]["actualWeight"] == 25 and m,
        what="paused at step 2 with the weight applied",
    )

    kinds = "mdep,deployment,service,httproute"
    snapshot = cluster.resource_versions(namespace, kinds)
    mark = operator.restart()
    after = md(cluster, namespace)
    assert after["status"]["canary"] == before["status"]["canary"]
    assert weights(cluster, namespace) == [75, 25]
    assert cluster.resource_versions(namespace, kinds) == snapshot, "nothing was rewritten"
    if cluster.audit_log is not None:
        writes = [
            (w["verb"], w["objectRef"].get("resource"), w["objectRef"].get("name"))
            for w in cluster.operator_writes(mark)
            if w["objectRef"].get("namespace") == namespace
        ]
        assert writes == []
    cluster.modeldeploy("promote", NAME, "-n", namespace)
    wait_for(lambda: canary_at(cluster, namespace, 3), what="the next step after the restart")
    assert weights(cluster, namespace) == [50, 50]
