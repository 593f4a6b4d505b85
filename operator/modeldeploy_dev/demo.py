"""`modeldeploy-dev demo`: the operator on a local cluster, end to end, with a live view."""

from __future__ import annotations

import json
import subprocess
import threading
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
from modeldeploy.report import ReportError, write_report
from modeldeploy_dev.cluster import ClusterError, LocalCluster, bin_dir, build, cache_dir
from modeldeploy_dev.dataplane import LoadGenerator, ModelServers, PrometheusServer
from modeldeploy_dev.kubelet import FetchKubelet
from modeldeploy_dev.stores import S3_ACCESS_KEY, S3_SECRET_KEY, MLflowServer, S3Server
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


class Registry:
    """A real MLflow registry whose artifacts live in a real S3 server, both on 127.0.0.1, with two versions of
    `fraud-scorer` logged by MLflow itself; made ready in a thread while the other acts run."""

    MODEL = "fraud-scorer"

    def __init__(self, root: Path) -> None:
        self.s3 = S3Server(root / "s3")
        self.mlflow = MLflowServer(root / "mlflow", artifacts=self.s3)
        self.error: BaseException | None = None
        self.versions: list[str] = []
        self._thread = threading.Thread(target=self._prepare, name="registry", daemon=True)

    def _prepare(self) -> None:
        try:
            self.s3.start(echo=lambda _: None)
            self.mlflow.start(echo=lambda _: None)
            self.versions = self.mlflow.publish({self.MODEL: 2})[self.MODEL]
        except BaseException as error:  # raised again by ready(), in the demo's own thread
            self.error = error

    def start(self) -> Registry:
        self._thread.start()
        return self

    def ready(self) -> Registry:
        self._thread.join(timeout=600)
        if self.error is not None or self._thread.is_alive():
            raise DemoError(f"the MLflow registry and S3 store did not start: {self.error or 'still starting'}")
        return self

    def stop(self) -> None:
        self._thread.join(timeout=600)
        self.mlflow.stop()
        self.s3.stop()


def _canary_at(md: dict[str, Any], version: str) -> dict[str, Any] | None:
    canary: dict[str, Any] | None = (md.get("status") or {}).get("canary")
    return canary if canary and canary["model"]["version"] == version else None


def _unresolved(md: dict[str, Any]) -> bool:
    conditions = (md.get("status") or {}).get("conditions") or []
    return any(c["type"] == "ModelResolved" and c["status"] == "False" for c in conditions)


