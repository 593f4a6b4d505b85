"""Metric providers and analysis templates end to end: the operator on the local control plane, measuring a local
JSON web service, a real Prometheus over TLS, and canaries whose metrics come from (Cluster)AnalysisTemplates."""

from __future__ import annotations

import json
import ssl
import subprocess
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from modeldeploy_dev.certs import Pki
from modeldeploy_dev.cluster import free_port, wait_until
from modeldeploy_dev.dataplane import LoadGenerator, ModelServers, PrometheusServer
from modeldeploy_dev.testing import Cluster, Operator, condition, model_version, modeldeployment, serving_spec, wait_for

pytestmark = pytest.mark.e2e
NAME = "fraud"
API_KEY = "k-123"
GATES = [
    {"name": "success-rate", "builtin": "successRate", "window": "10s", "min": 0.95},
    {"name": "p99-latency", "builtin": "latencyP99", "window": "10s", "max": 0.2},
]


# -- a custom accuracy service: JSON over HTTP, one answer per track -------------------------------------------


class AccuracyService:
    """Answers GET /<namespace>/<name>/<track>?revision=... with {"accuracy": <the track's value>}; requires the
    X-Api-Key header, like a real service would, and remembers what it was asked."""

    def __init__(self, canary: float, stable: float) -> None:
        self.values = {"canary": canary, "stable": stable}
        self.asked: list[tuple[str, str, str]] = []  # (track, revision, path)
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                track = url.path.rsplit("/", 1)[-1]
                if self.headers.get("X-Api-Key") != API_KEY:
                    self._answer(401, {"error": "no API key"})
                    return
                if track not in service.values:
                    self._answer(404, {"error": "unknown track"})
                    return
                service.asked.append((track, parse_qs(url.query).get("revision", [""])[0], url.path))
                self._answer(200, {"accuracy": service.values[track], "samples": 500})

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{{{{namespace}}}}/{{{{name}}}}/{{{{track}}}}?revision={{{{revision}}}}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- helpers ----------------------------------------------------------------------------------------------------


def spec(version: str, analysis: dict[str, Any]) -> dict[str, Any]:
    rollout = {
        "steps": [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
        "canaryReplicas": 1,
        "scaleDownDelaySeconds": 0,
        "analysis": {"interval": "1s", "failureLimit": 0, **analysis},
    }
    traffic = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "public"}]}}
    return serving_spec(model=model_version(version), rollout=rollout, traffic=traffic, replicas=2)


def md(cluster: Cluster, namespace: str) -> dict[str, Any]:
    found = cluster.get("mdep", NAME, namespace)
    assert found is not None
    return found


