"""Benchmark: how far one operator replica goes, on the local control plane. Prints figures; asserts nothing.

    .venv/bin/python hack/bench_scale.py [--objects 1000 5000 10000] [--workers 4] [--deadline 3600]

For each size N, on a fresh local cluster (a Service range and controller rate limits sized for it):

- bulk create: N ModelDeployments (one replica each) created by parallel `kubectl create` processes, not by the
  operator; then the time until every Deployment exists, until the operator has written every status once (its
  first pass), and until every ModelDeployment is Ready; per object, create -> Deployment and create -> Ready, and
  the lag from its Deployment turning Available to its Ready (the operator's share of the wait);
- a single new object with N present: create -> Deployment, p50 / p99 / max over a series, one at a time;
- restart: the operator stopped and started; the time until it has reconciled every object with nothing queued,
  the API writes it made meanwhile (0 expected; from the API server's audit log, the operator's own user), and a
  new object created during that pass: its create -> Deployment and create -> Ready;
- the operator's resident memory (now and peak) before and after the restart, and every process's CPU seconds
  and memory: the operator's beside etcd's, the API server's, the controller manager's, the scheduler's, KWOK's
  and this benchmark's own (its watches parse every event).

Times come from watches this benchmark holds on ModelDeployments and Deployments (milliseconds), not from
creationTimestamps (seconds). A phase that does not finish before its deadline is reported as such.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from modeldeploy_dev.cluster import OPERATOR_USER, LocalCluster, bin_dir, build
from modeldeploy_dev.testing import Cluster, Operator, modeldeployment, ready_at, serving_spec

BENCH, PROBE, RESTART_PROBE = "bench", "probe", "probe-restart"
TICK = os.sysconf("SC_CLK_TCK")
PROCESSES = ("operator", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "benchmark")


# -- what the watches see ----------------------------------------------------------------------------------------


@dataclass
class Seen:
    """First times (monotonic) per (namespace, name)."""

    created: dict[tuple[str, str], float] = field(default_factory=dict)
    status: dict[tuple[str, str], float] = field(default_factory=dict)
    ready: dict[tuple[str, str], float] = field(default_factory=dict)
    deployment: dict[tuple[str, str], float] = field(default_factory=dict)
    available: dict[tuple[str, str], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str, namespace: str) -> int:
        with self.lock:
            return sum(1 for ns, _ in getattr(self, what) if ns == namespace)

    def on_modeldeployment(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        now = time.monotonic()
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        with self.lock:
            self.created.setdefault(key, now)
            if obj.get("status", {}).get("observedGeneration"):
                self.status.setdefault(key, now)
            if ready_at(obj):
                self.ready.setdefault(key, now)

    def on_deployment(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        now = time.monotonic()
        meta = obj["metadata"]
        if meta["name"].endswith("-canary"):
            return
        key = (meta["namespace"], meta["name"])
        status = obj.get("status") or {}
        wanted = (obj.get("spec") or {}).get("replicas", 1)
        with self.lock:
            self.deployment.setdefault(key, now)
            if (
                status.get("observedGeneration", 0) >= meta.get("generation", 1)
                and status.get("availableReplicas", 0) >= wanted
            ):
                self.available.setdefault(key, now)


class Watcher(threading.Thread):
    """List, then watch, one kind cluster-wide; restarts from the last resourceVersion (or lists again on 410)."""

    def __init__(
        self, api: client.ApiClient, group: str, version: str, plural: str, on_event: Callable[[str, Any], None]
    ) -> None:
        super().__init__(daemon=True, name=f"watch-{plural}")
        self.custom = client.CustomObjectsApi(api)
        self.args = (group, version, plural)
        self.on_event = on_event
        self.stopped = threading.Event()

    def run(self) -> None:
        version: str | None = None
        while not self.stopped.is_set():
            try:
                if version is None:
                    listing = self.custom.list_cluster_custom_object(*self.args)
                    for item in listing["items"]:
                        self.on_event("ADDED", item)
                    version = listing["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    *self.args,
                    resource_version=version,
                    timeout_seconds=120,
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    if event["type"] == "ERROR":
                        version = None
                        break
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.on_event(event["type"], event["object"])
                    if self.stopped.is_set():
                        return
            except ApiException as error:
                if error.status == 410:
                    version = None
                else:
                    time.sleep(0.5)
            except Exception:  # a dropped connection: watch again from where it was
                time.sleep(0.5)


# -- processes ---------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / TICK


def memory_mib(pid: int, field_name: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pids(local: LocalCluster, operator: Operator) -> dict[str, int]:
    found = {name: process.pid for name, process in local.processes.items()}
    if operator.process is not None:
        found["operator"] = operator.process.pid
    found["benchmark"] = os.getpid()
    return found


def cpu_snapshot(local: LocalCluster, operator: Operator) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids(local, operator).items()}


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after if name in before}


# -- the audit log, read from a byte offset ---------------------------------------------------------------------


def audit_offset(local: LocalCluster) -> int:
    return local.audit_log.stat().st_size if local.audit_log.exists() else 0


def operator_writes(local: LocalCluster, since: int, namespace: str) -> list[tuple[str, str, str]]:
    writes = []
    with local.audit_log.open("rb") as log:
        log.seek(since)
        for line in log:
            if OPERATOR_USER.encode() not in line:
                continue
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if (
                event["user"]["username"] == OPERATOR_USER
                and event["stage"] == "ResponseComplete"
                and ref.get("namespace") == namespace
            ):
                writes.append((event["verb"], ref.get("resource", ""), ref.get("name", "")))
    return writes


# -- helpers -----------------------------------------------------------------------------------------------------


def progress(result: dict[str, Any]) -> None:
    """What is measured so far, on stderr: a run cut short by its deadline still says what it got."""
    print(json.dumps(result, default=str), file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def spec() -> dict[str, Any]:
    return serving_spec(replicas=1)


def create_in_parallel(cluster: Cluster, namespace: str, names: list[str], processes: int = 8) -> None:
    """`kubectl create` of multi-document files, several at once: objects are created as fast as the API takes."""
    chunks = [names[i::processes] for i in range(processes)]
    running = []
    for chunk in chunks:
        if not chunk:
            continue
        docs = yaml.safe_dump_all([modeldeployment(name, namespace, spec()) for name in chunk])
        process = subprocess.Popen(
            [cluster.kubectl_path, f"--kubeconfig={cluster.kubeconfig}", "create", "-f", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdin is not None
        process.stdin.write(docs)
        process.stdin.close()
        running.append(process)
    for process in running:
        if process.wait() != 0:
            assert process.stderr is not None
            raise RuntimeError(f"kubectl create failed: {process.stderr.read()[-2000:]}")


def wait_until(predicate: Callable[[], bool], deadline: float) -> float | None:
    """Polls until true; the monotonic time it became true, or None at the deadline."""
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.1)
    return None


def create_one(custom: client.CustomObjectsApi, namespace: str, name: str) -> float:
    started = time.monotonic()
    custom.create_namespaced_custom_object(
        "modeldeploy.io", "v1alpha1", namespace, "modeldeployments", modeldeployment(name, namespace, spec())
    )
    return started


# -- one size ----------------------------------------------------------------------------------------------------


def run(size: int, workers: int, probes: int, idle: float, deadline: float) -> dict[str, Any]:
    result: dict[str, Any] = {"objects": size}
    nodes = 1 + size // 2000
    local = LocalCluster.temporary(nodes=nodes, max_pods=2500)
    started = time.monotonic()
    local.start()
    result["cluster start"] = time.monotonic() - started
    cluster = Cluster.of(local)
    operator = Operator(
        cluster, Path(local.state_dir) / "logs" / "operator.log", args=("run", "-A", f"--workers={workers}")
    )
    api = config.new_client_from_config(config_file=str(local.kubeconfig))
    api.configuration.connection_pool_maxsize = 8
    custom = client.CustomObjectsApi(api)
    seen = Seen()
    watchers = [
        Watcher(api, "modeldeploy.io", "v1alpha1", "modeldeployments", seen.on_modeldeployment),
        Watcher(api, "apps", "v1", "deployments", seen.on_deployment),
    ]
    try:
        cluster.install_crds()
        for namespace in (BENCH, PROBE, RESTART_PROBE):
            cluster.kubectl("create", "namespace", namespace)
        for watcher in watchers:
            watcher.start()
        operator.start()
        assert operator.process is not None
        result["operator RSS at start"] = memory_mib(operator.process.pid)

        # -- bulk create
        names = [f"model-{i}" for i in range(size)]
        cpu_before = cpu_snapshot(local, operator)
        t0 = time.monotonic()
        create_in_parallel(cluster, BENCH, names)
        result["create (kubectl, 8 processes)"] = time.monotonic() - t0
        end = t0 + deadline
        t_deployments = wait_until(lambda: seen.count("deployment", BENCH) >= size, end)
        t_first_pass = wait_until(lambda: seen.count("status", BENCH) >= size, end)
        t_ready = wait_until(lambda: seen.count("ready", BENCH) >= size, end)
        result["cpu bulk"] = cpu_used(cpu_before, cpu_snapshot(local, operator))
        result["bulk wall"] = time.monotonic() - t0
        result["all Deployments exist"] = None if t_deployments is None else t_deployments - t0
        result["operator first pass (every status written)"] = None if t_first_pass is None else t_first_pass - t0
        result["all Ready"] = None if t_ready is None else t_ready - t0
        with seen.lock:
            keys = [(BENCH, n) for n in names]
            to_deployment = [seen.deployment[k] - seen.created[k] for k in keys if k in seen.deployment]
            to_ready = [seen.ready[k] - seen.created[k] for k in keys if k in seen.ready]
            lag = [seen.ready[k] - seen.available[k] for k in keys if k in seen.ready and k in seen.available]
        result["create -> Deployment p50/p99"] = (percentile(to_deployment, 50), percentile(to_deployment, 99))
        result["create -> Ready p50/p99"] = (percentile(to_ready, 50), percentile(to_ready, 99))
        result["Deployment Available -> Ready p50/p99"] = (percentile(lag, 50), percentile(lag, 99))
        progress(result)

        # -- idle, then one new object at a time
        time.sleep(idle)
        result["operator RSS before restart (now / peak)"] = (
            memory_mib(operator.process.pid),
            memory_mib(operator.process.pid, "VmHWM"),
        )
        latencies = []
        for i in range(probes):
            name = f"probe-{i}"
            asked = create_one(custom, PROBE, name)
            if wait_until(lambda n=name: (PROBE, n) in seen.deployment, time.monotonic() + 30) is None:
                continue
            with seen.lock:
                latencies.append(seen.deployment[(PROBE, name)] - asked)
        result[f"single new object -> Deployment p50/p99/max ({len(latencies)} of {probes})"] = (
            percentile(latencies, 50),
            percentile(latencies, 99),
            max(latencies, default=float("nan")),
        )
        progress(result)
        wait_until(lambda: seen.count("ready", PROBE) >= probes, time.monotonic() + 120)

        # -- restart
        total = size + probes
        operator.stop()
        mark = audit_offset(local)
        cpu_before = cpu_snapshot(local, operator)
        t0 = time.monotonic()
        operator.start()
        cpu_before["operator"] = 0.0
        t_up = time.monotonic()
        asked = create_one(custom, RESTART_PROBE, "during-restart")
        t_settled = wait_until(lambda: operator.settled(total + 1), t0 + deadline)
        result["restart: operator up (liveness)"] = t_up - t0
        result["restart: settled (every object reconciled, queue empty)"] = (
            None if t_settled is None else t_settled - t0
        )
        result["cpu restart"] = cpu_used(cpu_before, cpu_snapshot(local, operator))
        wait_until(lambda: (RESTART_PROBE, "during-restart") in seen.ready, time.monotonic() + 60)
        with seen.lock:
            key = (RESTART_PROBE, "during-restart")
            result["restart: new object -> Deployment / Ready, during the pass"] = (
                seen.deployment.get(key, float("nan")) - asked,
                seen.ready.get(key, float("nan")) - asked,
            )
        result["restart: operator writes to existing objects"] = len(operator_writes(local, mark, BENCH)) + len(
            operator_writes(local, mark, PROBE)
        )
        time.sleep(idle)
        result["operator RSS after restart (now / peak)"] = (
            memory_mib(operator.process.pid),
            memory_mib(operator.process.pid, "VmHWM"),
        )
        result["RSS now"] = {name: memory_mib(pid) for name, pid in pids(local, operator).items()}
    finally:
        for watcher in watchers:
            watcher.stopped.set()
        operator.stop()
        local.stop()
    return result


# -- output ------------------------------------------------------------------------------------------------------


def show(value: Any) -> str:
    if value is None:
        return "not reached"
    if isinstance(value, float):
        return f"{value:.1f} s" if value >= 1 else f"{value * 1000:.0f} ms"
    if isinstance(value, tuple):
        return " / ".join(show(v) for v in value)
    return str(value)


def mib(value: float) -> str:
    return f"{value:.0f} MiB"


def report(results: list[dict[str, Any]]) -> None:
    rows: list[tuple[str, list[str]]] = []
    skip = {"objects", "cpu bulk", "cpu restart", "RSS now", "bulk wall"}
    labels = [k for k in results[0] if k not in skip]
    for label in labels:
        cells = []
        for result in results:
            value = result.get(label)
            if "RSS" in label and isinstance(value, tuple):
                cells.append(" / ".join(mib(v) for v in value))
            elif "RSS" in label and isinstance(value, float):
                cells.append(mib(value))
            else:
                cells.append(show(value))
        rows.append((label, cells))
    for phase in ("cpu bulk", "cpu restart"):
        for name in PROCESSES:
            cells = []
            for result in results:
                used = result.get(phase, {}).get(name)
                cells.append("-" if used is None else f"{used:.0f} s")
            rows.append((f"{phase.replace('cpu ', 'CPU seconds, ')}: {name}", cells))
    for name in PROCESSES:
        rows.append((f"RSS at the end: {name}", [mib(r.get("RSS now", {}).get(name, float("nan"))) for r in results]))
    header = ["measure", *[f"{r['objects']:,} objects" for r in results]]
    widths = [max(len(header[0]), *(len(label) for label, _ in rows))]
    for column in range(len(results)):
        widths.append(max(len(header[column + 1]), *(len(cells[column]) for _, cells in rows)))
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for label, cells in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip([label, *cells], widths, strict=True)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--probes", type=int, default=100, help="single new objects created one at a time")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds idle before reading memory")
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds each phase may take")
    args = parser.parse_args()

    build(echo=lambda line: print(line, file=sys.stderr))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; binaries in {bin_dir()}", file=sys.stderr)
    results = []
    for size in args.objects:
        print(f"-- {size} objects", file=sys.stderr)
        result = run(size, args.workers, args.probes, args.idle, args.deadline)
        print(json.dumps(result, default=str), file=sys.stderr)
        results.append(result)
        report(results)


if __name__ == "__main__":
    # A SIGTERM (e.g. from `timeout`) unwinds through the finally blocks, so no cluster is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
