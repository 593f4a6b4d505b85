"""The end-to-end harness, shared by the tests, the benchmarks in `hack/` and the demo.

Talking to the cluster under test (kubectl, reads, the audit log), waits with deadlines, the operator as a
subprocess (`modeldeploy run`), the one "Ready at this version" predicate, and ModelDeployment specs that serve
on any cluster. It reads the repository's CRDs and example manifest, so it runs from a checkout (the `dev`
extra installs this package in editable mode).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from modeldeploy_dev.cluster import OPERATOR_USER, LocalCluster, bin_dir, free_port

T = TypeVar("T")
POLL_SECONDS = 0.2

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
EXAMPLE = REPO / "manifests" / "examples" / "fraud-scorer.yaml"
# Minimal HTTPRoute and VirtualService CRDs, for clusters that lack the real ones.
FIXTURE_CRDS = {
    "httproutes": ("gateway.networking.k8s.io", REPO / "tests" / "data" / "crds" / "httproutes.yaml"),
    "virtualservices": ("networking.istio.io", REPO / "tests" / "data" / "crds" / "virtualservices.yaml"),
}


def wait_for(predicate: Callable[[], T | Literal[False] | None], timeout: float = 60.0, what: str = "condition") -> T:
    """Polls `predicate` until it returns something truthy (returned, so never None), or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (subprocess.CalledProcessError, KeyError, IndexError, TypeError, ValueError) as error:
            last = error
        else:
            if value:
                return value
            last = value
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last result: {last!r}")


# -- ModelDeployments -----------------------------------------------------------------------------------------


def modeldeployment(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return item  # type: ignore[no-any-return]
    return {}


def ready_at(md: dict[str, Any] | None, version: str | None = None) -> bool:
    """The operator has seen the current generation and reports it Ready=True, with no canary in flight, and
    (if given) the stable track serves model `version`."""
    if not md:
        return False
    status = md.get("status") or {}
    generation = md["metadata"]["generation"]
    ready = condition(md, "Ready")
    return (
        status.get("observedGeneration") == generation
        and ready.get("status") == "True"
        and ready.get("observedGeneration") == generation
        and not status.get("canary")
        and (version is None or ((status.get("stable") or {}).get("model") or {}).get("version") == version)
    )


def example_spec(**overrides: Any) -> dict[str, Any]:
    """manifests/examples/fraud-scorer.yaml's spec, with top-level fields replaced by `overrides`."""
    spec: dict[str, Any] = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text())["spec"])
    spec.update(overrides)
    return spec


# A container that really serves on a real kubelet (kind) as well as under KWOK: agnhost's HTTP echo server.
SERVING_RUNTIME = {
    "preset": "custom",
    "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
    "port": 8080,
    "args": ["netexec", "--http-port=8080"],
}


def serving_spec(**overrides: Any) -> dict[str, Any]:
    """A spec whose pods become Ready on any cluster; no canary steps by default."""
    return example_spec(**{"runtime": SERVING_RUNTIME, "rollout": {"steps": []}, **overrides})


def model_version(version: str) -> dict[str, str]:
    """The example's model at another version."""
    return {
        "name": "fraud-scorer",
        "version": version,
        "uri": f"s3://models/fraud-scorer/{version}",
        "format": "sklearn",
    }


# -- reading what the tools print -------------------------------------------------------------------------


def printed_rows(output: str) -> list[dict[str, str]]:
    """`kubectl get` output as one dict per row, column name -> cell ("" for an empty cell).

    Cells are cut at the header's column offsets, so an empty column never shifts its neighbours' values.
    """
    header, *rows = output.splitlines()
    starts, position = [], 0
    names = header.split()
    for name in names:
        position = header.index(name, position)
        starts.append(position)
        position += len(name)
    ends = [*starts[1:], None]
    return [{n: row[s:e].strip() for n, s, e in zip(names, starts, ends, strict=True)} for row in rows if row.strip()]


