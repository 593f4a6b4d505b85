"""Never stuck, never blocked, never leaking (issue 12), on the real control plane.

- every odd answer a metric source can give ends in the configured errors/noData outcome, with Events;
- metric sources that never answer, or trickle, delay no other object's reconcile nor a manual abort;
- a bearer token (with the trailing newline --from-file leaves) never appears in the operator's --verbose output;
- a hand-edited route and a deleted canary Deployment are repaired, and say so;
- characters outside the Basic Multilingual Plane reach the pods; a child too large for etcd is reported once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modeldeploy_dev.cluster import free_port
from modeldeploy_dev.testing import (
    Cluster,
    Operator,
    condition,
    model_version,
    modeldeployment,
    serving_spec,
    wait_for,
)

pytestmark = pytest.mark.e2e


def vector(*values: Any) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, v]} for v in values]},
    }


def buckets(*pairs: tuple[Any, Any]) -> dict[str, Any]:
    result = [{"metric": {"le": le}, "value": [1, count]} for le, count in pairs]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


class FakePrometheus:
    """A tiny Prometheus HTTP API on 127.0.0.1: `/<shape>/api/v1/query` answers `shapes[shape]` (a JSON body),
    `/blackhole/...` never answers, `/trickle/...` sends a valid answer one byte a second. It remembers the
    Authorization headers it was sent."""

    def __init__(self, shapes: dict[str, Any]) -> None:
        self.shapes = shapes
        self.stopped = threading.Event()
        self.authorizations: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                shape = self.path.split("/")[1]
                fake.authorizations.append(self.headers.get("Authorization", ""))
                if shape == "blackhole":
                    fake.stopped.wait(300)
                    return
                body = json.dumps(fake.shapes.get(shape, vector("0.99"))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if shape == "trickle":
                    for byte in body:
                        if fake.stopped.wait(1):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                else:
                    self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def address(self, shape: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{shape}"

    def close(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


def canary_spec(version: str, analysis: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rollout = {
        "steps": steps or [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
        "canaryReplicas": 1,
        "scaleDownDelaySeconds": 0,
        "analysis": {"interval": "1s", "failureLimit": 0, **analysis},
    }
    traffic = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "public"}]}}
    return serving_spec(model=model_version(version), rollout=rollout, traffic=traffic, replicas=2)


def get(cluster: Cluster, name: str, namespace: str) -> dict[str, Any]:
    found = cluster.get("mdep", name, namespace)
    assert found is not None
    return found


def start_canaries(cluster: Cluster, namespace: str, analyses: dict[str, dict[str, Any]]) -> None:
    """Each named object: v1 stable, then v2 as a canary with its analysis."""
    for name, analysis in analyses.items():
        assert cluster.apply(modeldeployment(name, namespace, canary_spec("1", analysis))).returncode == 0
    for name in analyses:

        def stable(name: str = name) -> Any:
            return get(cluster, name, namespace)["status"].get("stable")

        wait_for(stable, 90, f"{name} v1 stable")
    for name, analysis in analyses.items():
        applied = cluster.apply(modeldeployment(name, namespace, canary_spec("2", analysis)))
        assert applied.returncode == 0, applied.stderr


@pytest.fixture
def prometheus_fake() -> Iterator[FakePrometheus]:
    server = FakePrometheus({})
    yield server
    server.close()


# -- 1. every answer maps to a measurement ----------------------------------------------------------------------

SCALAR = {"name": "q", "query": 'up{namespace="{{namespace}}"}', "max": 1}
DRIFT = {"name": "drift", "builtin": "predictionDrift", "max": 0.2, "minSamples": 1}
# name -> (what the fake Prometheus answers, the metric, the rollback reason, what its message says)
ODD_ANSWERS: dict[str, tuple[Any, dict[str, Any], str, str]] = {
    "pos-inf": (vector("+Inf"), SCALAR, "AnalysisError", "not a finite number"),
    "neg-inf": (vector("-Inf"), SCALAR, "AnalysisError", "not a finite number"),
    "huge": (vector("1e999"), SCALAR, "AnalysisError", "not a finite number"),
    "text": (vector("fast"), SCALAR, "AnalysisError", "the value is 'fast', not a number"),
    "no-data": ({"status": "success"}, SCALAR, "AnalysisError", "without data.resultType and data.result"),
    "no-value": (
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
        SCALAR,
        "AnalysisError",
        "not [time, value]",
    ),
    "not-object": ([1, 2], SCALAR, "AnalysisError", "JSON that is not an API response"),
    "matrix": (
        {"status": "success", "data": {"resultType": "matrix", "result": []}},
        SCALAR,
        "AnalysisError",
        "not an instant vector",
    ),
    "nan": (vector("NaN"), SCALAR, "AnalysisNoData", "no value for the canary"),
    "hist-nan": (buckets(("0.5", "NaN"), ("+Inf", "100")), DRIFT, "AnalysisError", "is NaN, not a count"),
    "hist-le": (buckets(("half", "3"), ("+Inf", "100")), DRIFT, "AnalysisError", "not a bucket bound"),
}


def test_every_odd_metric_answer_ends_in_the_configured_outcome_with_events(
    cluster: Cluster, operator: Operator, namespace: str, prometheus_fake: FakePrometheus
) -> None:
    prometheus_fake.shapes.update({name: body for name, (body, *_) in ODD_ANSWERS.items()})
    analyses = {
        name: {
            "errors": {"action": "fail", "limit": 0},
            "noData": {"action": "fail", "limit": 0},
            "prometheus": {"address": prometheus_fake.address(name), "timeout": "2s"},
            "metrics": [metric],
        }
        for name, (_, metric, *_) in ODD_ANSWERS.items()
    }
    start_canaries(cluster, namespace, analyses)
    for name, (_, _, reason, says) in ODD_ANSWERS.items():

        def rolled_back(name: str = name) -> Any:
            return (m := get(cluster, name, namespace))["status"].get("lastRollback") and m

        rolled = wait_for(rolled_back, 90, f"{name}: the canary rolled back, not frozen")
        rollback = rolled["status"]["lastRollback"]
        assert rollback["reason"] == reason, (name, rollback)
        assert says in rollback["message"], (name, rollback["message"])
        reasons = cluster.event_reasons(name, namespace)
        assert reason in reasons, (name, reasons)
        assert "RolledBack" in reasons, (name, reasons)
        measured = rolled["status"]["analysis"]["metrics"][0]["measurements"][-1]
        assert measured.get("value") is None, "no value JSON cannot hold"
        route = cluster.get("httproute", name, namespace)
        assert route is not None
        refs = route["spec"]["rules"][0]["backendRefs"]
        assert all(ref.get("weight", 0) == 0 for ref in refs if ref["name"].endswith("-canary")), refs


# -- 2. slow sources block nothing else -------------------------------------------------------------------------

STUCK = {"blackhole-1": "blackhole", "blackhole-2": "blackhole", "blackhole-3": "blackhole"} | {
    "trickle-1": "trickle",
    "trickle-2": "trickle",
    "trickle-3": "trickle",
}


def test_metric_sources_that_never_answer_delay_no_other_object_nor_an_abort(
    cluster: Cluster, operator: Operator, namespace: str, prometheus_fake: FakePrometheus
) -> None:
    metrics = [{"name": f"m{i}", "query": "up", "max": 1, "relative": {"maxIncrease": 1}} for i in range(3)]
    analyses = {
        name: {"prometheus": {"address": prometheus_fake.address(shape), "timeout": "5s"}, "metrics": metrics}
        for name, shape in STUCK.items()
    }
    start_canaries(cluster, namespace, analyses)
    for name in STUCK:  # every stuck object measures now (its ticks hang until their deadline)

        def measuring(name: str = name) -> bool:
            return bool((get(cluster, name, namespace)["status"].get("canary") or {}).get("weight") == 50)

        wait_for(measuring)
    wait_for(lambda: len(prometheus_fake.authorizations) >= 2 * len(STUCK), 30, "ticks underway")

    started = time.monotonic()
    assert cluster.apply(modeldeployment("bystander", namespace, serving_spec())).returncode == 0
    wait_for(lambda: cluster.ready("bystander", namespace), 60, "the unrelated object Ready")
    ready_after = time.monotonic() - started

    action = json.dumps({"action": "abort", "id": "stuck-1"})
    started = time.monotonic()
    cluster.kubectl("annotate", "mdep", "blackhole-1", "-n", namespace, f"modeldeploy.io/action={action}")
    answered = wait_for(
        lambda: (
            (m := get(cluster, "blackhole-1", namespace))["status"].get("lastAction", {}).get("id") == "stuck-1" and m
        ),
        60,
        "the abort answered",
    )
    aborted_after = time.monotonic() - started
    print(
        f"\nwith {len(STUCK)} objects behind dead metric sources: unrelated create -> Ready {ready_after:.1f}s, "
        f"abort answered in {aborted_after:.1f}s"
    )
    assert answered["status"]["lastAction"]["result"].startswith("aborted the canary")
    assert ready_after < 5, f"an unrelated object took {ready_after:.1f}s to become Ready"
    assert aborted_after < 5, f"the abort took {aborted_after:.1f}s to be answered"
    wait_for(
        lambda: "no answer within 5s" in condition(get(cluster, "trickle-1", namespace), "Progressing")["message"],
        20,
        "the tick's deadline to cut off a source that trickles",
    )


# -- 3. secrets never reach the log -----------------------------------------------------------------------------

TOKEN = "mdtok-7f3a9c2e5b1d48f6a0c4e9b2d7f1a3c5"


def test_a_bearer_token_never_appears_in_the_verbose_log(
    cluster: Cluster, operator: Operator, namespace: str, prometheus_fake: FakePrometheus, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")  # what `--from-file` keeps: a trailing newline
    cluster.kubectl(
        "create", "secret", "generic", "prom-token", f"--from-file=token={tmp_path / 'token'}", "-n", namespace
    )
    cluster.kubectl("create", "secret", "generic", "bad-token", f"--from-literal=token={TOKEN} x", "-n", namespace)
    analyses = {
        name: {
            "prometheus": {
                "address": prometheus_fake.address("ok"),
                "timeout": "2s",
                "bearerTokenSecret": {"name": secret, "key": "token"},
            },
            "metrics": [{"name": "success", "query": "up", "max": 1}],
        }
        for name, secret in (("good", "prom-token"), ("bad", "bad-token"))
    }
    operator.stop()  # this test runs its own operator, with --verbose
    verbose = Operator(cluster, tmp_path / "verbose.log", args=("run", "--all-namespaces", "--verbose"))
    try:
        verbose.start()
        start_canaries(cluster, namespace, analyses)
        wait_for(
            lambda: (get(cluster, "good", namespace)["status"].get("history") or [{}])[-1].get("outcome") == "Promoted",
            90,
            "promotion with the token's newline removed",
        )
        held = wait_for(
            lambda: (m := get(cluster, "bad", namespace))["status"]["analysis"].get("consecutiveErrors") and m,
            60,
            "an Error for the token with a space inside it",
        )
    finally:
        verbose.stop()
        operator.start()
    message = condition(held, "Progressing")["message"]
    assert f"key 'token' of Secret {namespace}/bad-token has whitespace inside it" in message
    assert f"Bearer {TOKEN}" in prometheus_fake.authorizations, "sent without the newline"
    log = verbose.log()
    assert '"severity": "debug"' in log, "the operator really logged at debug level"
    assert "httpcore" in log or "send_request" in log, "third-party debug logging was on"
    for secret in (TOKEN, TOKEN[8:24]):
        assert secret not in log, f"{secret!r} found in the operator's output"


# -- 4. repairs say so ------------------------------------------------------------------------------------------


def test_a_hand_edited_route_and_a_deleted_canary_are_repaired_with_events(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    spec = canary_spec("1", {}, steps=[{"setWeight": 50}, {"pause": {}}])
    spec["rollout"].pop("analysis")
    assert cluster.apply(modeldeployment("fraud", namespace, spec)).returncode == 0
    wait_for(lambda: cluster.ready("fraud", namespace), 60, "v1 Ready")
    spec["model"] = model_version("2")
    assert cluster.apply(modeldeployment("fraud", namespace, spec)).returncode == 0

    def weights() -> list[int]:
        route = cluster.get("httproute", "fraud", namespace) or {}
        return [ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]]

    wait_for(lambda: weights() == [50, 50], 60, "the canary at 50%")
    time.sleep(1)  # a reconcile has seen the route as it is
    patch = [{"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 10}]
    cluster.kubectl("patch", "httproute", "fraud", "-n", namespace, "--type=json", f"-p={json.dumps(patch)}")
    wait_for(lambda: "ChildRepaired" in cluster.event_reasons("fraud", namespace), 30, "a ChildRepaired Event")
    assert weights() == [50, 50]
    uid = (cluster.get("deployment", "fraud-canary", namespace) or {})["metadata"]["uid"]
    cluster.kubectl("delete", "deployment", "fraud-canary", "-n", namespace)
    wait_for(
        lambda: (d := cluster.get("deployment", "fraud-canary", namespace)) and d["metadata"]["uid"] != uid,
        30,
        "the canary Deployment recreated",
    )
    wait_for(lambda: "ChildRecreated" in cluster.event_reasons("fraud", namespace), 30, "a ChildRecreated Event")
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    messages = {e["reason"]: e["message"] for e in events if e["reason"].startswith("Child")}
    assert messages["ChildRepaired"] == (
        "Restored HTTPRoute fraud: it was changed by someone else (spec.rules[0].backendRefs[1].weight 10 → 50)"
    )
    assert messages["ChildRecreated"] == "Recreated Deployment fraud-canary: it was deleted by someone else"
    counted = operator.metrics()
    assert counted.get('modeldeploy_child_repairs_total{action="restored",kind="HTTPRoute"}', 0) >= 1
    assert counted.get('modeldeploy_child_repairs_total{action="recreated",kind="Deployment"}', 0) >= 1


# -- 5. encoding and size ---------------------------------------------------------------------------------------

ROCKET = "🚀 modèle ✓"


def test_characters_outside_the_basic_multilingual_plane_reach_the_pods(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    runtime = {
        **serving_spec()["runtime"],
        "args": ["netexec", "--http-port=8080", ROCKET],
        "env": [{"name": "GREETING", "value": ROCKET}],
    }
    spec = serving_spec(runtime=runtime, pod={"annotations": {"example.com/note": ROCKET}})
    assert cluster.apply(modeldeployment("emoji", namespace, spec)).returncode == 0
    wait_for(lambda: cluster.ready("emoji", namespace), 60, "Ready with an emoji in env, args and annotations")
    deployment = cluster.get("deployment", "emoji", namespace)
    assert deployment is not None
    pod = deployment["spec"]["template"]
    container = next(c for c in pod["spec"]["containers"] if c.get("env"))
    assert {"name": "GREETING", "value": ROCKET} in container["env"]
    assert container["args"][-1] == ROCKET
    assert pod["metadata"]["annotations"]["example.com/note"] == ROCKET


def test_a_child_too_large_for_the_api_server_is_reported_once(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    """The ModelDeployment itself fits etcd's 1.5 MiB; its Deployment does not: a Deployment's managedFields list
    every env var by name, where the ModelDeployment's list is one atomic field."""
    env = [{"name": f"E{i:03d}_" + "X" * 240, "value": "x" * 24000} for i in range(64)]
    spec = serving_spec(runtime={**serving_spec()["runtime"], "env": env})
    created = cluster.kubectl(
        "create", "-f", "-", input_text=json.dumps(modeldeployment("big", namespace, spec)), check=False
    )
    assert created.returncode == 0, f"the ModelDeployment itself was refused: {created.stderr}"
    before = len(operator.log().splitlines())
    degraded = wait_for(
        lambda: (m := get(cluster, "big", namespace)) and condition(m, "Degraded").get("reason") == "ApplyFailed" and m,
        60,
        "Degraded/ApplyFailed",
    )
    assert degraded
    message = condition(degraded, "Degraded")["message"]
    assert "the API server refused Deployment big (HTTP 500): etcdserver: request is too large" in message
    assert "make spec.runtime.env, args or pod annotations smaller" in message
    assert degraded["status"]["phase"] == "Degraded"
    time.sleep(8)  # retries go on, with backoff, quietly
    assert cluster.event_reasons("big", namespace).count("ApplyFailed") == 1
    lines = [line for line in operator.log().splitlines()[before:] if f"{namespace}/big" in line]
    assert not any("Traceback" in line or "Reconcile failed" in line for line in lines), lines
    assert len(lines) <= 4, lines
