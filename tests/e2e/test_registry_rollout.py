"""Real models reach real pods, from a real MLflow registry: an alias move rolls out through a canary.

On the real control plane, with the operator, a real MLflow tracking server (SQLite backend) whose artifacts live
in a real S3-compatible server (versitygw), a real Prometheus, model-server processes and a load generator, all
on 127.0.0.1. MLflow itself logs and registers the model versions; a ModelDeployment names `models:/<name>@champion`
and nothing else changes its spec: moving the alias starts the canary, which is analysed on live metrics and
promoted, with the resolved version, run and digest in status.

KWOK pods run no containers, so `FetchKubelet` (modeldeploy_dev/kubelet.py) plays the kubelet for the fetch: it
reads the pod template from the API server, runs `modelserver fetch` as a process with the init container's
environment and Secret, and reports the result in the pods' status, where the operator reads the digest (or the
failure). The model server process each track's Prometheus target points at serves the fetched directory.

Faults: the registry down while an alias moves (keeps serving, says why, recovers), and through the real fetch
and the operator's conditions: a digest mismatch, wrong S3 credentials, a missing object; an unsupported format
at the model server. Components are built or installed on first use (cached); when one cannot start the test
fails and says why, it never skips.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from modeldeploy_dev.dataplane import LoadGenerator, ModelServers, PrometheusServer
from modeldeploy_dev.kubelet import FETCH_CONTAINER, FetchKubelet, init_container
from modeldeploy_dev.stores import (
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    ComponentUnavailableError,
    MLflowServer,
    S3Server,
    run_fetch,
    start_failure,
)
from modeldeploy_dev.testing import Cluster, Operator, condition, example_spec, modeldeployment, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
T = TypeVar("T")

NAME = "fraud"
SECRET = "s3-credentials"
POLL = "2s"
FEATURES = [[0.3, -1.2, 0.8, 0.1]]
METRICS = [
    {"name": "success-rate", "builtin": "successRate", "window": "10s", "min": 0.95},
    {"name": "p99-latency", "builtin": "latencyP99", "window": "10s", "relative": {"maxRatio": 3}, "max": 0.2},
    {"name": "drift", "builtin": "predictionDrift", "window": "30s", "max": 0.25, "minSamples": 200},
]


def component(start: Callable[[], T], what: str) -> T:
    try:
        return start()
    except ComponentUnavailableError as error:
        pytest.fail(f"{what} could not start, so the registry tests cannot run: {error}", pytrace=False)


def echo(line: str) -> None:
    print(line, flush=True)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = component(lambda: S3Server(tmp_path_factory.mktemp("s3")).start(echo), "the S3 server (versitygw)")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Iterator[MLflowServer]:
    server = MLflowServer(tmp_path_factory.mktemp("mlflow"), artifacts=s3)
    component(lambda: server.start(echo), "the MLflow server")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def published(mlflow: MLflowServer) -> dict[str, list[str]]:
    """Versions logged by MLflow itself, artifacts in S3; `champion` on each model's version 1."""
    versions = mlflow.publish({"fraud-rollout": 2, "fraud-outage": 2, "fraud-faults": 1})
    # A version whose source is in the store's bucket but holds nothing: registered, never uploaded.
    mlflow.api("POST", "registered-models/create", json={"name": "fraud-missing"})
    missing = f"s3://{mlflow.ARTIFACTS_BUCKET}/artifacts/never-uploaded/model"
    created = mlflow.api("POST", "model-versions/create", json={"name": "fraud-missing", "source": missing})
    mlflow.set_alias("fraud-missing", "champion", created["model_version"]["version"])
    return versions


@pytest.fixture
def kubelet(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[FetchKubelet]:
    with FetchKubelet(cluster, namespace, tmp_path / "kubelet") as playing:
        yield playing


def s3_secret(cluster: Cluster, namespace: str, name: str = SECRET, secret_key: str = S3_SECRET_KEY) -> None:
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        name,
        "-n",
        namespace,
        f"--from-literal=AWS_ACCESS_KEY_ID={S3_ACCESS_KEY}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={secret_key}",
    )


