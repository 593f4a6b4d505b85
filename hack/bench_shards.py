"""Benchmark: does throughput scale with shards? Prints figures; asserts nothing.

    .venv/bin/python hack/bench_shards.py [--objects 1000] [--runs 1x4 2x4 4x4 1x16]

Each run is SHARDSxWORKERS: that many `modeldeploy run --shards N --shard i` processes, each with --workers
WORKERS (1x16 is the control: one process with as many reconciles in flight as 4x4). For each, on a fresh local
control plane: create --objects ModelDeployments (one replica each) with
the operator down, then start one `modeldeploy run --shards N --shard i` process per shard at once, and time
until every object's Deployment exists and until every object is Ready (the sum over the shards of
modeldeploy_objects{phase="Ready"}, confirmed by one list). A backlog drained from a cold start: the
situation of a restart, a failover or a change of N, and free of the creation rate.

CPU-seconds of every process (from /proc) over each phase tell what bounds it: this machine's cores are shared
by the API server, etcd, the controllers, KWOK and the operators. "cores" is CPU-seconds per wall second.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client, config

from modeldeploy_dev.cluster import CONTROL_PLANE, LocalCluster, build
from modeldeploy_dev.testing import Cluster, Operator, modeldeployment, ready_at, serving_spec, wait_for

NAMESPACE = "bench"
TICK = os.sysconf("SC_CLK_TCK")
PODS_PER_NODE = 110  # the local cluster's fake nodes


def busy_seconds() -> float:
    """CPU-seconds the whole machine has been busy (every core, every process) since boot."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


@dataclass
class Run:
    shards: int
    workers: int
    create_seconds: float
    to_deployments: float
    to_ready: float
    reconciles: float
    cpu_to_deployments: dict[str, float]
    cpu_to_ready: dict[str, float]
    busiest_shard_to_deployments: float
    rss_mib: list[float]
    """Each shard's resident memory once every object was Ready."""
    others: float
    """Cores that other processes on the machine used meanwhile (all busy time minus this run's): when it is not
    near 0, they competed with this run and its times are slower than the machine can do."""


def count_deployments(apps: client.AppsV1Api) -> int:
    """How many Deployments the namespace has, from a one-item page (cheap for the API server)."""
    page = apps.list_namespaced_deployment(NAMESPACE, limit=1)
    return len(page.items) + (page.metadata.remaining_item_count or 0)


def wait_quiet(below: float, timeout: float = 900.0) -> None:
    """Waits (up to `timeout`) until the 1-minute load average is below `below`: no other work on the cores."""
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(5)