def registry_act(
    cluster: LocalCluster, registry: Registry, prometheus: PrometheusServer, servers: ModelServers
) -> None:
    """A ModelDeployment follows `models:/fraud-scorer@champion`; moving the alias in MLflow is the whole release."""
    name = "fraud-mlflow"
    old, new = registry.versions
    harness = Cluster.of(cluster)
    harness.kubectl(
        "create", "secret", "generic", "s3-credentials", "-n", NAMESPACE,
        f"--from-literal=AWS_ACCESS_KEY_ID={S3_ACCESS_KEY}", f"--from-literal=AWS_SECRET_ACCESS_KEY={S3_SECRET_KEY}",
    )  # fmt: skip
    model = {
        "name": "fraud-scorer",
        "uri": f"models:/{Registry.MODEL}@champion",
        "format": "sklearn",
        "registry": {"mlflow": {"trackingUri": registry.mlflow.tracking_uri, "pollInterval": "2s"}},
        "storage": {"secretName": "s3-credentials", "s3": {"endpoint": registry.s3.endpoint, "pathStyle": True}},
    }
    rollout = analysis_rollout(prometheus.address)
    # Errors and absolute latency only: they judge from the first scrapes (drift waits for 200 predictions a track).
    rollout["analysis"]["metrics"] = [
        {"name": "success-rate", "builtin": "successRate", "window": "10s", "min": 0.95},
        {"name": "p99-latency", "builtin": "latencyP99", "window": "10s", "max": 0.5},
    ]
    manifest = {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"model": model, "runtime": {"preset": "modelserver"}, "replicas": 2, "rollout": rollout},
    }
    console.print(f"MLflow on {registry.mlflow.tracking_uri} (artifacts in the S3 store {registry.s3.endpoint})")
    cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(manifest))
    servers.close()  # the model servers now stand for this ModelDeployment's tracks
    with FetchKubelet(harness, NAMESPACE, cluster.state_dir / "fetch", instance=name) as kubelet:
        first = watch(cluster, name, f"{name}: version {old} from the registry", lambda md: ready_at(md, old))
        fetched = kubelet.wait(first["status"]["stable"]["revision"])
        if not fetched.ok:
            raise DemoError(f"fetching version {old} failed: {fetched.run.output[-1000:]}")
        servers.start_fetched("stable", fetched.revision, old, fetched.model_dir)
        console.print(f"version {old} fetched from {first['status']['source']['downloadUri']}: {fetched.digest}")
        registry.mlflow.set_alias(Registry.MODEL, "champion", new)
        console.print(f"[bold]moved the alias champion to version {new} in MLflow[/]; the spec is not touched")
        moved, deadline = time.monotonic(), time.monotonic() + 60
        while (canary := _canary_at(_md(cluster, name), new)) is None:
            if time.monotonic() > deadline:
                raise DemoError("no canary within 60s of the alias move")
            time.sleep(0.1)
        console.print(f"the canary of version {new} started {time.monotonic() - moved:.1f}s after the alias move")
        second = kubelet.wait(canary["revision"])
        if not second.ok:
            raise DemoError(f"fetching version {new} failed: {second.run.output[-1000:]}")
        servers.start_fetched("canary", second.revision, new, second.model_dir)
        with LoadGenerator(servers, lambda: _weights(cluster, name)):
            done = watch(cluster, name, f"{name}: canary of registry version {new}", lambda md: ready_at(md, new))
    served = done["status"]["stable"]["model"]
    console.print(
        f"[green]promoted[/] version {served['version']} of {served['source']} (run {served.get('runId')}, "
        f"digest {served.get('digest') or 'not reported yet'}); metadata.generation is still "
        f"{done['metadata']['generation']}"
    )
    registry.mlflow.stop()
    console.print("[bold]MLflow stopped[/]: the pods keep serving the pinned version, and the status says why")
    down = watch(cluster, name, f"{name}: the registry is down", _unresolved, timeout=30)
    resolved = next(c for c in down["status"]["conditions"] if c["type"] == "ModelResolved")
    console.print(f"phase {down['status']['phase']}; ModelResolved=False {resolved['reason']}: {resolved['message']}")


def audit_report(cluster: LocalCluster, name: str, revision: str) -> Path:
    """`modeldeploy report` of one rollout, written beside the cluster's state (it outlives the cluster)."""
    output = cache_dir() / "reports" / f"{name}-{revision}.html"
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        written = write_report(NAMESPACE, name, revision, output, None, None, str(cluster.kubeconfig))
    except ReportError as error:
        raise DemoError(f"the audit report could not be written: {error}") from error
    for note in written.notes:
        console.print(f"note: {note}")
    for path in (written.html, *written.plots):
        console.print(f"wrote {path}")
    return written.html


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
    registry: Registry | None = None
    try:
        console.print(f"cluster up; export KUBECONFIG={cluster.kubeconfig}")
        console.rule("3. the ModelDeployment CRD, generated from the pydantic models")
        cluster.kubectl("apply", "--server-side", "-f", "-", input_text=crd.crd_yaml())
        cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.io")
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
        console.rule("4. the operator")
        start_operator(cluster)
        registry = Registry(cluster.state_dir / "registry").start()  # ready by act 9

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

            console.rule("9. a new MLflow version ships by moving its alias, with no spec change")
            registry_act(cluster, registry.ready(), prometheus, servers)

            console.rule("10. the audit report of the rollback in act 8, made after the fact")
            report = audit_report(cluster, name, rollback["revision"])
        finally:
            servers.close()
            prometheus.close()
            registry.stop()

        console.rule("11. a malformed spec is refused at admission, with the reason")
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
        console.rule("12. Events")
        console.print(events.stdout)
        console.print(f"[bold]audit report of the rollback in act 8:[/] {report}")
        console.print(f"[bold green]demo finished in {time.monotonic() - started:.1f}s[/]")
    except BaseException:
        console.print(f"logs: {cluster.state_dir / 'logs'}")
        if registry is not None:
            registry.stop()
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