def registry_spec(
    model: str,
    mlflow: MLflowServer,
    s3: S3Server,
    rollout: dict[str, Any] | None = None,
    traffic: dict[str, Any] | None = None,
    secret: str = SECRET,
    **source: Any,
) -> dict[str, Any]:
    """Serves `models:/<model>@champion` with the reference model server; the fetch reads S3 with `secret`."""
    spec = example_spec(
        model={
            "name": "fraud-scorer",
            "uri": f"models:/{model}@champion",
            "format": "sklearn",
            "registry": {"mlflow": {"trackingUri": mlflow.tracking_uri, "pollInterval": POLL}},
            "storage": {
                "secretName": secret,
                "s3": {"endpoint": s3.endpoint, "region": "us-east-1", "pathStyle": True},
            },
            **source,
        },
        runtime={"preset": "modelserver"},
        replicas=2,
        rollout=rollout or {"steps": [], "scaleDownDelaySeconds": 0},
    )
    if traffic:
        spec["traffic"] = traffic
    return spec


def analysed_rollout(prometheus: PrometheusServer) -> dict[str, Any]:
    return {
        "steps": [{"setWeight": 50}, {"analysis": {"measurements": 3}}],
        "canaryReplicas": 1,
        "scaleDownDelaySeconds": 0,
        "progressDeadlineSeconds": 120,
        "analysis": {
            "interval": "2s",
            "failureLimit": 0,
            "prometheus": {"address": prometheus.address},
            "metrics": METRICS,
        },
    }


def md(cluster: Cluster, namespace: str, name: str = NAME) -> dict[str, Any]:
    found = cluster.get("mdep", name, namespace)
    assert found is not None
    return found


def status_of(cluster: Cluster, namespace: str, name: str = NAME) -> dict[str, Any]:
    return md(cluster, namespace, name).get("status") or {}


def ready_on(cluster: Cluster, namespace: str, version: str, name: str = NAME) -> dict[str, Any] | None:
    """Ready with nothing in flight, serving `version` with its digest known."""
    m = md(cluster, namespace, name)
    status = m.get("status") or {}
    stable = (status.get("stable") or {}).get("model") or {}
    done = (
        status.get("phase") == "Ready"
        and not status.get("canary")
        and condition(m, "Ready").get("status") == "True"
        and stable.get("version") == version
        and (status.get("source") or {}).get("version") == version
        and stable.get("digest")
    )
    return m if done else None


def route_weights(cluster: Cluster, namespace: str) -> Callable[[], tuple[int, int] | None]:
    def read() -> tuple[int, int] | None:
        route = cluster.get("httproute", NAME, namespace)
        if not route:
            return None
        refs = route["spec"]["rules"][0]["backendRefs"]
        # With no canary running or draining, the route names only the stable Service.
        return refs[0]["weight"], refs[1]["weight"] if len(refs) > 1 else 0

    return read


def infer(port: int) -> float:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": FEATURES[0]}]}
    response = httpx.post(f"http://127.0.0.1:{port}/v2/models/fraud-scorer/infer", json=body, timeout=10)
    response.raise_for_status()
    return float(response.json()["outputs"][0]["data"][0])


def pod_template(cluster: Cluster, namespace: str, deployment: str) -> dict[str, Any]:
    found = cluster.get("deployment", deployment, namespace)
    assert found is not None, f"no Deployment {deployment}"
    template: dict[str, Any] = found["spec"]["template"]
    return template


