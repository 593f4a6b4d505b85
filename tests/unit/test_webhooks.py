"""Webhooks on the wire, against httpx.MockTransport: gate calls and their retries, notification delivery with
backoff, Secrets for URL and token, and that one slow receiver holds only its own object."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from kubernetes.client.exceptions import ApiException

from fake_kube import FakeKube
from modeldeploy.adapters import metrics, redaction
from modeldeploy.adapters.webhooks import GateRunner, InlineGates, Notifier, call_gate
from modeldeploy.core.api import ModelDeploymentStatus, parse_spec
from modeldeploy.core.hooks import Delivery, GateCall, notifications
from modeldeploy.core.status import Event
from modeldeploy.reconcile import Reconciler
from modeldeploy_dev.testing import wait_for
from specs import model_version, valid_spec

TOKEN = "s3cr3t-token-value"


class Store:
    def __init__(self, secrets: dict[str, dict[str, str]] | None = None) -> None:
        self.secrets = secrets or {}

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        for value in self.secrets[name].values():
            redaction.register(value)
        return self.secrets[name]

    def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        raise ApiException(status=404, reason="Not Found")


def gate(**fields: Any) -> GateCall:
    hook = {"name": "approve", "type": "confirm-promotion", "url": "http://receiver/gate", **fields}
    webhook = parse_spec(valid_spec(rollout={"webhooks": [hook]})).rollout.webhooks[0]
    return GateCall(webhook, "rev1", None, 0, {"revision": "rev1", "type": "confirm-promotion"})


def answering(*statuses: int, body: str = "") -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(statuses[min(len(seen), len(statuses)) - 1], text=body)

    return seen, httpx.MockTransport(handle)


def test_a_gate_posts_the_canary_context_with_the_token_from_a_secret() -> None:
    seen, transport = answering(200)
    store = Store({"hooks": {"token": TOKEN + "\n"}})
    answer = call_gate(
        gate(tokenFrom={"secretKeyRef": {"name": "hooks", "key": "token"}}), "ns", "fraud", store, transport
    )
    assert (answer.passed, answer.answer) == (True, "HTTP 200")
    (request,) = seen
    assert request.method == "POST"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    body = json.loads(request.content)
    assert (body["name"], body["namespace"], body["revision"], body["type"]) == (
        "fraud",
        "ns",
        "rev1",
        "confirm-promotion",
    )


def test_a_gate_retries_5xx_and_no_answer_but_not_a_refusal() -> None:
    seen, transport = answering(503, 200)
    answer = call_gate(gate(retries=2), "ns", "fraud", Store(), transport, sleep=lambda _: None)
    assert (answer.passed, answer.answer, len(seen)) == (True, "HTTP 200 (after 2 tries)", 2)

    seen, transport = answering(403, body="not approved")
    answer = call_gate(gate(retries=2), "ns", "fraud", Store(), transport, sleep=lambda _: None)
    assert (answer.passed, answer.answer, len(seen)) == (False, "HTTP 403: not approved", 1)

    waits: list[float] = []

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    answer = call_gate(gate(retries=3), "ns", "fraud", Store(), httpx.MockTransport(down), sleep=waits.append)
    assert not answer.passed
    assert answer.answer == "no connection: ConnectError (after 4 tries)"
    assert waits == [1, 2, 4], "backoff between tries, bounded by retries"


def test_a_gate_answer_never_carries_the_token_and_a_missing_secret_says_which() -> None:
    _, transport = answering(401, body=f"bad token {TOKEN}")
    store = Store({"hooks": {"token": TOKEN}})
    answer = call_gate(gate(tokenFrom={"secretKeyRef": {"name": "hooks", "key": "token"}}), "ns", "f", store, transport)
    assert TOKEN not in answer.answer
    assert answer.answer.startswith("HTTP 401")
    missing = call_gate(gate(urlFrom={"secretKeyRef": {"name": "nope", "key": "url"}}, url=None), "ns", "f", store)
    assert (missing.passed, missing.answer) == (False, "not called: cannot read Secret ns/nope: Not Found")
    bad = call_gate(
        gate(urlFrom={"secretKeyRef": {"name": "hooks", "key": "token"}}, url=None), "ns", "f", store, transport
    )
    assert bad.answer == "not called: key 'token' of Secret ns/hooks is not an http(s) URL"


def test_one_slow_receiver_never_delays_another_objects_gate() -> None:
    release = threading.Event()

    def handle(request: httpx.Request) -> httpx.Response:
        if b'"name": "slow"' in request.content:
            release.wait(10)
        return httpx.Response(200)

    woken: list[tuple[str, str]] = []
    runner = GateRunner(Store(), notify=woken.append, workers=2, transport=httpx.MockTransport(handle))
    try:
        call = gate()
        assert runner.take("ns", "slow", call) is None
        assert runner.take("ns", "fast", call) is None
        wait_for(lambda: ("ns", "fast") in woken, 10, "the fast object's answer")
        answer = runner.take("ns", "fast", call)
        assert answer is not None
        assert answer.passed
        assert runner.take("ns", "slow", call) is None, "still waiting on its own receiver"
        assert runner.take("ns", "fast", call) is None, "an answer is taken once; asking again calls again"
    finally:
        release.set()
        runner.close()


def deliveries(fmt: str = "json") -> list[Any]:
    spec = parse_spec(
        valid_spec(
            rollout={
                "notifications": [
                    {
                        "name": "ops",
                        "urlFrom": {"secretKeyRef": {"name": "hooks", "key": "url"}},
                        "tokenFrom": {"secretKeyRef": {"name": "hooks", "key": "token"}},
                        "format": fmt,
                    }
                ]
            }
        )
    )
    events = [Event("Normal", "CanaryStarted", "Started a canary of revision r1")]
    return notifications("ns", "fraud", "uid", spec.rollout.notifications, events, ModelDeploymentStatus(), _now())


def _now() -> datetime:
    return datetime(2026, 11, 23, tzinfo=UTC)


def counted(event: str, result: str) -> float:
    value = metrics.REGISTRY.get_sample_value("modeldeploy_notifications_total", {"event": event, "result": result})
    return value or 0.0


def test_a_notification_is_retried_with_backoff_until_it_is_delivered_once() -> None:
    seen, transport = answering(500, 502, 200)
    store = Store({"hooks": {"url": "http://receiver/events?key=abc123secret", "token": TOKEN}})
    before = (counted("CanaryStarted", "retried"), counted("CanaryStarted", "delivered"))
    notifier = Notifier(store, transport=transport)
    started = time.monotonic()
    try:
        notifier.send("ns", "fraud", deliveries())
        wait_for(lambda: len(seen) == 3 and notifier.pending() == 0, 20, "three tries")
    finally:
        notifier.close()
    assert time.monotonic() - started >= 1 + 2 - 0.1, "tries wait 1 s, then 2 s"
    assert {r.headers["Idempotency-Key"] for r in seen} == {deliveries()[0].id}, "one id for every try"
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(seen[0].content)["event"] == "CanaryStarted"
    assert (counted("CanaryStarted", "retried"), counted("CanaryStarted", "delivered")) == (
        before[0] + 2,
        before[1] + 1,
    )


def test_a_notification_gives_up_after_bounded_tries_and_counts_the_failure() -> None:
    seen, transport = answering(404)
    store = Store({"hooks": {"url": "http://receiver/events", "token": TOKEN}})
    before = counted("CanaryStarted", "failed")
    notifier = Notifier(store, transport=transport)
    try:
        notifier.send("ns", "fraud", deliveries("slack"))
        wait_for(lambda: counted("CanaryStarted", "failed") == before + 1, 10, "the failure counted")
    finally:
        notifier.close()
    assert len(seen) == 1, "a 404 is not retried"
    assert json.loads(seen[0].content)["text"].startswith("*CanaryStarted* ns/fraud")


@pytest.mark.parametrize("timeout", [False, True], ids=["503", "read-timeout"])
def test_notification_tries_are_bounded(timeout: bool) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if timeout:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(503)

    store = Store({"hooks": {"url": "http://receiver/events", "token": TOKEN}})
    before = counted("CanaryStarted", "failed")
    notifier = Notifier(store, transport=httpx.MockTransport(handle), tries=2)
    try:
        notifier.send("ns", "fraud", deliveries())
        wait_for(lambda: counted("CanaryStarted", "failed") == before + 1, 10, "the delivery given up")
    finally:
        notifier.close()
    assert len(seen) == 2


def test_one_reconcile_opens_gate_after_gate_and_notifies_each_event_once() -> None:
    seen, transport = answering(200)
    kube = FakeKube(valid_spec(model=model_version("7")))
    sent: list[Delivery] = []
    reconciler = Reconciler(kube, gates=InlineGates(kube, transport), notify=lambda ns, n, d: sent.extend(d))
    reconciler.reconcile("ns", "fraud-scorer")
    kube.md["spec"] = valid_spec(
        model=model_version("8"),
        rollout={
            "steps": [{"setWeight": 20}, {"pause": {}}],
            "webhooks": [
                {"name": "approve", "type": "confirm-rollout", "url": "http://receiver/approve"},
                {"name": "smoke", "type": "pre-rollout", "url": "http://receiver/smoke"},
            ],
            "notifications": [{"name": "ops", "url": "http://receiver/events"}],
        },
    )
    reconciler.reconcile("ns", "fraud-scorer")
    assert [r.url.path for r in seen] == ["/approve", "/smoke"], "confirm-rollout, then pre-rollout, in one go"
    status = kube.md["status"]
    assert status["canary"]["revision"] == status["targetRevision"]
    assert [(w["name"], w["result"]) for w in status["webhooks"]] == [("approve", "Passed"), ("smoke", "Passed")]
    assert next(c for c in status["conditions"] if c["type"] == "Gated")["status"] == "False"
    assert [d.event for d in sent] == ["CanaryStarted"]
    reconciler.reconcile("ns", "fraud-scorer")
    assert len(seen) == 2, "gates that passed are not asked again"
    assert [d.event for d in sent] == ["CanaryStarted"], "nothing new happened: nothing sent"
