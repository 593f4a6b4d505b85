"""Webhooks on the real control plane, against a receiver on 127.0.0.1 that records every call: gates hold and
release the canary, failing gates roll it back, notifications arrive once per event (retried when the receiver
fails first), and the token from a Secret is sent but never logged or shown in status or Events."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from modeldeploy_dev.testing import Cluster, Operator, condition, model_version, modeldeployment, serving_spec, wait_for

pytestmark = pytest.mark.e2e

NAME = "fraud"
TOKEN = "hook-token-4d9f2a7c"
EVENTS_KEY = "events-key-81c3e0"


@dataclass
class Call:
    path: str
    """Without the query."""
    headers: dict[str, str]
    body: dict[str, Any]
    status: int


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1: answers each path with the status set for it (200 by default), and records
    every call. `fail_first` paths answer 500 to their first call only."""

    answers: dict[str, int] = field(default_factory=dict)
    fail_first: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                path = self.path.split("?")[0]
                with receiver.lock:
                    seen = any(c.path == path for c in receiver.calls)
                    status = 500 if path in receiver.fail_first and not seen else receiver.answers.get(path, 200)
                    receiver.calls.append(Call(path, dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def set(self, path: str, status: int) -> None:
        with self.lock:
            self.answers[path] = status

    def to(self, path: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path == path]

    def delivered(self, path: str) -> dict[str, int]:
        """Event name -> how many times it was answered 2xx."""
        out: dict[str, int] = {}
        for call in self.to(path):
            if call.status < 300:
                out[call.body["event"]] = out.get(call.body["event"], 0) + 1
        return out

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.start()
    yield running
    running.stop()


def spec(version: str, webhooks: list[dict[str, Any]], notifications: list[dict[str, Any]]) -> dict[str, Any]:
    rollout = {
        "steps": [{"setWeight": 25}, {"setWeight": 50}],
        "scaleDownDelaySeconds": 1,
        "webhooks": webhooks,
        "notifications": notifications,
    }
    return serving_spec(model=model_version(version), rollout=rollout)


def token() -> dict[str, Any]:
    return {"secretKeyRef": {"name": "hooks", "key": "token"}}


def status_of(cluster: Cluster, namespace: str) -> dict[str, Any]:
    md = cluster.get("mdep", NAME, namespace)
    return (md or {}).get("status") or {}


def gate_record(cluster: Cluster, namespace: str, hook: str) -> dict[str, Any] | None:
    return next((r for r in status_of(cluster, namespace).get("webhooks", []) if r["name"] == hook), None)


def setup(cluster: Cluster, namespace: str, receiver: Receiver, webhooks: list[dict[str, Any]]) -> None:
    """A Secret with the token and the events URL; v7 serving; then v8 applied, whose canary the gates see."""
    events_url = f"{receiver.url}/events?key={EVENTS_KEY}"
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "hooks",
        f"--from-literal=token={TOKEN}",
        f"--from-literal=events={events_url}",
        "-n",
        namespace,
    )
    notifications: list[dict[str, Any]] = [
        {
            "name": "ops",
            "urlFrom": {"secretKeyRef": {"name": "hooks", "key": "events"}},
            "tokenFrom": token(),
            "events": ["CanaryStarted", "WeightChanged", "Promoted", "RolledBack"],
        },
        {"name": "chat", "url": f"{receiver.url}/slack", "format": "slack"},
    ]
    assert cluster.apply(modeldeployment(NAME, namespace, spec("7", webhooks, notifications))).returncode == 0
    wait_for(lambda: cluster.ready(NAME, namespace, "7"), what="v7 Ready")
    assert cluster.apply(modeldeployment(NAME, namespace, spec("8", webhooks, notifications))).returncode == 0


def test_gates_hold_and_release_the_canary_and_notifications_arrive_once(
    cluster: Cluster, operator: Operator, namespace: str, receiver: Receiver
) -> None:
    receiver.set("/approve", 403)
    receiver.set("/cab", 503)
    receiver.fail_first.add("/events")
    webhooks: list[dict[str, Any]] = [
        {"name": "approve", "type": "confirm-rollout", "url": f"{receiver.url}/approve", "tokenFrom": token()},
        {"name": "load", "type": "rollout", "url": f"{receiver.url}/load", "metadata": {"cmd": "hey -z 1m"}},
        {"name": "cab", "type": "confirm-promotion", "url": f"{receiver.url}/cab", "retries": 0},
    ]
    setup(cluster, namespace, receiver, webhooks)

    # confirm-rollout answers 403: no canary, and status says which hook holds it and what it answered.
    held = wait_for(
        lambda: (r := gate_record(cluster, namespace, "approve")) and r["result"] == "Failed" and r,
        what="confirm-rollout refused",
    )
    assert held["answer"] == "HTTP 403"
    md = cluster.require("mdep", NAME, namespace)
    assert "canary" not in md["status"]
    gated = condition(md, "Gated")
    assert gated["status"] == "True"
    assert "confirm-rollout webhook 'approve' answered HTTP 403" in gated["message"]
    assert condition(md, "Progressing")["reason"] == condition(md, "Ready")["reason"] == "WebhookHeld"
    call = receiver.to("/approve")[0]
    assert call.headers["Authorization"] == f"Bearer {TOKEN}", "the token from the Secret is sent"
    assert (call.body["name"], call.body["namespace"], call.body["type"]) == (NAME, namespace, "confirm-rollout")
    assert call.body["model"]["version"] == "8"
    assert cluster.get("deployment", f"{NAME}-canary", namespace) is None

    receiver.set("/approve", 200)
    # The rollout hook is asked at each step; confirm-promotion answers 503 and holds the canary at the end.
    at_end = wait_for(
        lambda: (
            (r := gate_record(cluster, namespace, "cab")) and r["result"] == "Failed" and status_of(cluster, namespace)
        ),
        120,
        "confirm-promotion refused",
    )
    assert at_end["canary"]["weight"] == 50
    assert sorted({c.body["stepIndex"] for c in receiver.to("/load")}) == [0, 1]
    assert receiver.to("/load")[0].body["metadata"] == {"cmd": "hey -z 1m"}
    gated = condition(cluster.require("mdep", NAME, namespace), "Gated")
    assert "confirm-promotion webhook 'cab' answered HTTP 503" in gated["message"]
    asked = len(receiver.to("/cab"))
    wait_for(lambda: len(receiver.to("/cab")) > asked, 60, "a held gate asked again")
    assert status_of(cluster, namespace)["canary"]["phase"] == "Progressing", "not promoted while held"

    receiver.set("/cab", 200)
    done = wait_for(lambda: cluster.ready(NAME, namespace, "8"), 120, "v8 promoted once confirm-promotion answers 2xx")
    assert condition(done, "Gated")["status"] == "False"

    # Each event once (the first try of /events failed, and was retried), in both forms.
    wait_for(lambda: receiver.delivered("/events").get("Promoted") == 1, 60, "Promoted notified")
    assert receiver.delivered("/events") == {"CanaryStarted": 1, "WeightChanged": 2, "Promoted": 1}
    assert [c.status for c in receiver.to("/events")][:2] == [500, 200], "retried after the receiver failed"
    events = receiver.to("/events")
    assert all(c.headers["Authorization"] == f"Bearer {TOKEN}" for c in events)
    assert len({c.headers["Idempotency-Key"] for c in events}) == 4, "one id per event, the retry keeps it"
    wait_for(lambda: len(receiver.to("/slack")) == 2, 60, "the Slack form of CanaryStarted and Promoted")
    assert [c.body["text"].split()[0] for c in receiver.to("/slack")] == ["*CanaryStarted*", "*Promoted*"]
    metrics = operator.metrics()
    assert metrics['modeldeploy_notifications_total{event="CanaryStarted",result="retried"}'] >= 1

    # Nothing more is sent on later reconciles or after a restart.
    operator.restart()
    assert receiver.delivered("/events") == {"CanaryStarted": 1, "WeightChanged": 2, "Promoted": 1}

    # The token and the URL's key are never in the operator's log, in status, or in an Event.
    for secret in (TOKEN, EVENTS_KEY):
        assert secret not in operator.log()
        assert secret not in json.dumps(cluster.require("mdep", NAME, namespace))
        assert secret not in cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout


@pytest.mark.parametrize("failing", ["rollout", "confirm-promotion"])
def test_a_failing_gate_configured_to_fail_rolls_the_canary_back(
    cluster: Cluster, operator: Operator, namespace: str, receiver: Receiver, failing: str
) -> None:
    receiver.set(f"/{failing}", 500)
    webhooks = [
        {"name": failing, "type": failing, "url": f"{receiver.url}/{failing}", "onFailure": "fail", "retries": 1}
    ]
    setup(cluster, namespace, receiver, webhooks)
    md = wait_for(
        lambda: (m := cluster.get("mdep", NAME, namespace)) and m["status"].get("lastRollback") and m,
        120,
        "the canary rolled back",
    )
    rollback = md["status"]["lastRollback"]
    assert rollback["reason"] == "WebhookFailed"
    assert f"{failing} webhook '{failing}' answered HTTP 500 (after 2 tries)" in rollback["message"]
    assert condition(md, "Degraded")["status"] == "True"
    assert len(receiver.to(f"/{failing}")) == 2, "one call with its one retry, then the canary failed"
    wait_for(lambda: receiver.delivered("/events").get("RolledBack") == 1, 60, "RolledBack notified")
    body = next(c.body for c in receiver.to("/events") if c.body["event"] == "RolledBack")
    assert (body["reason"], body["revision"]) == ("WebhookFailed", rollback["revision"])
    assert "Promoted" not in receiver.delivered("/events")