def assert_fetch_wiring(pod_spec: dict[str, Any], download_uri: str, mlflow: MLflowServer, s3: S3Server) -> None:
    """The init container gets the pinned download URI (not the alias) and the store's options as values, the
    Secret only as its envFrom; the server container sees neither and mounts the volume read-only."""
    fetch = init_container(pod_spec)
    assert fetch is not None, "no model-fetch init container"
    env = {v["name"]: v.get("value") for v in fetch["env"]}
    assert env["MODEL_URI"] == download_uri
    assert download_uri.startswith(f"s3://{mlflow.ARTIFACTS_BUCKET}/artifacts/")
    assert "@champion" not in json.dumps(pod_spec)
    assert env["MLFLOW_TRACKING_URI"] == mlflow.tracking_uri
    assert env["AWS_ENDPOINT_URL"] == s3.endpoint
    assert (env["AWS_REGION"], env["AWS_S3_FORCE_PATH_STYLE"]) == ("us-east-1", "true")
    assert fetch["envFrom"] == [{"secretRef": {"name": SECRET}}]
    assert not any("valueFrom" in v for v in fetch["env"])
    assert S3_SECRET_KEY not in json.dumps(pod_spec), "a credential value in the pod spec"
    volume = next(v for v in pod_spec["volumes"] if "emptyDir" in v)
    assert {"name": volume["name"], "mountPath": "/mnt/models"} in fetch["volumeMounts"]
    for container in pod_spec["containers"]:
        assert "envFrom" not in container, "the Secret reaches only the fetch step"
        mounts = [m for m in container.get("volumeMounts") or [] if m["name"] == volume["name"]]
        assert mounts
        assert all(m.get("readOnly") for m in mounts)


def reported_fetch(cluster: Cluster, namespace: str, revision: str) -> list[dict[str, Any]]:
    """The model-fetch init container statuses of the revision's pods, as the API server holds them."""
    listing = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"modeldeploy.io/revision={revision}", "-o", "json")
    return [
        s
        for pod in json.loads(listing.stdout)["items"]
        for s in (pod.get("status") or {}).get("initContainerStatuses") or []
        if s["name"] == FETCH_CONTAINER
    ]


def events(cluster: Cluster, namespace: str, name: str = NAME) -> dict[str, list[str]]:
    """Reason -> messages of the Events on the ModelDeployment."""
    listing = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "-o",
        "json",
        f"--field-selector=involvedObject.name={name},involvedObject.kind=ModelDeployment",
    )
    found: dict[str, list[str]] = {}
    for event in json.loads(listing.stdout)["items"]:
        found.setdefault(event["reason"], []).append(event["message"])
    return found


def last_measurements(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m["measurements"][-1] for m in obj["status"]["analysis"]["metrics"] if m["measurements"]}