def view_rows(text: str) -> dict[str, list[str]]:
    """The table rows of a rendered status view (`modeldeploy status`), keyed by their first cell.

    Header rows and wrapped continuation lines (empty first cell) are left out; the first row of a key wins.
    """
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        inner = line.strip().removeprefix("│").removesuffix("│").strip()
        if not inner.startswith("│"):
            continue
        cells = [cell.strip() for cell in inner.strip("│").split("│")]
        if cells[0]:
            rows.setdefault(cells[0], cells[1:])
    return rows


# -- the cluster under test -------------------------------------------------------------------------------


@dataclass
class Cluster:
    kubeconfig: Path
    operator_kubeconfig: Path
    audit_log: Path | None
    kubectl_path: str

    @classmethod
    def of(cls, local: LocalCluster) -> Cluster:
        """The harness's view of a local cluster: admin and operator credentials, and the audit log."""
        return cls(local.kubeconfig, local.operator_kubeconfig, local.audit_log, str(bin_dir() / "kubectl"))

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=input_text,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return result

    def modeldeploy(self, *args: str, columns: int = 200) -> str:
        """Runs the `modeldeploy` command (controls and views) against this cluster; its standard output."""
        result = subprocess.run(
            [sys.executable, "-m", "modeldeploy", *args, f"--kubeconfig={self.kubeconfig}"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": str(columns)},
        )
        if result.returncode != 0:
            raise AssertionError(f"modeldeploy {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result.stdout

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def require(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        """An object that must exist now."""
        obj = self.get(kind, name, namespace)
        assert obj is not None, f"{kind} {namespace}/{name} does not exist"
        return obj

    def ready(self, name: str, namespace: str, version: str | None = None) -> dict[str, Any] | None:
        """The ModelDeployment if `ready_at(it, version)`, else None: a predicate for `wait_for`."""
        md = self.get("mdep", name, namespace)
        return md if ready_at(md, version) else None

    def printed(self, kind: str, name: str, namespace: str) -> dict[str, str]:
        """The printer columns `kubectl get` shows for one object, column name -> cell."""
        (row,) = printed_rows(self.kubectl("get", kind, name, "-n", namespace).stdout)
        return row

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        docs = obj if isinstance(obj, list) else [obj]
        return self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(docs), check=False)

    def install_crds(self) -> None:
        """The ModelDeployment CRD, and stand-in HTTPRoute and VirtualService CRDs unless real ones exist."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
        self.wait_established("modeldeployments.modeldeploy.io")
        for plural, (group, path) in FIXTURE_CRDS.items():
            name = f"{plural}.{group}"
            if self.kubectl("get", "crd", name, check=False).returncode != 0:
                self.kubectl("apply", "-f", str(path))
                self.wait_established(name)

    def wait_established(self, crd: str) -> None:
        """Polls the CRD's Established condition (`kubectl wait` can fail at once on a CRD it has just seen)."""
        established = '{.status.conditions[?(@.type=="Established")].status}'

        def check() -> bool:
            result = self.kubectl("get", "crd", crd, "-o", f"jsonpath={established}", check=False)
            return result.returncode == 0 and result.stdout.strip() == "True"

        wait_for(check, timeout=60, what=f"CRD {crd} Established")

    def operator_writes(self, since_line: int) -> list[dict[str, Any]]:
        """Write requests the operator's own user sent, from the API server's audit log."""
        assert self.audit_log is not None
        lines = self.audit_log.read_text().splitlines()[since_line:]
        events = [json.loads(line) for line in lines]
        return [e for e in events if e["user"]["username"] == OPERATOR_USER and e["stage"] == "ResponseComplete"]

    def event_reasons(self, name: str, namespace: str) -> list[str]:
        """Reasons of the Events on a ModelDeployment."""
        listing = self.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "-o",
            "json",
            f"--field-selector=involvedObject.name={name},involvedObject.kind=ModelDeployment",
        )
        return [e["reason"] for e in json.loads(listing.stdout)["items"]]

    def resource_versions(self, namespace: str, kinds: str) -> dict[str, str]:
        """kind/name -> resourceVersion for `kinds` (a kubectl list such as "mdep,deployment")."""
        listing = self.kubectl(
            "get",
            kinds,
            "-n",
            namespace,
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion}\n{end}",
        )
        return dict(line.split("=") for line in listing.stdout.split())

    def audit_lines(self) -> int:
        return len(self.audit_log.read_text().splitlines()) if self.audit_log else 0


