"""Benchmark: time to rollback. Prints figures; asserts nothing.

    .venv/bin/python hack/bench_time_to_rollback.py [--intervals 2 5 10]

For each analysis interval (failureLimit 0), a healthy canary is measured until the analysis settles, then its
model server starts failing every request. Two instants are taken:
  visible: the first moment Prometheus answers the success-rate query with a value below the bound;
  rolled back: the moment the HTTPRoute the operator owns sends 0% to the canary again.
The contract is interval x (failureLimit + 1); the goal is at most one interval + 1 s.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from modeldeploy_dev.cluster import LocalCluster, build
from modeldeploy_dev.dataplane import LoadGenerator, ModelServers, PrometheusServer
from modeldeploy_dev.testing import Cluster, Operator, modeldeployment, serving_spec, wait_for

NAME = "bench"
SUCCESS_RATE = (
    '(sum(rate(modelserver_requests_total{{namespace="{ns}",modeldeploy_io_revision="{rev}",code!~"5.."}}[5s]))'
    " or vector(0))"
    ' / sum(rate(modelserver_requests_total{{namespace="{ns}",modeldeploy_io_revision="{rev}"}}[5s]))'
)


def spec(version: str, interval: int, prometheus: str, metric: dict[str, Any] | None = None) -> dict[str, Any]:
    """A canary under analysis at 50% until it fails; `metric` replaces the success rate's default bound."""
    metric = metric or {"name": "success-rate", "builtin": "successRate", "window": "5s", "min": 0.95}
    return serving_spec(
        model={"name": "m", "version": version, "uri": f"s3://m/{version}", "format": "sklearn"},
        replicas=2,
        traffic={"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "public"}]}},
        rollout={
            # The gate never opens, so the canary stays under analysis until it fails.
            "steps": [{"setWeight": 50}, {"analysis": {"measurements": 100}}],
            "canaryReplicas": 1,
            "analysis": {
                "interval": f"{interval}s",
                "failureLimit": 0,
                "prometheus": {"address": prometheus},
                "metrics": [metric],
            },
        },
    )


def canary_weight(cluster: Cluster, namespace: str) -> int | None:
    route = cluster.get("httproute", NAME, namespace)
    if not route:
        return None
    refs = route["spec"]["rules"][0]["backendRefs"]
    return refs[1]["weight"] if len(refs) > 1 else 0  # no canary backend once the canary is gone


def measure(cluster: Cluster, prometheus: PrometheusServer, interval: int) -> tuple[float, float]:
    namespace = f"bench-{interval}"
    cluster.kubectl("create", "namespace", namespace)
    servers = ModelServers(prometheus, namespace)

    def weights() -> tuple[int, int] | None:
        weight = canary_weight(cluster, namespace)
        return None if weight is None else (100 - weight, weight)

    try:
        cluster.apply(modeldeployment(NAME, namespace, spec("1", interval, prometheus.address)))
        md = wait_for(lambda: (m := cluster.get("mdep", NAME, namespace)) and m["status"].get("stable") and m, 60)
        servers.start("stable", md["status"]["stable"]["revision"], "1")
        cluster.apply(modeldeployment(NAME, namespace, spec("2", interval, prometheus.address)))
        md = wait_for(lambda: (m := cluster.get("mdep", NAME, namespace)) and m["status"].get("canary") and m, 60)
        revision = md["status"]["canary"]["revision"]
        servers.start("canary", revision, "2")
        with LoadGenerator(servers, weights):
            wait_for(
                lambda: (
                    (cluster.get("mdep", NAME, namespace)["status"].get("analysis") or {}).get(
                        "consecutiveSuccesses", 0
                    )
                    >= 2
                ),
                120,
                "a healthy canary under analysis",
            )
            servers.start("canary", revision, "2", error_rate=1.0)
            query = SUCCESS_RATE.format(ns=namespace, rev=revision)

            def breach_visible() -> bool:
                result = prometheus.query(query)
                return bool(result) and float(result[0]["value"][1]) < 0.95

            wait_for(breach_visible, 120, "the breach to show in Prometheus")
            visible = time.monotonic()
            wait_for(lambda: canary_weight(cluster, namespace) == 0, 120, "the route back at 100% stable")
            rolled_back = time.monotonic()
        status = cluster.get("mdep", NAME, namespace)["status"]
        if status["lastRollback"]["reason"] != "AnalysisFailed":
            raise RuntimeError(f"unexpected rollback: {json.dumps(status['lastRollback'])}")
        return rolled_back - visible, status["analysis"]["timeToRollbackSeconds"]
    finally:
        servers.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, nargs="+", default=[2, 5, 10])
    args = parser.parse_args()
    build(echo=lambda line: print(line, file=sys.stderr))
    local = LocalCluster.temporary()
    local.start()
    cluster = Cluster.of(local)
    operator = Operator(cluster, local.state_dir / "logs" / "operator.log")
    prometheus = PrometheusServer()
    rows = []
    try:
        cluster.install_crds()
        operator.start()
        prometheus.start()
        for interval in args.intervals:
            seconds, contract = measure(cluster, prometheus, interval)
            rows.append((interval, contract, seconds))
    finally:
        prometheus.close()
        operator.stop()
        local.stop()
    print(f"{'interval':>9} {'contract':>9} {'measured':>9} {'goal':>6}")
    for interval, contract, seconds in rows:
        verdict = "met" if seconds <= interval + 1 else "MISSED"
        print(f"{interval:>8}s {contract:>8.0f}s {seconds:>8.2f}s {verdict:>6}")


if __name__ == "__main__":
    # A SIGTERM (e.g. from `timeout`) unwinds through the finally blocks, so no cluster is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
