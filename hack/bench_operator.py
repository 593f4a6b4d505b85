"""Benchmark: the operator on the local control plane. Prints figures; asserts nothing.

    .venv/bin/python hack/bench_operator.py [--objects 50]

Measures, for N ModelDeployments created at once: time until all are Ready, the operator's API writes per
object (from the API server's audit log), its writes while everything is idle, its resident memory, and the
time one canary takes from spec change to promotion with no pauses.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import yaml

from modeldeploy_dev.cluster import LocalCluster, build
from modeldeploy_dev.testing import Cluster, Operator, modeldeployment, ready_at, serving_spec, wait_for


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def all_ready(cluster: Cluster, namespace: str, count: int) -> bool:
    listing = json.loads(cluster.kubectl("get", "mdep", "-n", namespace, "-o", "json").stdout)["items"]
    return sum(ready_at(m) for m in listing) == count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()

    build(echo=lambda line: print(line, file=sys.stderr))
    local = LocalCluster.temporary(nodes=2)
    started = time.monotonic()
    local.start()
    cluster_start = time.monotonic() - started
    cluster = Cluster.of(local)
    log = Path(local.state_dir) / "logs" / "operator.log"
    operator = Operator(cluster, log)
    try:
        cluster.install_crds()
        cluster.kubectl("create", "namespace", "bench")
        operator.start()
        assert operator.process is not None
        rss_before = rss_mib(operator.process.pid)
        mark = cluster.audit_lines()
        docs = [modeldeployment(f"model-{i}", "bench", serving_spec(replicas=2)) for i in range(args.objects)]
        started = time.monotonic()
        cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(docs))
        wait_for(lambda: all_ready(cluster, "bench", args.objects), 600, "every ModelDeployment Ready")
        to_ready = time.monotonic() - started
        writes = len(cluster.operator_writes(mark))

        idle_mark = cluster.audit_lines()
        idle_end = time.monotonic() + args.idle_seconds
        while time.monotonic() < idle_end:
            time.sleep(1)
        idle_writes = len(cluster.operator_writes(idle_mark))
        rss_after = rss_mib(operator.process.pid)

        canary = serving_spec(replicas=2, model={"name": "m", "version": "2", "uri": "s3://m/2", "format": "custom"})
        started = time.monotonic()
        cluster.apply(modeldeployment("model-0", "bench", canary))
        wait_for(
            lambda: (
                (m := cluster.get("mdep", "model-0", "bench"))
                and (m["status"].get("stable") or {}).get("model", {}).get("version") == "2"
            ),
            120,
            "the canary promoted",
        )
        canary_seconds = time.monotonic() - started
    finally:
        operator.stop()
        local.stop()

    rows = [
        ("local cluster start (warm binaries)", f"{cluster_start:.1f} s"),
        (f"{args.objects} ModelDeployments created -> all Ready", f"{to_ready:.1f} s"),
        ("operator API writes per ModelDeployment to Ready", f"{writes / args.objects:.1f}"),
        (f"operator API writes while idle for {args.idle_seconds:.0f} s", str(idle_writes)),
        ("operator RSS before / after", f"{rss_before:.0f} MiB / {rss_after:.0f} MiB"),
        ("canary with steps [] from spec change to promoted", f"{canary_seconds:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    # A SIGTERM (e.g. from `timeout`) unwinds through the finally blocks, so no cluster is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