# -- the operator ------------------------------------------------------------------------------------------


def _http(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()  # type: ignore[no-any-return]
    except OSError:
        return None


@dataclass
class Operator:
    """`python -m modeldeploy <args>` as a subprocess, on free local ports, logging to `log_path`.

    `args` defaults to `run --all-namespaces`; give an installed Deployment's container args to run the operator
    exactly as installed (their `--metrics-port`/`--liveness-port` values are replaced by free ports). It
    authenticates with `kubeconfig`, by default the cluster's operator user (whose writes the audit log tells
    apart). `detach` starts it in its own session, so that it outlives its launcher (the demo's `--keep`).
    """

    cluster: Cluster
    log_path: Path
    args: Sequence[str] = ("run", "--all-namespaces")
    kubeconfig: Path | None = None
    detach: bool = False
    metrics_port: int = field(default_factory=free_port)
    liveness_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        args = list(self.args)
        for flag, port in (("--metrics-port", self.metrics_port), ("--liveness-port", self.liveness_port)):
            if flag in args:
                args[args.index(flag) + 1] = str(port)
            else:
                args = [a for a in args if not a.startswith(f"{flag}=")] + [f"{flag}={port}"]
        return [sys.executable, "-m", "modeldeploy", *args]

    def start(self) -> None:
        # Not the in-cluster service account, even when the tests themselves run in a pod.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env["KUBECONFIG"] = str(self.kubeconfig or self.cluster.operator_kubeconfig)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=self.detach,
            )
        process = self.process

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the operator exited with {process.returncode}:\n{self.log_tail()}")
            return _http(f"http://127.0.0.1:{self.liveness_port}/healthz") is not None

        wait_for(up, 60, f"the operator's liveness probe (log: {self.log_path})")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def __enter__(self) -> Operator:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def metrics(self) -> dict[str, float]:
        text = _http(f"http://127.0.0.1:{self.metrics_port}/metrics") or ""
        samples = {}
        for line in text.splitlines():
            match = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$", line)
            if match:
                samples[match.group(1)] = float(match.group(2))
        return samples

    def settled(self, at_least_reconciles: int) -> bool:
        """It has reconciled that often and has nothing queued or running."""
        m = self.metrics()
        return (
            m.get('modeldeploy_reconcile_total{result="success"}', 0) >= at_least_reconciles
            and m.get("modeldeploy_workqueue_depth") == 0
            and m.get("modeldeploy_reconciles_in_flight") == 0
        )

    def restart(self) -> int:
        """Stops and starts the operator, waits until it has reconciled every object; returns the audit mark."""
        self.stop()
        mark = self.cluster.audit_lines()
        self.start()
        everything = self.cluster.kubectl("get", "mdep", "--all-namespaces", "-o", "name").stdout.split()
        wait_for(lambda: self.settled(len(everything)), what="the restarted operator to reconcile every object")
        return mark

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


# -- tools without a cluster --------------------------------------------------------------------------------


@dataclass
class Helm:
    """The helm binary built with the control plane, with its config, cache and data under `home`."""

    home: Path

    def __call__(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(bin_dir() / "helm"), *args]
        if kubeconfig is not None:
            command.append(f"--kubeconfig={kubeconfig}")
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result


def kubectl_offline(*args: str) -> str:
    """kubectl for what needs no cluster (`kubectl kustomize`); its standard output."""
    result = subprocess.run([str(bin_dir() / "kubectl"), *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout
