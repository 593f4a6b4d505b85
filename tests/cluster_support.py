"""Talking to the cluster under test: kubectl, waits with deadlines, the operator subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from modeldeploy.devcluster.cluster import OPERATOR_USER, free_port

T = TypeVar("T")
POLL_SECONDS = 0.2


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, what: str = "condition") -> T:
    """Polls `predicate` until it returns something truthy, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (subprocess.CalledProcessError, KeyError, IndexError, TypeError, ValueError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last result: {last!r}")


@dataclass
class Cluster:
    kubeconfig: Path
    operator_kubeconfig: Path
    audit_log: Path | None
    kubectl_path: str

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

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        docs = obj if isinstance(obj, list) else [obj]
        return self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(docs), check=False)

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


@dataclass
class Operator:
    cluster: Cluster
    log_path: Path
    metrics_port: int = field(default_factory=free_port)
    liveness_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.operator_kubeconfig)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modeldeploy",
                    "run",
                    "--all-namespaces",
                    f"--metrics-port={self.metrics_port}",
                    f"--liveness-port={self.liveness_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_for(
            lambda: self._http(f"http://127.0.0.1:{self.liveness_port}/healthz") is not None,
            60,
            f"the operator's liveness probe (log: {self.log_path})",
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    @staticmethod
    def _http(url: str) -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()  # type: ignore[no-any-return]
        except OSError:
            return None

    def metrics(self) -> dict[str, float]:
        text = self._http(f"http://127.0.0.1:{self.metrics_port}/metrics") or ""
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

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


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
