"""A real Kubernetes control plane on 127.0.0.1, from binaries built out of Go modules.

etcd + kube-apiserver (RBAC, service accounts, audit log) + kube-controller-manager + kube-scheduler +
KWOK, which plays the kubelet for fake nodes so that pods become Running and Ready.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from modeldeploy_dev.certs import Pair, Pki

VERSIONS = {
    "K8S_VERSION": "1.36.3",
    "ETCD_VERSION": "3.6.16",
    "KWOK_VERSION": "0.8.0",
    "HELM_VERSION": "3.22.0",
}
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "helm")
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
OPERATOR_USER = "modeldeploy-operator"
# Room for 10,000 ModelDeployments and more: each idle one holds one ClusterIP (a /24 held about 126).
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/16"
# The controllers' client rate limits. The defaults (20 requests/s for the controller manager, 50 for the
# scheduler) and not the API server set the pace at a few thousand Deployments; a real cluster's control plane
# is sized up the same way.
CONTROLLER_API_QPS = 1000
CONTROLLER_API_BURST = 2000

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}


class ClusterError(RuntimeError):
    """The local control plane could not be built or started; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("MODELDEPLOY_CACHE", Path.home() / ".cache" / "modeldeploy"))


def bin_dir() -> Path:
    return cache_dir() / "bin" / f"k8s-{VERSIONS['K8S_VERSION']}"


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if not os.access(bin_dir() / b, os.X_OK)]


