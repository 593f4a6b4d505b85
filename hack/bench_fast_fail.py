"""Benchmark: fast fail, from a critical breach visible in Prometheus to the router at 0%. Prints figures; asserts
nothing.

    .venv/bin/python hack/bench_fast_fail.py [--runs 5] [--intervals 30]

For each analysis interval, each run starts a canary at 50% whose success rate carries a critical bound (min 0.5,
checked every analysis.criticalInterval, default 1s); once its first analysis tick is recorded (so the next one is
a whole interval away), its model server starts failing every request. Two instants are taken, each by polling
every 20 ms:
  visible: the first moment Prometheus answers the canary's success-rate query with a value below 0.5;
  at 0%: the first moment the HTTPRoute the operator owns sends 0% to the canary again.
The goal is at most 2 s at any interval; without the critical bound it is up to one interval plus processing.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench_time_to_rollback import SUCCESS_RATE
from bench_time_to_rollback import spec as rollback_spec
from kubernetes import client, config

from modeldeploy_dev.cluster import LocalCluster, build
from modeldeploy_dev.dataplane import LoadGenerator, ModelServers, PrometheusServer
from modeldeploy_dev.testing import Cluster, Operator, modeldeployment, wait_for

NAME = "bench"
CRITICAL_MIN = 0.5
GOAL_SECONDS = 2.0
POLL_SECONDS = 0.02
GATEWAY_GROUP = "gateway.networking.k8s.io"


def spec(version: str, interval: int, prometheus: str) -> dict[str, Any]:
    metric = {
        "name": "success-rate",
        "builtin": "successRate",
        "window": "5s",
        # The tick's bound at the critical one: whichever path sees the breach first, it is the same breach, and a
        # tick (every interval) is what the critical checks (every criticalInterval) must beat.
        "min": CRITICAL_MIN,
        "critical": {"min": CRITICAL_MIN},
    }
    return rollback_spec(version, interval, prometheus, metric)


def route_reader(kubeconfig: str, namespace: str) -> Callable[[], int | None]:
    """The canary's weight in the HTTPRoute, read through the API (no kubectl process: a read takes milliseconds)."""
    custom = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))

    def read() -> int | None:
        try:
            route = custom.get_namespaced_custom_object(GATEWAY_GROUP, "v1", namespace, "httproutes", NAME)
        except client.ApiException:
            return None
        refs = route["spec"]["rules"][0]["backendRefs"]
        return int(refs[1]["weight"]) if len(refs) > 1 else 0  # no canary backend once the canary is gone

    return read


def poll(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """time.monotonic() of the first poll at which `predicate` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def measure(cluster: Cluster, prometheus: PrometheusServer, interval: int, run: int) -> float:
    namespace = f"fast-fail-{interval}-{run}"
    cluster.kubectl("create", "namespace", namespace)
    servers = ModelServers(prometheus, namespace)
    canary_weight = route_reader(str(cluster.kubeconfig), namespace)

    def weights() -> tuple[int, int] | None:
        weight = canary_weight()
        return None if weight is None else (100 - weight, weight)

    def status() -> dict[str, Any]:
        found = cluster.get("mdep", NAME, namespace)
        return (found or {}).get("status") or {}

    try:
        cluster.apply(modeldeployment(NAME, namespace, spec("1", interval, prometheus.address)))
        stable = wait_for(lambda: status().get("stable"), 60, "v1 stable")
        servers.start("stable", stable["revision"], "1")
        cluster.apply(modeldeployment(NAME, namespace, spec("2", interval, prometheus.address)))
        revision = wait_for(lambda: status().get("canary"), 60, "the canary")["revision"]
        servers.start("canary", revision, "2")
        with LoadGenerator(servers, weights):
            wait_for(lambda: (status().get("analysis") or {}).get("nextMeasurementAt"), 120, "the first tick")
            servers.start("canary", revision, "2", error_rate=1.0)
            query = SUCCESS_RATE.format(ns=namespace, rev=revision)

            def breach_visible() -> bool:
                result = prometheus.query(query)
                return bool(result) and float(result[0]["value"][1]) < CRITICAL_MIN

            visible = poll(breach_visible, 120, "the breach to show in Prometheus")
            at_zero = poll(lambda: canary_weight() == 0, 120, "the route back at 100% stable")
        rollback = status().get("lastRollback") or {}
        if rollback.get("reason") != "CriticalBreach":
            raise RuntimeError(f"not rolled back by the critical check: {rollback}")
        return at_zero - visible
    finally:
        servers.close()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--intervals", type=int, nargs="+", default=[30])
    args = parser.parse_args()
    build(echo=lambda line: print(line, file=sys.stderr))
    local = LocalCluster.temporary()
    local.start()
    cluster = Cluster.of(local)
    operator = Operator(cluster, local.state_dir / "logs" / "operator.log")
    prometheus = PrometheusServer()
    figures: dict[int, list[float]] = {}
    try:
        cluster.install_crds()
        operator.start()
        prometheus.start()
        for interval in args.intervals:
            for run in range(args.runs):
                seconds = measure(cluster, prometheus, interval, run)
                print(f"interval {interval}s, run {run + 1}: {seconds:.2f}s", file=sys.stderr)
                figures.setdefault(interval, []).append(seconds)
    finally:
        prometheus.close()
        operator.stop()
        local.stop()
    print(f"{'interval':>9} {'runs':>5} {'min':>7} {'median':>7} {'max':>7} {'goal':>6}")
    for interval, seconds in figures.items():
        verdict = "met" if max(seconds) <= GOAL_SECONDS else "MISSED"
        print(
            f"{interval:>8}s {len(seconds):>5} {min(seconds):>6.2f}s {statistics.median(seconds):>6.2f}s "
            f"{max(seconds):>6.2f}s {verdict:>6}"
        )


if __name__ == "__main__":
    # A SIGTERM (e.g. from `timeout`) unwinds through the finally blocks, so no cluster is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