def test_an_alias_move_rolls_out_through_an_analysed_canary(
    cluster: Cluster,
    operator: Operator,
    namespace: str,
    prometheus: PrometheusServer,
    servers: ModelServers,
    kubelet: FetchKubelet,
    mlflow: MLflowServer,
    s3: S3Server,
    published: dict[str, list[str]],
) -> None:
    assert published["fraud-rollout"] == ["1", "2"]
    s3_secret(cluster, namespace)
    traffic = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "public"}]}}
    spec = registry_spec("fraud-rollout", mlflow, s3, analysed_rollout(prometheus), traffic)
    assert cluster.apply(modeldeployment(NAME, namespace, spec)).returncode == 0

    # Version 1: resolved, rendered with its pinned download URI, fetched from S3 and served.
    source = wait_for(lambda: status_of(cluster, namespace).get("source"), 60, "the alias resolved")
    assert source is not None
    assert (source["uri"], source["version"]) == ("models:/fraud-rollout@champion", "1")
    template = pod_template(cluster, namespace, NAME)
    assert_fetch_wiring(template["spec"], source["downloadUri"], mlflow, s3)
    first = kubelet.wait(template["metadata"]["labels"]["modeldeploy.io/revision"])
    assert first.ok, first.run.output
    assert first.digest is not None
    assert first.digest.startswith("sha256:")
    assert (first.model_dir / "MLmodel").exists()
    stable = servers.start_fetched("stable", first.revision, "1", first.model_dir)
    assert 0.0 <= infer(stable.port) <= 1.0, "the fetched version 1 answers a v2 inference request"
    v1 = wait_for(lambda: ready_on(cluster, namespace, "1"), 60, "Ready on version 1 with its digest")
    assert v1 is not None
    assert v1["status"]["stable"]["model"]["digest"] == first.digest, "the digest the fetch reported"
    assert v1["status"]["stable"]["model"]["runId"] == source["runId"]
    assert condition(v1, "ModelResolved")["status"] == "True"
    fetched = condition(v1, "ModelFetched")
    assert (fetched["status"], fetched["reason"]) == ("True", "Fetched")
    assert first.digest in fetched["message"]
    reports = reported_fetch(cluster, namespace, first.revision)
    assert len(reports) == 2, "each stable pod carries the fetch's report, not overwritten by KWOK"
    assert all(json.loads(r["state"]["terminated"]["message"])["digest"] == first.digest for r in reports)
    generation = v1["metadata"]["generation"]

    # A data scientist moves the alias in MLflow; the spec is not touched.
    moved = time.monotonic()
    mlflow.set_alias("fraud-rollout", "champion", "2")
    started = wait_for(
        lambda: (m := md(cluster, namespace))["status"].get("canary", {}).get("model", {}).get("version") == "2" and m,
        30,
        "the canary of version 2",
    )
    to_canary = time.monotonic() - moved
    echo(f"alias move -> canary started: {to_canary:.2f}s (pollInterval {POLL})")
    canary = started["status"]["canary"]
    assert canary["model"]["source"] == "models:/fraud-rollout@champion"
    canary_template = pod_template(cluster, namespace, f"{NAME}-canary")
    new_uri = started["status"]["source"]["downloadUri"]
    assert new_uri != source["downloadUri"]
    assert_fetch_wiring(canary_template["spec"], new_uri, mlflow, s3)
    second = kubelet.wait(canary["revision"])
    assert second.ok, second.run.output
    assert second.digest not in (None, first.digest)
    canary_server = servers.start_fetched("canary", second.revision, "2", second.model_dir)
    assert infer(canary_server.port) != infer(stable.port), "version 2 is another model"

    with LoadGenerator(servers, route_weights(cluster, namespace)) as load:
        done = wait_for(lambda: ready_on(cluster, namespace, "2"), 120, "version 2 analysed and promoted")
    assert done is not None
    assert load.sent["canary"] > 0, "the canary got traffic through the route's weight"
    assert done["metadata"]["generation"] == generation, "no spec change"
    history = done["status"]["history"]
    assert history[-1]["outcome"] == "Promoted"
    assert history[-1]["model"]["version"] == "2"
    assert all(m["result"] == "Successful" for m in last_measurements(done).values())
    assert set(last_measurements(done)) == {"success-rate", "p99-latency", "drift"}
    model = done["status"]["stable"]["model"]
    assert model["version"] == "2"
    assert model["source"] == "models:/fraud-rollout@champion"
    assert model["uri"] == new_uri
    assert model["runId"] == done["status"]["source"]["runId"]
    assert model["digest"] == second.digest
    reasons = events(cluster, namespace)
    assert {"ModelVersionResolved", "CanaryStarted", "Promoted"} <= set(reasons)
    assert any("resolves to version 2 (was version 1)" in m for m in reasons["ModelVersionResolved"])
    assert "RolledBack" not in reasons


def test_a_registry_outage_keeps_serving_then_recovers(
    cluster: Cluster,
    operator: Operator,
    namespace: str,
    kubelet: FetchKubelet,
    mlflow: MLflowServer,
    s3: S3Server,
    published: dict[str, list[str]],
) -> None:
    s3_secret(cluster, namespace)
    assert cluster.apply(modeldeployment(NAME, namespace, registry_spec("fraud-outage", mlflow, s3))).returncode == 0
    wait_for(lambda: ready_on(cluster, namespace, "1"), 60, "Ready on version 1")

    mlflow.stop()
    try:
        down = wait_for(
            lambda: (m := md(cluster, namespace)) and condition(m, "ModelResolved").get("status") == "False" and m,
            15,
            "ModelResolved=False while MLflow is down",
        )
        assert down
        resolved = condition(down, "ModelResolved")
        assert resolved["reason"] == "RegistryUnavailable"
        assert f"MLflow at {mlflow.tracking_uri} unreachable" in resolved["message"]
        assert "still serving the pinned version 1" in resolved["message"]
        assert down["status"]["phase"] == "Ready", "an outage is no reason to stop serving"
        assert condition(down, "Ready")["status"] == "True"
        assert not down["status"].get("lastRollback")
        assert "ModelResolutionFailed" in events(cluster, namespace)
        assert (
            operator.metrics().get(
                'modeldeploy_registry_requests_total{operation="resolve",result="RegistryUnavailable"}', 0
            )
            >= 1
        )
    finally:
        mlflow.start(echo)  # the same database and port

    mlflow.set_alias("fraud-outage", "champion", "2")
    back = wait_for(lambda: ready_on(cluster, namespace, "2"), 60, "recovered and rolled out to version 2")
    assert back is not None
    assert condition(back, "ModelResolved")["status"] == "True"
    assert "RegistryRecovered" in events(cluster, namespace)
    assert back["status"]["history"][-1]["outcome"] == "Promoted"
    assert not back["status"].get("lastRollback")


