"""Webhooks without I/O: which gate calls are due and what their answers mean, and which notifications an
outcome sends with what payload.

A gate call is identified by its fingerprint: the hook's definition, the revision, the step and how many answers
came before. The rollout state machine asks for the calls it needs (`Decision.gate_calls`); the reconcile runs them
off its workers and feeds the answers back by fingerprint (`Observed.gate_answers`). What each gate last answered
lives in `status.webhooks`, so an operator restart resumes where it was: a gate that passed is never asked again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from modeldeploy.core.api import (
    GateStatus,
    GateType,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Notification,
    NotificationEvent,
    Webhook,
)
from modeldeploy.core.status import Event, now_rfc3339, parse_time, set_condition

GATE_POLL_SECONDS = 5.0
"""A gate that holds is asked again this often."""
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
GATED = "Gated"
ANSWER_LIMIT = 200
"""Characters of a receiver's answer body kept in status."""


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (1, 2, ...): 1 s, doubling, at most 30 s."""
    return float(min(RETRY_FIRST_SECONDS * 2 ** (attempt - 1), RETRY_MAX_SECONDS))


def gate_budget(hook: Webhook, timeout: float) -> float:
    """The longest one gate call may take: every attempt at its timeout, and the waits between them."""
    return (hook.retries + 1) * timeout + sum(backoff(n) for n in range(1, hook.retries + 1))


@dataclass(frozen=True)
class GateCall:
    hook: Webhook
    revision: str
    step: int | None
    attempt: int
    payload: dict[str, Any]
    """The canary's context; the reconcile adds the object's name and namespace."""

    @property
    def fingerprint(self) -> str:
        definition = hashlib.sha256(self.hook.model_dump_json().encode()).hexdigest()[:12]
        return f"{self.hook.name}|{definition}|{self.revision}|{self.step}|{self.attempt}"


@dataclass(frozen=True)
class GateAnswer:
    passed: bool
    answer: str
    """What came back, for status: 'HTTP 200', 'HTTP 403: not approved', 'no answer within 10s', ..."""


@dataclass
class GateCheck:
    """What the gates of one point say: open, held (asking or waiting to ask again), or failed."""

    records: list[GateStatus]
    calls: list[GateCall] = field(default_factory=list)
    held: GateStatus | None = None
    failed: GateStatus | None = None
    recheck_in: float | None = None

    @property
    def open(self) -> bool:
        return self.held is None and self.failed is None


def check_gates(
    hooks: list[Webhook],
    type_: GateType,
    revision: str,
    step: int | None,
    payload: dict[str, Any],
    records: list[GateStatus],
    answers: dict[str, GateAnswer],
    now: datetime,
) -> GateCheck:
    """The hooks of `type_` at this point (revision, step): answered 2xx here already, answered now, or due."""
    stamp = now_rfc3339(now)
    check = GateCheck(records=list(records))
    for hook in (h for h in hooks if h.type == type_):
        index = next((i for i, r in enumerate(check.records) if r.name == hook.name), None)
        old = check.records[index] if index is not None else None
        here = old if old is not None and (old.type, old.revision, old.step) == (type_, revision, step) else None
        if here is not None and here.result == "Passed":
            continue
        attempts = here.attempts if here else 0
        call = GateCall(hook, revision, step, attempts, {**payload, "type": type_, "metadata": dict(hook.metadata)})
        answer = answers.get(call.fingerprint)
        if answer is not None:
            again = None if answer.passed else now_rfc3339(now + timedelta(seconds=GATE_POLL_SECONDS))
            record = GateStatus(
                name=hook.name,
                type=type_,
                revision=revision,
                step=step,
                result="Passed" if answer.passed else "Failed",
                answer=answer.answer[:1024],
                attempts=attempts + 1,
                at=stamp,
                next_call_at=again if hook.on_failure == "hold" else None,
            )
        elif here is not None and here.next_call_at is not None and parse_time(here.next_call_at) > now:
            record = here
        else:
            check.calls.append(call)
            # Asking (again): the last answer stays visible until the new one comes.
            record = (
                here or GateStatus(name=hook.name, type=type_, revision=revision, step=step, result="Pending", at=stamp)
            ).model_copy(update={"next_call_at": None})
        if record.next_call_at is not None:
            wait = (parse_time(record.next_call_at) - now).total_seconds()
            check.recheck_in = wait if check.recheck_in is None else min(check.recheck_in, wait)
        if index is None:
            check.records.append(record)
        else:
            check.records[index] = record
        if record.result == "Passed":
            continue
        if record.result == "Failed" and hook.on_failure == "fail":
            check.failed = check.failed or record
        else:
            check.held = check.held or record
    return check


def describe_gate(record: GateStatus) -> str:
    where = f" at step {record.step + 1}" if record.step is not None else ""
    if record.result == "Pending":
        return f"{record.type} webhook {record.name!r}{where}: waiting for its first answer"
    return f"{record.type} webhook {record.name!r}{where} answered {record.answer}"


def gate_condition(
    status: ModelDeploymentStatus,
    spec: ModelDeploymentSpec | None,
    held: GateStatus | None,
    generation: int,
    now: datetime,
) -> ModelDeploymentStatus:
    """Condition Gated (only with gate webhooks): True naming the hook and its last answer while one holds. A
    confirm-rollout hold, before any canary, also says so in Ready and Progressing."""
    conditions = status.conditions
    if spec is None or not spec.rollout.webhooks:
        if any(c.type == GATED for c in conditions):
            return status.model_copy(update={"conditions": [c for c in conditions if c.type != GATED]})
        return status
    if held is None:
        conditions = set_condition(conditions, GATED, "False", "GatesOpen", "", generation, now)
    else:
        again = f"; asking again at {held.next_call_at}" if held.next_call_at else ""
        message = f"{describe_gate(held)}{again}"
        conditions = set_condition(conditions, GATED, "True", "WebhookHeld", message, generation, now)
        if held.type == "confirm-rollout" and status.canary is None:
            message = f"revision {held.revision} waits to start its canary: {message}"
            conditions = set_condition(conditions, "Ready", "False", "WebhookHeld", message, generation, now)
            conditions = set_condition(conditions, "Progressing", "True", "WebhookHeld", message, generation, now)
    return status.model_copy(update={"conditions": conditions})


# -- notifications --------------------------------------------------------------------------------------------

_NOTIFIED: dict[str, NotificationEvent] = {
    "CanaryStarted": "CanaryStarted",
    "WeightChanged": "WeightChanged",
    "Promoted": "Promoted",
    "RolledBack": "RolledBack",
    "Aborted": "RolledBack",
}


def notification_event(event: Event, status: ModelDeploymentStatus) -> NotificationEvent | None:
    """What an Event of the rollout notifies, if anything: a rollback after promotion (the bake guard) is
    BakeFailed."""
    kind = _NOTIFIED.get(event.reason)
    if kind == "RolledBack" and status.last_rollback is not None and status.last_rollback.reason == "BakeFailed":
        return "BakeFailed"
    return kind


@dataclass(frozen=True)
class Delivery:
    notification: Notification
    event: NotificationEvent
    id: str
    body: dict[str, Any]


def notifications(
    namespace: str,
    name: str,
    uid: str,
    notifications_: list[Notification],
    events: list[Event],
    status: ModelDeploymentStatus,
    now: datetime,
) -> list[Delivery]:
    """The deliveries a reconcile's Events make: one per event and subscribed notification. Each event's id is
    the same for every receiver and unique per occurrence (the object's uid, the event, the moment it happened),
    so a receiver can drop a duplicate."""
    stamp = now_rfc3339(now)
    out = []
    for event in events:
        kind = notification_event(event, status)
        if kind is None:
            continue
        event_id = hashlib.sha256(f"{uid}|{kind}|{event.message}|{stamp}".encode()).hexdigest()[:32]
        payload = event_payload(namespace, name, kind, event, status, event_id, stamp)
        for notification in notifications_:
            if kind in notification.events:
                body = slack_message(payload) if notification.format == "slack" else payload
                out.append(Delivery(notification, kind, event_id, body))
    return out


def _revision(kind: NotificationEvent, status: ModelDeploymentStatus) -> tuple[str | None, dict[str, Any] | None]:
    """The revision an event is about, and its model."""
    if kind in ("RolledBack", "BakeFailed") and status.last_rollback is not None:
        track: Any = status.last_rollback
    elif kind == "Promoted" and status.history:
        track = status.history[-1]
    else:
        track = status.canary
    if track is None:
        return None, None
    return track.revision, track.model.model_dump(by_alias=True, exclude_none=True)


def event_payload(
    namespace: str,
    name: str,
    kind: NotificationEvent,
    event: Event,
    status: ModelDeploymentStatus,
    event_id: str,
    stamp: str,
) -> dict[str, Any]:
    """The JSON event; `name`, `namespace`, `phase`, `checksum` and `metadata` as in Flagger's event webhook."""
    revision, model = _revision(kind, status)
    rollback = status.last_rollback if kind in ("RolledBack", "BakeFailed") else None
    return {
        "id": event_id,
        "event": kind,
        "name": name,
        "namespace": namespace,
        "phase": status.phase,
        "checksum": revision,
        "revision": revision,
        "model": model,
        "stableRevision": status.stable.revision if status.stable else None,
        "weight": status.canary.weight if status.canary else None,
        "reason": rollback.reason if rollback else event.reason,
        "message": event.message,
        "at": stamp,
        "metadata": {"eventMessage": event.message, "eventType": event.type, "timestamp": stamp},
    }


_COLOURS: dict[str, Literal["good", "warning", "danger"]] = {
    "CanaryStarted": "good",
    "WeightChanged": "good",
    "Promoted": "good",
    "RolledBack": "danger",
    "BakeFailed": "danger",
}


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (also understood by Mattermost and Rocket.Chat)."""
    model = payload["model"] or {}
    fields = [
        {"title": "Revision", "value": payload["revision"] or "-", "short": True},
        {"title": "Model", "value": f"{model.get('name', '-')} version {model.get('version', '-')}", "short": True},
    ]
    return {
        "text": f"*{payload['event']}* {payload['namespace']}/{payload['name']}: {payload['message']}",
        "attachments": [{"color": _COLOURS[payload["event"]], "fields": fields, "footer": f"id {payload['id']}"}],
    }
