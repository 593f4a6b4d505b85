"""`modeldeploy demo`: the operator on a local cluster, end to end, with a live view."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from modeldeploy import control
from modeldeploy.core import crd
from modeldeploy.devcluster.cluster import ClusterError, LocalCluster, bin_dir, build, cache_dir, free_port

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


def _ready_at(version: str) -> Any:
    def check(md: dict[str, Any]) -> bool:
        status = md.get("status") or {}
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        return bool(
            status.get("observedGeneration") == md["metadata"]["generation"]
            and ready.get("status") == "True"
            and (status.get("stable") or {}).get("model", {}).get("version") == version
        )

    return check


def _rolled_back(version: str) -> Any:
    def check(md: dict[str, Any]) -> bool:
        rollback = (md.get("status") or {}).get("lastRollback") or {}
        return bool(rollback.get("model", {}).get("version") == version)

    return check


def start_operator(cluster: LocalCluster) -> subprocess.Popen[bytes]:
    metrics_port, liveness_port = free_port(), free_port()
    log = (cluster.state_dir / "logs" / "operator.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modeldeploy",
            "run",
            "--all-namespaces",
            f"--metrics-port={metrics_port}",
            f"--liveness-port={liveness_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": str(cluster.operator_kubeconfig)},
        start_new_session=True,
    )
    log.close()
    cluster.attach("operator", process.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the operator exited with {process.returncode}; see {cluster.state_dir}/logs/operator.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{liveness_port}/healthz", timeout=1):
                console.print(
                    f"operator running (pid {process.pid}), metrics on http://127.0.0.1:{metrics_port}/metrics"
                )
                return process
        except OSError:
            time.sleep(0.2)
    raise DemoError("the operator did not answer its liveness probe within 60s")


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
        watch(cluster, name, f"{name}: first rollout", _ready_at(version))

        console.rule("6. a new model version goes through a canary: 20%, pause, 50%, pause, promotion")
        model = manifest["spec"]["model"]
        new_version = f"{version}-next"
        patch = {"spec": {"model": {"version": new_version, "uri": f"{model['uri'].rstrip('/')}-next"}}}
        cluster.kubectl("patch", "mdep", name, "-n", NAMESPACE, "--type=merge", "-p", json.dumps(patch))
        watch(cluster, name, f"{name}: canary of version {new_version}", _ready_at(new_version))

        console.rule("7. a version whose pods never become ready is rolled back automatically")
        broken = f"{version}-broken"
        broken_patch: dict[str, Any] = {
            "spec": {
                "model": {"version": broken},
                "runtime": {"preset": "custom", "port": 8080, "image": "registry.example/model-server:never-ready"},
                "rollout": {"progressDeadlineSeconds": 15},
            }
        }
        cluster.kubectl("patch", "mdep", name, "-n", NAMESPACE, "--type=merge", "-p", json.dumps(broken_patch))
        rolled = watch(cluster, name, f"{name}: canary of version {broken}", _rolled_back(broken), timeout=90)
        rollback = rolled["status"]["lastRollback"]
        console.print(f"[red]rolled back[/] {rollback['reason']}: {rollback['message']}")
        console.print(f"stable still serves version {rolled['status']['stable']['model']['version']}")

        console.rule("8. a malformed spec is refused at admission, with the reason")
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
        console.rule("9. Events")
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
            "Stop both with: modeldeploy cluster down --name demo"
        )
    else:
        cluster.stop()
        console.print("cluster and operator stopped; nothing is left running (use --keep to explore)")


def main(example: Path, keep: bool) -> int:
    try:
        run_demo(example, keep)
    except (ClusterError, DemoError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or ""
        console.print(f"[red]demo failed: {error} {detail}[/]")
        return 1
    return 0