def test_fetch_faults_reach_conditions_and_events(
    cluster: Cluster,
    operator: Operator,
    namespace: str,
    kubelet: FetchKubelet,
    mlflow: MLflowServer,
    s3: S3Server,
    published: dict[str, list[str]],
    tmp_path: Path,
) -> None:
    """Each fault goes through the real fetch process, the pod's status and the operator: ModelFetched=False,
    reason FetchFailed, the fetch's own message, and a ModelFetchFailed Event."""
    s3_secret(cluster, namespace)
    wrong_key = "wrong-" + S3_SECRET_KEY[::-1]
    s3_secret(cluster, namespace, "stale-credentials", wrong_key)
    pin = "sha256:" + "0" * 64
    faults = {
        "mismatch": registry_spec("fraud-faults", mlflow, s3, digest=pin),
        "denied": registry_spec("fraud-faults", mlflow, s3, secret="stale-credentials"),
        "missing": registry_spec("fraud-missing", mlflow, s3),
    }
    for name, spec in faults.items():
        assert cluster.apply(modeldeployment(name, namespace, spec)).returncode == 0

    def failed(name: str) -> dict[str, Any] | None:
        m = md(cluster, namespace, name)
        return m if condition(m, "ModelFetched").get("reason") == "FetchFailed" else None

    shown = {name: wait_for(partial(failed, name), 60, f"{name}: ModelFetched=False") for name in faults}
    expected = {
        "mismatch": f"digest mismatch: spec pins {pin}, the artifact at s3://{mlflow.ARTIFACTS_BUCKET}/artifacts/",
        "denied": "access denied: S3 refused s3://",
        "missing": f"not found: no object s3://{mlflow.ARTIFACTS_BUCKET}/artifacts/never-uploaded/model",
    }
    for name, m in shown.items():
        assert m is not None
        fetched = condition(m, "ModelFetched")
        assert fetched["status"] == "False"
        assert expected[name] in fetched["message"], fetched["message"]
        # Where a user looks first: `kubectl get mdep -o yaml`, the Events, the pod's init container status.
        as_yaml = yaml.safe_load(cluster.kubectl("get", "mdep", name, "-n", namespace, "-o", "yaml").stdout)
        assert expected[name] in condition(as_yaml, "ModelFetched")["message"]
        assert any(expected[name] in m for m in events(cluster, namespace, name).get("ModelFetchFailed", []))
        revision = m["status"]["targetRevision"]
        (report,) = {r["lastState"]["terminated"]["message"] for r in reported_fetch(cluster, namespace, revision)}
        assert json.loads(report)["error"].startswith(expected[name])
        assert expected[name] in kubelet.fetched[revision].run.output, "the init container's log says it too"
        assert m["status"]["phase"] != "Ready"
    assert (
        "the access key from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        in condition(shown["denied"], "ModelFetched")["message"]
    )
    assert wrong_key not in json.dumps(shown["denied"]), "a credential value in status"

    # An unsupported format stops the model server, naming both sides: the same fetch without the wrong pin
    # succeeds, and the server refuses what it fetched when told to expect ONNX.
    mismatch = next(f for f in kubelet.fetched.values() if f.deployment == "mismatch")
    env = {k: v for k, v in mismatch.env.items() if k != "MODEL_DIGEST"}
    models = tmp_path / "format" / "models"
    run = run_fetch({**env, "MODEL_DIR": str(models)}, tmp_path)
    assert run.code == 0, run.output
    code, log = start_failure(models, tmp_path / "server.log", model_format="onnx")
    assert code == 1
    assert f"MODEL_FORMAT=onnx but the MLflow model in {models} has flavours ['python_function', 'sklearn']" in log