def measure(shards: int, objects: int, workers: int, log_dir: Path) -> Run:
    local = LocalCluster.temporary(nodes=objects // PODS_PER_NODE + 1)
    local.start()
    cluster = Cluster.of(local)
    operators = [
        Operator(
            cluster,
            log_dir / f"shards-{shards}-shard-{i}.log",
            args=["run", "--all-namespaces", "--shards", str(shards), "--shard", str(i), "--workers", str(workers)],
        )
        for i in range(shards)
    ]
    try:
        cluster.install_crds()
        cluster.kubectl("create", "namespace", NAMESPACE)
        apps = client.AppsV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
        docs = [modeldeployment(f"model-{i:04d}", NAMESPACE, serving_spec(replicas=1)) for i in range(objects)]
        started = time.monotonic()
        cluster.kubectl("create", "-f", "-", input_text=yaml.safe_dump_all(docs))
        create_seconds = time.monotonic() - started

        pids = {name: local.processes[name].pid for name in CONTROL_PLANE}

        def sample() -> dict[str, float]:
            return {name: cpu_seconds(pid) for name, pid in pids.items()}

        before = sample()
        busy_before, own_before = busy_seconds(), time.process_time()
        started = time.monotonic()
        with ThreadPoolExecutor(len(operators)) as pool:
            list(pool.map(lambda op: op.start(), operators))
        for i, op in enumerate(operators):
            assert op.process is not None
            pids[f"shard-{i}"] = op.process.pid
            before[f"shard-{i}"] = 0.0  # a new process: all its CPU time is this run's

        def deployed() -> bool:
            return count_deployments(apps) >= objects

        wait_for(deployed, 1800, f"{objects} Deployments")
        to_deployments = time.monotonic() - started
        at_deployments = sample()

        def ready() -> bool:
            return sum(op.metrics().get('modeldeploy_objects{phase="Ready"}', 0) for op in operators) >= objects

        wait_for(ready, 1800, f"{objects} ModelDeployments Ready")
        to_ready = time.monotonic() - started
        at_ready = sample()
        ours = sum(at_ready.values()) - sum(before.values()) + time.process_time() - own_before
        others = (busy_seconds() - busy_before - ours) / to_ready
        listing = json.loads(cluster.kubectl("get", "mdep", "-n", NAMESPACE, "-o", "json").stdout)["items"]
        confirmed = sum(ready_at(md) for md in listing)
        if confirmed != objects:
            print(f"warning: the operators count {objects} Ready, the API says {confirmed}", file=sys.stderr)
        rss = [rss_mib(op.process.pid) for op in operators if op.process is not None]
        reconciles = sum(op.metrics().get('modeldeploy_reconcile_total{result="success"}', 0) for op in operators)
    finally:
        for op in operators:
            op.stop()
        local.stop()

    def spent(until: dict[str, float]) -> dict[str, float]:
        return {name: until[name] - before[name] for name in until}

    cpu_deployments = spent(at_deployments)
    return Run(
        shards=shards,
        workers=workers,
        create_seconds=create_seconds,
        to_deployments=to_deployments,
        to_ready=to_ready,
        reconciles=reconciles,
        cpu_to_deployments=cpu_deployments,
        cpu_to_ready=spent(at_ready),
        busiest_shard_to_deployments=max(v for k, v in cpu_deployments.items() if k.startswith("shard-")),
        others=others,
        rss_mib=rss,
    )


def by_component(cpu: dict[str, float]) -> dict[str, float]:
    """CPU-seconds of the operators together, and of each control plane process."""
    return {"operators": sum(v for k, v in cpu.items() if k.startswith("shard-"))} | {n: cpu[n] for n in CONTROL_PLANE}


def cores(cpu: dict[str, float], seconds: float) -> str:
    return ", ".join(f"{name} {value / seconds:.2f}" for name, value in by_component(cpu).items())


def per_object(cpu: dict[str, float], objects: int) -> str:
    """CPU milliseconds per object: what the work costs, whatever else the machine was doing meanwhile."""
    spent = by_component(cpu)
    total = sum(spent.values())
    parts = [f"{name} {value / objects * 1000:.0f}" for name, value in spent.items()]
    return ", ".join([*parts, f"total {total / objects * 1000:.0f} (so at most {os.cpu_count() or 1} cores / total)"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--runs", nargs="+", default=["1x4", "2x4", "4x4", "1x16"], help="SHARDSxWORKERS")
    parser.add_argument(
        "--quiet-load",
        type=float,
        default=(os.cpu_count() or 1) * 0.5,
        help="before each run, wait (up to 15 minutes) until the 1-minute load average is below this",
    )
    args = parser.parse_args()
    plan = [tuple(int(n) for n in run.split("x")) for run in args.runs]

    build(echo=lambda line: print(line, file=sys.stderr))
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-shards-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for shards, workers in plan:
        wait_quiet(args.quiet_load)
        print(f"{shards} shard(s) x {workers} workers, {args.objects} objects ...", file=sys.stderr)
        runs.append(measure(shards, args.objects, workers, log_dir))
        print(f"  {json.dumps(runs[-1].__dict__)}", file=sys.stderr)

    print(
        f"{args.objects} ModelDeployments, created with the operators down; {os.cpu_count()} cores; logs in {log_dir}"
    )
    print(
        f"{'shards x workers':>16}  {'create':>7}  {'-> all Deployments':>22}  {'-> all Ready':>22}  reconciles  others"
    )
    for run in runs:
        print(
            f"{f'{run.shards} x {run.workers}':>16}  {run.create_seconds:>6.1f}s  "
            f"{run.to_deployments:>8.1f}s {args.objects / run.to_deployments:>6.1f} obj/s  "
            f"{run.to_ready:>8.1f}s {args.objects / run.to_ready:>6.1f} obj/s  "
            f"{run.reconciles:>10.0f}  {run.others:>6.2f}"
        )
    print("\nResident memory of each shard once every object was Ready (MiB):")
    for run in runs:
        print(f"{f'{run.shards} x {run.workers}':>6}: {' '.join(f'{m:.0f}' for m in run.rss_mib)}")
    print("\nCPU cores used (CPU-seconds per wall second), from the start of the operators:")
    for run in runs:
        name = f"{run.shards} x {run.workers}"
        busiest = run.busiest_shard_to_deployments / run.to_deployments
        print(f"{name:>6}, to Deployments: {cores(run.cpu_to_deployments, run.to_deployments)}; busiest {busiest:.2f}")
        print(f"{name:>6}, to Ready:       {cores(run.cpu_to_ready, run.to_ready)}")
    print("\nCPU milliseconds per object, until every object Ready (independent of what else the machine ran):")
    for run in runs:
        print(f"{f'{run.shards} x {run.workers}':>6}: {per_object(run.cpu_to_ready, args.objects)}")
    print("(others: cores other processes on the machine used meanwhile; not near 0, they slowed this run down)")


if __name__ == "__main__":
    # A SIGTERM (e.g. from `timeout`) unwinds through the finally blocks, so no cluster is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
