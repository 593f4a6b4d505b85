"""`modeldeploy-dev demo`: the operator on a local cluster, end to end, with a live view."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from modeldeploy import control
from modeldeploy.core import crd
from modeldeploy_dev.cluster import ClusterError, LocalCluster, bin_dir, build, cache_dir
from modeldeploy_dev.dataplane import LoadGenerator, ModelServers, PrometheusServer
from modeldeploy_dev.testing import Cluster, Operator, ready_at

console = Console()
NAMESPACE = "demo"


class DemoError(RuntimeError):
    pass


def _md(cluster: LocalCluster, name: str) -> dict[str, Any]:
    result = cluster.kubectl("get", "mdep", name, "-n", NAMESPACE, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def _pods(cluster: LocalCluster, name: str) -> list[dict[str, Any]]:
    result = cluster.kubectl(
        "get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={name}", "-o", "json", check=False
    )
    return json.loads(result.stdout)["items"] if result.returncode == 0 else []


def render_view(md: dict[str, Any], pods: list[dict[str, Any]], title: str) -> Panel:
    pod_table = Table("pod", "track", "revision", "phase", expand=True)
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        labels = pod["metadata"].get("labels", {})
        pod_table.add_row(
            pod["metadata"]["name"],
            labels.get("modeldeploy.io/track", "-"),
            labels.get("modeldeploy.io/revision", "-"),
            pod.get("status", {}).get("phase", "-"),
        )
    body = control.status_view(md) if md.get("status") else "waiting for the operator..."
    return Panel(Group(body, pod_table), title=title)


def watch(cluster: LocalCluster, name: str, title: str, done: Any, timeout: float = 120.0) -> dict[str, Any]:
    """Redraws the object until `done(md)` holds; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            md, pods = _md(cluster, name), _pods(cluster, name)
            live.update(render_view(md, pods, title))
            if md and done(md):
                return md
            if time.monotonic() > deadline:
                raise DemoError(f"{title}: not done after {timeout:.0f}s")
            time.sleep(0.25)


def _rolled_back(version: str) -> Any:
    def check(md: dict[str, Any]) -> bool:
        rollback = (md.get("status") or {}).get("lastRollback") or {}
        return bool(rollback.get("model", {}).get("version") == version)

    return check


def analysis_rollout(prometheus: str) -> dict[str, Any]:
    """Half the traffic, then three good measurements in a row; any failed one rolls back."""
    return {
        "steps": [{"setWeight": 50}, {"analysis": {"measurements": 3}}],
        "scaleDownDelaySeconds": 0,
        "analysis": {
            "interval": "2s",
            "failureLimit": 0,
            "prometheus": {"address": prometheus},
            "metrics": [
                {"name": "success-rate", "builtin": "successRate", "window": "10s", "min": 0.95},
                {"name": "p99-latency", "builtin": "latencyP99", "window": "10s", "relative": {"maxRatio": 3}},
                {"name": "drift", "builtin": "predictionDrift", "max": 0.25, "minSamples": 200},
            ],
        },
    }


def _change_model(cluster: LocalCluster, name: str, version: str, rollout: dict[str, Any]) -> None:
    patch = {"spec": {"model": {"version": version, "uri": f"s3://models/{name}/{version}"}, "rollout": rollout}}
    cluster.kubectl("patch", "mdep", name, "-n", NAMESPACE, "--type=merge", "-p", json.dumps(patch))


def _canary_server(cluster: LocalCluster, name: str, servers: ModelServers, version: str, **faults: float) -> None:
    deadline = time.monotonic() + 60
    while not (canary := (_md(cluster, name).get("status") or {}).get("canary")):
        if time.monotonic() > deadline:
            raise DemoError("the canary did not start within 60s")
        time.sleep(0.2)
    servers.start("canary", canary["revision"], version, **faults)


def _weights(cluster: LocalCluster, name: str) -> tuple[int, int] | None:
    canary = (_md(cluster, name).get("status") or {}).get("canary")
    weight = canary["actualWeight"] if canary else 0
    return 100 - weight, weight


def start_operator(cluster: LocalCluster) -> Operator:
    """The operator in its own session, recorded with the cluster so that `cluster down` stops it too."""
    operator = Operator(Cluster.of(cluster), cluster.state_dir / "logs" / "operator.log", detach=True)
    try:
        operator.start()
    except AssertionError as error:
        operator.stop()
        raise DemoError(f"the operator did not start: {error}") from error
    assert operator.process is not None
    cluster.attach("operator", operator.process.pid)
    console.print(
        f"operator running (pid {operator.process.pid}), metrics on http://127.0.0.1:{operator.metrics_port}/metrics"
    )
    return operator


