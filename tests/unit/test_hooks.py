"""Webhooks without I/O: which gate is asked when, what its answer does, and which notifications an outcome sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from modeldeploy.core.api import ModelDeploymentStatus, RevisionStatus, RollbackStatus, ServedModel, parse_spec
from modeldeploy.core.hooks import (
    GATE_POLL_SECONDS,
    RETRY_MAX_SECONDS,
    GateAnswer,
    backoff,
    gate_budget,
    gate_condition,
    notifications,
)
from modeldeploy.core.rollout import Decision, Observed, decide
from modeldeploy.core.status import DeploymentState, Event, find_condition
from specs import valid_spec

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
OLD, NEW = "old0000000", "new0000000"
MODEL = ServedModel(name="fraud-scorer", version="8", uri="s3://m/8")
STABLE_OLD = ModelDeploymentStatus(
    stable=RevisionStatus(revision=OLD, model=ServedModel(name="fraud-scorer", version="7", uri="s3://m/7"))
)


def hook(name: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "url": f"http://127.0.0.1:1/{name}", **extra}


def spec(webhooks: list[dict[str, Any]], steps: list[dict[str, Any]] | None = None) -> Any:
    rollout = {
        "steps": [{"setWeight": 25}, {"setWeight": 50}] if steps is None else steps,
        "webhooks": webhooks,
        "scaleDownDelaySeconds": 0,
    }
    return parse_spec(valid_spec(rollout=rollout))


def dep(revision: str, replicas: int = 3) -> DeploymentState:
    return DeploymentState(
        generation=1,
        observed_generation=1,
        revision=revision,
        spec_replicas=replicas,
        replicas=replicas,
        updated_replicas=replicas,
        ready_replicas=replicas,
        available_replicas=replicas,
        available=True,
        deadline_exceeded_message=None,
    )


def run(
    s: Any,
    prev: ModelDeploymentStatus = STABLE_OLD,
    answers: dict[str, GateAnswer] | None = None,
    canary: DeploymentState | None = None,
    now: datetime = T0,
) -> Decision:
    obs = Observed(stable=dep(OLD), canary=canary, router_weight=None, gate_answers=answers or {})
    return decide(s, NEW, MODEL, obs, prev, now)


def answer_all(decision: Decision, passed: bool, text: str = "HTTP 200") -> dict[str, GateAnswer]:
    return {call.fingerprint: GateAnswer(passed, text) for call in decision.gate_calls}


def test_confirm_rollout_holds_the_canary_until_it_answers_2xx() -> None:
    s = spec([hook("approve", "confirm-rollout")])
    asked = run(s)
    assert asked.status.canary is None, "no canary before the gate answers"
    assert [c.hook.name for c in asked.gate_calls] == ["approve"]
    assert asked.gate_calls[0].payload["revision"] == NEW
    assert asked.gate_held is not None
    assert asked.gate_held.result == "Pending"

    refused = run(s, asked.status, answer_all(asked, False, "HTTP 403: not yet"))
    assert refused.status.canary is None
    record = refused.status.webhooks[0]
    assert (record.result, record.answer, record.attempts) == ("Failed", "HTTP 403: not yet", 1)
    assert refused.gate_calls == [], "a held gate waits before it is asked again"
    assert refused.requeue_after == GATE_POLL_SECONDS

    again = run(s, refused.status, now=T0 + timedelta(seconds=GATE_POLL_SECONDS))
    assert [c.attempt for c in again.gate_calls] == [1], "asked again after the poll interval"
    assert again.status.webhooks[0].answer == "HTTP 403: not yet", "the last answer stays visible meanwhile"

    started = run(s, again.status, answer_all(again, True), now=T0 + timedelta(seconds=6))
    assert started.status.canary is not None
    assert [e.reason for e in started.events] == ["CanaryStarted"]
    assert started.gate_held is None

    later = run(s, started.status, now=T0 + timedelta(seconds=7))
    assert later.gate_calls == [], "a gate that passed is never asked again for this revision"


def test_pre_rollout_failing_with_on_failure_fail_rolls_the_canary_back() -> None:
    s = spec([hook("smoke", "pre-rollout", onFailure="fail")])
    started = run(s)
    assert started.status.canary is not None
    assert started.weight == 0
    assert [c.hook.name for c in started.gate_calls] == ["smoke"]
    failed = run(s, started.status, answer_all(started, False, "no answer within 10s"), canary=dep(NEW, 1))
    assert failed.status.canary is None
    assert failed.status.last_rollback is not None
    assert failed.status.last_rollback.reason == "WebhookFailed"
    assert "pre-rollout webhook 'smoke' answered no answer within 10s" in failed.status.last_rollback.message


def test_rollout_hooks_are_asked_at_each_step_before_its_weight() -> None:
    s = spec([hook("load", "rollout")])
    started = run(s)
    assert [(c.hook.name, c.step) for c in started.gate_calls] == [("load", 0)]
    assert started.weight == 0
    at_25 = run(s, started.status, answer_all(started, True), canary=dep(NEW, 1))
    assert at_25.status.canary is not None
    assert at_25.status.canary.weight == 25
    assert [(c.hook.name, c.step) for c in at_25.gate_calls] == [("load", 1)], "step 2 asks again"
    held = run(s, at_25.status, answer_all(at_25, False, "HTTP 500"), canary=dep(NEW, 1))
    assert held.status.canary is not None
    assert held.status.canary.weight == 25, "a hold keeps the weight"
    assert held.gate_held is not None
    assert held.gate_held.step == 1


def test_confirm_promotion_holds_or_rolls_back_as_configured() -> None:
    for on_failure, rolled_back in (("hold", False), ("fail", True)):
        s = spec([hook("cab", "confirm-promotion", onFailure=on_failure)], steps=[{"setWeight": 25}])
        started = run(s)
        at_end = run(s, started.status, canary=dep(NEW, 1))
        assert [c.hook.type for c in at_end.gate_calls] == ["confirm-promotion"]
        answered = run(s, at_end.status, answer_all(at_end, False, "HTTP 409: change freeze"), canary=dep(NEW, 1))
        assert (answered.status.canary is None) == rolled_back
        if not rolled_back:
            assert answered.status.canary is not None
            assert answered.status.canary.phase == "Progressing"
            assert answered.gate_held is not None
            promoted = run(
                s,
                answered.status,
                answer_all(run(s, answered.status, canary=dep(NEW, 1), now=T0 + timedelta(seconds=5)), True),
                canary=dep(NEW, 1),
                now=T0 + timedelta(seconds=5),
            )
            assert promoted.status.canary is not None
            assert promoted.status.canary.phase == "Promoting"


def test_a_held_gate_shows_in_condition_gated_naming_the_hook_and_its_answer() -> None:
    s = spec([hook("approve", "confirm-rollout")])
    asked = run(s)
    refused = run(s, asked.status, answer_all(asked, False, "HTTP 403: not approved"))
    status = gate_condition(refused.status, s, refused.gate_held, 1, T0)
    gated = find_condition(status.conditions, "Gated")
    assert gated is not None
    assert gated.status == "True"
    assert "confirm-rollout webhook 'approve' answered HTTP 403: not approved" in gated.message
    progressing = find_condition(status.conditions, "Progressing")
    assert progressing is not None
    assert progressing.reason == "WebhookHeld"
    ready = find_condition(status.conditions, "Ready")
    assert ready is not None
    assert (ready.status, ready.reason) == ("False", "WebhookHeld")
    opened = gate_condition(status, s, None, 1, T0)
    gated = find_condition(opened.conditions, "Gated")
    assert gated is not None
    assert gated.status == "False"
    without = gate_condition(opened, spec([]), None, 1, T0)
    assert find_condition(without.conditions, "Gated") is None


def test_retry_backoff_doubles_and_is_bounded() -> None:
    assert [backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert max(backoff(n) for n in range(1, 100)) == RETRY_MAX_SECONDS
    gate = spec([hook("g", "rollout", retries=5, timeout="60s")]).rollout.webhooks[0]
    assert gate_budget(gate, 60) == 6 * 60 + 1 + 2 + 4 + 8 + 16


def notified(happened: list[Event], status: ModelDeploymentStatus, **notification: Any) -> list[Any]:
    n = parse_spec(
        valid_spec(rollout={"notifications": [{"name": "ops", "url": "http://127.0.0.1:1/", **notification}]})
    )
    return notifications("ns", "fraud", "uid-1", n.rollout.notifications, happened, status, T0)


ROLLED_BACK = STABLE_OLD.model_copy(
    update={
        "last_rollback": RollbackStatus(
            revision=NEW, model=MODEL, reason="AnalysisFailed", message="error rate 0.2", at="2026-11-23T12:00:00Z"
        )
    }
)


def test_which_notification_each_event_sends() -> None:
    events = [
        Event("Normal", "CanaryStarted", "started"),
        Event("Normal", "WeightChanged", "25%"),
        Event("Normal", "PromotionStarted", "promoting"),
        Event("Warning", "RolledBack", "rolled back"),
    ]
    sent = notified(events, ROLLED_BACK)
    assert [d.event for d in sent] == ["CanaryStarted", "RolledBack"], "WeightChanged only when asked for"
    assert [d.event for d in notified(events, ROLLED_BACK, events=["WeightChanged"])] == ["WeightChanged"]
    baked = ROLLED_BACK.model_copy(
        update={"last_rollback": ROLLED_BACK.last_rollback.model_copy(update={"reason": "BakeFailed"})}  # type: ignore[union-attr]
    )
    assert [d.event for d in notified([Event("Warning", "RolledBack", "bake")], baked)] == ["BakeFailed"]
    assert notified([Event("Normal", "AnalysisNoData", "x")], ROLLED_BACK) == []


def test_the_json_event_and_its_slack_form() -> None:
    (delivery,) = notified([Event("Warning", "RolledBack", "Rolled back revision new: error rate")], ROLLED_BACK)
    body = delivery.body
    assert body["event"] == "RolledBack"
    assert body["reason"] == "AnalysisFailed"
    assert (body["name"], body["namespace"], body["revision"], body["checksum"]) == ("fraud", "ns", NEW, NEW)
    assert body["model"]["version"] == "8"
    assert body["metadata"] == {
        "eventMessage": "Rolled back revision new: error rate",
        "eventType": "Warning",
        "timestamp": "2026-11-23T12:00:00Z",
    }
    assert body["id"] == delivery.id
    (slack,) = notified(
        [Event("Warning", "RolledBack", "Rolled back revision new: error rate")], ROLLED_BACK, format="slack"
    )
    assert slack.body["text"] == "*RolledBack* ns/fraud: Rolled back revision new: error rate"
    assert slack.body["attachments"][0]["color"] == "danger"
    assert slack.id == delivery.id, "the same occurrence has the same id for every receiver and form"


def test_event_ids_differ_per_occurrence() -> None:
    events = [Event("Normal", "CanaryStarted", "started revision a")]
    first = notifications(
        "ns",
        "fraud",
        "uid-1",
        parse_spec(valid_spec(rollout={"notifications": [{"name": "ops", "url": "http://h/"}]})).rollout.notifications,
        events,
        STABLE_OLD,
        T0,
    )
    later = notifications(
        "ns",
        "fraud",
        "uid-1",
        parse_spec(valid_spec(rollout={"notifications": [{"name": "ops", "url": "http://h/"}]})).rollout.notifications,
        events,
        STABLE_OLD,
        T0 + timedelta(seconds=1),
    )
    assert first[0].id != later[0].id