def build(echo: Callable[[str], None] = print) -> Path:
    """Builds whatever is missing from the cache (nothing when warm). Progress goes to stderr."""
    if not missing_binaries():
        echo(f"control plane binaries cached in {bin_dir()}")
        return bin_dir()
    if shutil.which("go") is None:
        raise ClusterError("Go is not installed: the control plane is built from Go modules; install Go >= 1.26")
    script = resources.files("modeldeploy_dev").joinpath("build-control-plane.sh")
    with resources.as_file(script) as path:
        env = {**os.environ, **VERSIONS, "MODELDEPLOY_CACHE": str(cache_dir())}
        result = subprocess.run(["bash", str(path)], env=env, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise ClusterError(f"building the control plane failed (exit {result.returncode}); see the output above")
    still_missing = missing_binaries()
    if still_missing:
        raise ClusterError(f"the build finished but these binaries are missing: {', '.join(still_missing)}")
    echo(f"control plane binaries in {bin_dir()}")
    return bin_dir()


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Polls `predicate` until it is truthy; ClusterError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@dataclass
class LocalCluster:
    """Start with `start()`, stop with `stop()`; `state_dir` holds data, certs, logs and kubeconfigs."""

    state_dir: Path
    nodes: int = 1
    max_pods: int = 110
    """Pods each fake node takes (the kubelet's default); raise it with the node count for big benchmarks."""
    remove_state_on_stop: bool = True
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        """Credentials of a separate user, so the audit log can tell the operator's writes apart."""
        return self.state_dir / "operator.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "pids.json"

    @classmethod
    def temporary(cls, nodes: int = 1, max_pods: int = 110) -> LocalCluster:
        return cls(Path(tempfile.mkdtemp(prefix="modeldeploy-cluster-")), nodes=nodes, max_pods=max_pods)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> None:
        missing = missing_binaries()
        if missing:
            raise ClusterError(
                f"control plane binaries missing from {bin_dir()}: {', '.join(missing)}; "
                "run `modeldeploy-dev cluster build`"
            )
        deadline = time.monotonic() + timeout
        try:
            self._start(deadline)
        except BaseException:
            self.stop()
            raise

    def _start(self, deadline: float) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        pki = Pki(self.state_dir / "pki")
        serving = pki.issue("apiserver", "kube-apiserver", server=True)
        admin = pki.issue("admin", "kubernetes-admin", organisation="system:masters")
        operator = pki.issue("operator", OPERATOR_USER, organisation="system:masters")
        sa = pki.service_account_keys()
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        server = f"https://127.0.0.1:{api_port}"
        self._write_kubeconfig(self.kubeconfig, server, pki.ca, admin, "admin")
        self._write_kubeconfig(self.operator_kubeconfig, server, pki.ca, operator, OPERATOR_USER)
        (self.state_dir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))

        self._spawn(
            "etcd",
            [
                "--name=local",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=local=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", deadline, lambda: self._http_ok(f"http://127.0.0.1:{etcd_port}/health"))

        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={pki.ca}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=RBAC",
                "--endpoint-reconciler-type=none",
                f"--audit-policy-file={self.state_dir / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                f"--cert-dir={self.state_dir / 'apiserver-certs'}",
                "--profiling=false",
            ],
        )
        self._wait("kube-apiserver", deadline, lambda: self._api_ok(f"{server}/readyz", pki.ca, admin))

        common = [
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--kube-api-qps={CONTROLLER_API_QPS}",
            f"--kube-api-burst={CONTROLLER_API_BURST}",
        ]
        self._spawn(
            "kube-controller-manager",
            [
                *common,
                f"--service-account-private-key-file={sa.key}",
                f"--root-ca-file={pki.ca}",
                "--use-service-account-credentials=false",
                "--concurrent-deployment-syncs=20",
                "--concurrent-replicaset-syncs=20",
                "--concurrent-gc-syncs=20",
                "--concurrent-service-endpoint-syncs=20",
            ],
        )
        self._spawn("kube-scheduler", common)
        stages = resources.files("modeldeploy_dev").joinpath("kwok-stages.yaml")
        (self.state_dir / "kwok-stages.yaml").write_text(stages.read_text())
        self._spawn(
            "kwok",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--config={self.state_dir / 'kwok-stages.yaml'}",
                "--node-lease-duration-seconds=40",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.0.0.2",
            ],
        )
        self._write_pids()
        self._create_nodes()
        self._wait(
            "kube-controller-manager (default ServiceAccount)",
            deadline,
            lambda: self._kubectl_ok(["get", "serviceaccount", "default", "-n", "default"]),
        )
        self._wait("kwok (nodes Ready)", deadline, self._nodes_ready)

    def stop(self) -> None:
        """Terminates every process (leaving none behind) and removes the state if it is temporary."""
        for name in reversed(list(self.processes)):
            _terminate(self.processes[name].pid)
        self.processes.clear()
        if self.pid_file.exists():
            # Last started, first stopped: the operator and KWOK before the API server, etcd at the end. An API
            # server whose etcd has gone takes many seconds to shut down.
            for pid in reversed(list(json.loads(self.pid_file.read_text()).values())):
                _terminate(int(pid))
        if self.remove_state_on_stop:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        elif self.pid_file.exists():
            self.pid_file.unlink()

    def running(self) -> bool:
        if not self.pid_file.exists():
            return False
        pids = json.loads(self.pid_file.read_text())
        return all(name in pids and _alive(int(pids[name])) for name in CONTROL_PLANE)

    def attach(self, name: str, pid: int) -> None:
        """Records another process (the demo's operator) so that `stop` ends it with the cluster."""
        pids = json.loads(self.pid_file.read_text()) if self.pid_file.exists() else {}
        self.pid_file.write_text(json.dumps({**pids, name: pid}))

    # -- helpers ---------------------------------------------------------------------------------------

    def kubectl(
        self, *args: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir() / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
            input=input_text,
            timeout=60,
        )

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.state_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        self.processes[name] = subprocess.Popen(
            [str(bin_dir() / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.state_dir,
        )
        log.close()

    def _write_pids(self) -> None:
        self.pid_file.write_text(json.dumps({n: p.pid for n, p in self.processes.items()}))

    def _wait(self, what: str, deadline: float, ready: Callable[[], bool]) -> None:
        while True:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise ClusterError(
                        f"{name} exited with {process.returncode} while waiting for {what}:\n{self._log_tail(name)}"
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what}; logs in {self.state_dir / 'logs'}")
            time.sleep(0.2)

    def _log_tail(self, name: str, lines: int = 30) -> str:
        path = self.state_dir / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    @staticmethod
    def _api_ok(url: str, ca: Path, client: Pair) -> bool:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(client.cert), str(client.key))
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _kubectl_ok(self, args: list[str]) -> bool:
        return self.kubectl(*args, check=False).returncode == 0

    def _create_nodes(self) -> None:
        nodes = [_node(f"kwok-node-{i}", self.max_pods) for i in range(self.nodes)]
        self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(nodes))

    def _nodes_ready(self) -> bool:
        result = self.kubectl("get", "nodes", "-o", "json", check=False)
        if result.returncode != 0:
            return False
        items = json.loads(result.stdout)["items"]
        ready = [
            n
            for n in items
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
        ]
        return len(ready) >= self.nodes

    @staticmethod
    def _write_kubeconfig(path: Path, server: str, ca: Path, client: Pair, user: str) -> None:
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "modeldeploy-local", "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}
            ],
            "users": [
                {
                    "name": user,
                    "user": {"client-certificate-data": _b64(client.cert), "client-key-data": _b64(client.key)},
                }
            ],
            "contexts": [{"name": "modeldeploy-local", "context": {"cluster": "modeldeploy-local", "user": user}}],
            "current-context": "modeldeploy-local",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)


def _node(name: str, max_pods: int = 110) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": str(max_pods)},
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": str(max_pods)},
        },
    }


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie.

    `cluster down` runs in another process than the one that started the cluster, so the processes it stops are
    not its children: it cannot reap them, and where nothing reaps orphans (a container whose init does not) they
    stay zombies, which `kill(pid, 0)` still finds. Waiting for a zombie to go would take the whole grace period.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc: trust kill()


def _terminate(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                finished, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                finished = 0 if _alive(pid) else pid
            if finished == pid or not _alive(pid):
                return
            time.sleep(0.05)