def promoted(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    m = md(cluster, namespace)
    history = m["status"].get("history") or []
    return m if history and history[-1]["outcome"] == "Promoted" else None


def rolled_back(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    m = md(cluster, namespace)
    return m if m["status"].get("lastRollback") else None


def last_measurements(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m["measurements"][-1] for m in obj["status"]["analysis"]["metrics"] if m["measurements"]}


def route_weights(cluster: Cluster, namespace: str) -> Any:
    def read() -> tuple[int, int] | None:
        route = cluster.get("httproute", NAME, namespace)
        if not route:
            return None
        refs = route["spec"]["rules"][0]["backendRefs"]
        # With no canary running or draining, the route names only the stable Service.
        return refs[0]["weight"], refs[1]["weight"] if len(refs) > 1 else 0

    return read


def start_canary(cluster: Cluster, namespace: str, analysis: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """v1 stable, then v2 applied; the stable revision and the ModelDeployment once its canary has started."""
    assert cluster.apply(modeldeployment(NAME, namespace, spec("1", analysis))).returncode == 0
    stable = wait_for(lambda: (m := md(cluster, namespace))["status"].get("stable") and m, what="v1 stable")
    applied = cluster.apply(modeldeployment(NAME, namespace, spec("2", analysis)))
    assert applied.returncode == 0, applied.stderr
    started = wait_for(lambda: (m := md(cluster, namespace))["status"].get("canary") and m, what="canary")
    return stable["status"]["stable"]["revision"], started


def serve_model_servers(servers: ModelServers, stable_revision: str, canary: dict[str, Any]) -> None:
    servers.start("stable", stable_revision, "1")
    servers.start("canary", canary["status"]["canary"]["revision"], "2")


def ensure_template_crds(cluster: Cluster) -> None:
    for plural in ("analysistemplates", "clusteranalysistemplates"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{plural}.modeldeploy.io", "--timeout=60s")


# -- the web provider -------------------------------------------------------------------------------------------


def web_analysis(service: AccuracyService) -> dict[str, Any]:
    accuracy = {
        "name": "accuracy",
        "web": {
            "url": service.url,
            "headers": [{"name": "X-Api-Key", "valueFrom": {"secretKeyRef": {"name": "accuracy-api", "key": "key"}}}],
            "jsonPath": "$.accuracy",
            "timeout": "2s",
        },
        "min": 0.9,
        "relative": {"maxDecrease": 0.02},
    }
    return {"metrics": [accuracy]}


def create_api_key(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "secret", "generic", "accuracy-api", f"--from-literal=key={API_KEY}", "-n", namespace)


def test_a_web_metric_promotes_a_canary_as_accurate_as_stable(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    service = AccuracyService(canary=0.96, stable=0.95)
    try:
        create_api_key(cluster, namespace)
        stable_revision, started = start_canary(cluster, namespace, web_analysis(service))
        done = wait_for(lambda: promoted(cluster, namespace), 60, "promotion on the web metric")
    finally:
        service.close()
    assert done is not None
    accuracy = last_measurements(done)["accuracy"]
    assert accuracy["result"] == "Successful"
    assert (accuracy["value"], accuracy["stableValue"]) == (0.96, 0.95)
    canary_revision = started["status"]["canary"]["revision"]
    assert ("canary", canary_revision, f"/{namespace}/{NAME}/canary") in service.asked
    assert ("stable", stable_revision, f"/{namespace}/{NAME}/stable") in service.asked
    assert API_KEY not in operator.log(), "secrets are never logged"


def test_a_web_metric_rolls_back_a_less_accurate_canary(cluster: Cluster, operator: Operator, namespace: str) -> None:
    service = AccuracyService(canary=0.80, stable=0.95)
    try:
        create_api_key(cluster, namespace)
        start_canary(cluster, namespace, web_analysis(service))
        rolled = wait_for(lambda: rolled_back(cluster, namespace), 60, "rollback on the web metric")
    finally:
        service.close()
    assert rolled is not None
    rollback = rolled["status"]["lastRollback"]
    assert rollback["reason"] == "AnalysisFailed"
    assert "accuracy 0.8 < 0.9" in rollback["message"]
    assert last_measurements(rolled)["accuracy"]["result"] == "Failed"
    assert route_weights(cluster, namespace)() == (100, 0)


# -- analysis templates -----------------------------------------------------------------------------------------


def template(kind: str, name: str, namespace: str | None, prometheus: PrometheusServer) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": {"prometheus": {"address": prometheus.address}, "metrics": GATES},
    }


def test_an_analysis_template_gates_the_canary(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    ensure_template_crds(cluster)
    assert cluster.apply(template("AnalysisTemplate", "std-gates", namespace, prometheus)).returncode == 0
    stable_revision, started = start_canary(cluster, namespace, {"templates": [{"name": "std-gates"}]})
    serve_model_servers(servers, stable_revision, started)
    with LoadGenerator(servers, route_weights(cluster, namespace)):
        done = wait_for(lambda: promoted(cluster, namespace), 60, "promotion on the template's gates")
    assert done is not None
    assert set(last_measurements(done)) == {"success-rate", "p99-latency"}
    assert done["status"]["analysis"]["templates"] == ["AnalysisTemplate/std-gates@generation 1"]


def test_a_missing_cluster_analysis_template_holds_the_canary_until_it_exists(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    ensure_template_crds(cluster)
    name = f"platform-{uuid.uuid4().hex[:6]}"
    stable_revision, started = start_canary(cluster, namespace, {"templates": [{"name": name, "clusterScope": True}]})
    serve_model_servers(servers, stable_revision, started)
    try:
        with LoadGenerator(servers, route_weights(cluster, namespace)):
            held = wait_for(
                lambda: (
                    (m := md(cluster, namespace))
                    and condition(m, "Degraded").get("reason") == "AnalysisTemplateNotFound"
                    and m
                ),
                30,
                "AnalysisTemplateNotFound",
            )
            assert held
            assert f"ClusterAnalysisTemplate {name} not found" in condition(held, "Degraded")["message"]
            assert held["status"]["canary"]["revision"] == started["status"]["canary"]["revision"], "held, not ended"
            assert held["status"].get("lastRollback") is None
            assert "AnalysisTemplateNotFound" in cluster.event_reasons(NAME, namespace)
            assert cluster.apply(template("ClusterAnalysisTemplate", name, None, prometheus)).returncode == 0
            done = wait_for(lambda: promoted(cluster, namespace), 60, "promotion once the template exists")
    finally:
        cluster.kubectl("delete", "clusteranalysistemplate", name, "--ignore-not-found")
    assert done is not None
    assert done["status"]["analysis"]["templates"] == [f"ClusterAnalysisTemplate/{name}@generation 1"]
    assert "Recovered" in cluster.event_reasons(NAME, namespace)


# -- Prometheus over TLS with a private CA ------------------------------------------------------------------------


class TlsPrometheus:
    """A second real Prometheus, serving HTTPS with a certificate from a throwaway CA and scraping the same model
    servers as the session's."""

    def __init__(self, plain: PrometheusServer) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="modeldeploy-prometheus-tls-"))
        pki = Pki(self.dir / "pki")
        pair = pki.issue("prometheus", "prometheus", server=True)
        self.ca_pem = pki.ca.read_text()
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "models", "file_sd_configs": [{"files": [str(plain.targets)], "refresh_interval": "1s"}]}
            ],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        web = {"tls_server_config": {"cert_file": str(pair.cert), "key_file": str(pair.key)}}
        (self.dir / "web.yml").write_text(yaml.safe_dump(web))
        with (self.dir / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    plain.binary,
                    f"--config.file={self.dir / 'prometheus.yml'}",
                    f"--web.config.file={self.dir / 'web.yml'}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        trust = ssl.create_default_context(cadata=self.ca_pem)
        wait_until(lambda: self._ready(trust), 60, "Prometheus with TLS ready")

    @property
    def address(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _ready(self, trust: ssl.SSLContext) -> bool:
        try:
            return httpx.get(f"{self.address}/-/ready", verify=trust, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def test_prometheus_over_tls_needs_its_ca_bundle(
    cluster: Cluster, operator: Operator, namespace: str, servers: ModelServers, prometheus: PrometheusServer
) -> None:
    secure = TlsPrometheus(prometheus)
    try:
        cluster.kubectl(
            "create", "configmap", "prometheus-ca", f"--from-literal=ca.crt={secure.ca_pem}", "-n", namespace
        )
        untrusted: dict[str, Any] = {"prometheus": {"address": secure.address, "timeout": "2s"}, "metrics": GATES}
        stable_revision, started = start_canary(cluster, namespace, untrusted)
        serve_model_servers(servers, stable_revision, started)
        with LoadGenerator(servers, route_weights(cluster, namespace)):
            held = wait_for(
                lambda: (m := md(cluster, namespace))["status"]["analysis"].get("consecutiveErrors", 0) >= 2 and m,
                30,
                "Error measurements without the CA",
            )
            assert "unreachable: ConnectError" in condition(held, "Progressing")["message"]
            assert held["status"].get("lastRollback") is None, "errors hold by default"
            trusted = {
                **untrusted,
                "prometheus": {
                    **untrusted["prometheus"],
                    "tls": {"caConfigMap": {"name": "prometheus-ca", "key": "ca.crt"}},
                },
            }
            applied = cluster.apply(modeldeployment(NAME, namespace, spec("2", trusted)))
            assert applied.returncode == 0, applied.stderr
            done = wait_for(lambda: promoted(cluster, namespace), 60, "promotion once the CA bundle is given")
    finally:
        secure.close()
    assert done is not None
    assert all(m["result"] == "Successful" for m in last_measurements(done).values())