def run_demo(example: Path, keep: bool) -> None:
    if not example.exists():
        raise DemoError(f"{example} not found: run the demo from the repository root, or pass --file")
    manifest = yaml.safe_load(example.read_text())
    name = manifest["metadata"]["name"]
    manifest["metadata"]["namespace"] = NAMESPACE
    started = time.monotonic()

    console.rule("1. control plane binaries (built once, then cached)")
    build(echo=console.print)
    console.rule("2. local cluster: etcd, kube-apiserver, controller-manager, scheduler, KWOK")
    cluster = LocalCluster(cache_dir() / "clusters" / "demo")
    cluster.stop()
    cluster.start()
    try:
        console.print(f"cluster up; export KUBECONFIG={cluster.kubeconfig}")
        console.rule("3. the ModelDeployment CRD, generated from the pydantic models")
        cluster.kubectl("apply", "--server-side", "-f", "-", input_text=crd.crd_yaml())
        cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.io")
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
        console.rule("4. the operator")
        start_operator(cluster)

        console.rule(f"5. apply {example}")
        cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(manifest))
        version = manifest["spec"]["model"]["version"]
        watch(cluster, name, f"{name}: first rollout", lambda md: ready_at(md, version))

        console.rule("6. a real Prometheus and model servers for the stable and canary tracks")
        prometheus = PrometheusServer()
        prometheus.start()
        servers = ModelServers(prometheus, NAMESPACE)
        try:
            stable = _md(cluster, name)["status"]["stable"]
            servers.start("stable", stable["revision"], version)
            console.print(
                f"Prometheus on {prometheus.address}; model servers on 127.0.0.1, traffic split by the canary's weight"
            )

            console.rule("7. a better model goes through a canary gated on metrics, and is promoted")
            good = f"{version}-next"
            _change_model(cluster, name, good, analysis_rollout(prometheus.address))
            _canary_server(cluster, name, servers, good)
            with LoadGenerator(servers, lambda: _weights(cluster, name)):
                watch(cluster, name, f"{name}: canary of version {good}", lambda md: ready_at(md, good))
            promoted = _md(cluster, name)["status"]["stable"]
            servers.start("stable", promoted["revision"], good)
            servers.stop("canary")

            console.rule("8. a worse model (30% errors) is rolled back automatically, with the reason")
            worse = f"{version}-worse"
            _change_model(cluster, name, worse, analysis_rollout(prometheus.address))
            _canary_server(cluster, name, servers, worse, error_rate=0.3)
            with LoadGenerator(servers, lambda: _weights(cluster, name)):
                rolled = watch(cluster, name, f"{name}: canary of version {worse}", _rolled_back(worse), timeout=120)
            rollback = rolled["status"]["lastRollback"]
            console.print(f"[red]rolled back[/] {rollback['reason']}: {rollback['message']}")
            console.print(f"stable still serves version {rolled['status']['stable']['model']['version']}")
        finally:
            servers.close()
            prometheus.close()

        console.rule("9. a malformed spec is refused at admission, with the reason")
        bad = {**manifest, "spec": {**manifest["spec"], "replicas": 2, "autoscaling": {"maxReplicas": 3}}}
        refused = cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(bad), check=False)
        console.print(f"[red]{refused.stderr.strip()}[/]")

        events = cluster.kubectl(
            "get",
            "events",
            "-n",
            NAMESPACE,
            "--field-selector",
            "involvedObject.kind=ModelDeployment",
            "--sort-by=.lastTimestamp",
        )
        console.rule("10. Events")
        console.print(events.stdout)
        console.print(f"[bold green]demo finished in {time.monotonic() - started:.1f}s[/]")
    except BaseException:
        console.print(f"logs: {cluster.state_dir / 'logs'}")
        if not keep:
            cluster.stop()
        raise
    if keep:
        console.print(
            "The cluster and the operator keep running:\n"
            f"  export KUBECONFIG={cluster.kubeconfig} PATH={bin_dir()}:$PATH\n"
            f"  kubectl get mdep -n {NAMESPACE}\n"
            "Stop both with: modeldeploy-dev cluster down --name demo"
        )
    else:
        cluster.stop()
        console.print("cluster and operator stopped; nothing is left running (use --keep to explore)")


def main(example: Path, keep: bool) -> int:
    try:
        run_demo(example, keep)
    except (ClusterError, DemoError, RuntimeError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or ""
        console.print(f"[red]demo failed: {error} {detail}[/]")
        return 1
    return 0
