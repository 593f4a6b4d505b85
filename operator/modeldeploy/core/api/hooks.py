"""Webhooks both ways: gates the canary waits on (Flagger's hook types) and notifications it sends.

A gate is called with the canary's context at a fixed point of the rollout; an answer 2xx lets it go on, anything
else (another status, a timeout, no connection) holds it there or fails it, as `onFailure` says. A notification is
a JSON event POSTed once per occurrence, retried with backoff, and never waited for. URLs and bearer tokens may
come from Secrets (a Slack incoming-webhook URL is itself a credential).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modeldeploy.core.api.analysis import SecretKey
from modeldeploy.core.api.base import DNS_LABEL, DURATION, HTTP_URL, ApiModel, Rule, Time

GateType = Literal["confirm-rollout", "pre-rollout", "rollout", "confirm-promotion"]
NotificationEvent = Literal["CanaryStarted", "WeightChanged", "Promoted", "RolledBack", "BakeFailed"]
GateResult = Literal["Pending", "Passed", "Failed"]
DEFAULT_EVENTS: list[NotificationEvent] = ["CanaryStarted", "Promoted", "RolledBack", "BakeFailed"]
MAX_HOOKS = 8

_ENDPOINT_RULE = Rule("has(self.url) != has(self.urlFrom)", "a webhook takes exactly one of url or urlFrom")
_TIMEOUT_RULE = Rule(
    "!has(self.timeout) || (duration(self.timeout) > duration('0s') && duration(self.timeout) <= duration('60s'))",
    "a webhook's timeout must be above 0 and at most 60s",
)
_UNIQUE_NAMES = "!has(self.{list}) || self.{list}.all(a, self.{list}.filter(b, b.name == a.name).size() == 1)"


class SecretSource(ApiModel):
    secret_key_ref: SecretKey = Field(description="Read from a Secret in the ModelDeployment's namespace.")


class Webhook(ApiModel):
    """A gate: called at one point of the canary, and the canary goes on only once it answers 2xx."""

    rules = (
        _ENDPOINT_RULE,
        _TIMEOUT_RULE,
        Rule(
            "self.type != 'confirm-rollout' || !has(self.onFailure) || self.onFailure == 'hold'",
            "a confirm-rollout webhook can only hold (no canary runs yet to fail); use onFailure hold",
        ),
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL, description="Names the hook in status.")
    type: GateType = Field(
        description="confirm-rollout: before the canary starts; pre-rollout: once, before it gets traffic; "
        "rollout: at each step, before the step's weight or wait; confirm-promotion: before promotion."
    )
    url: str | None = Field(default=None, max_length=2048, pattern=HTTP_URL, description="The URL, in the clear.")
    url_from: SecretSource | None = Field(default=None, description="The URL from a Secret.")
    token_from: SecretSource | None = Field(
        default=None, description="Sent as `Authorization: Bearer <token>`; never logged, never in status."
    )
    timeout: str = Field(default="10s", max_length=32, pattern=DURATION, description="Per attempt (Flagger: 10s).")
    retries: int = Field(
        default=1, ge=0, le=5, description="Attempts after the first when there is no answer or an answer 5xx."
    )
    on_failure: Literal["hold", "fail"] = Field(
        default="hold",
        description="hold: wait and ask again (every 5s); fail: roll the canary back (reason WebhookFailed).",
    )
    metadata: dict[str, str] = Field(
        default_factory=dict, max_length=16, description="Sent as is in the payload's metadata."
    )


class Notification(ApiModel):
    """Where the rollout's events are POSTed (like Flagger's event webhook and alert providers)."""

    rules = (_ENDPOINT_RULE, _TIMEOUT_RULE)

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    url: str | None = Field(default=None, max_length=2048, pattern=HTTP_URL, description="The URL, in the clear.")
    url_from: SecretSource | None = Field(
        default=None, description="The URL from a Secret, e.g. a Slack incoming webhook."
    )
    token_from: SecretSource | None = Field(
        default=None, description="Sent as `Authorization: Bearer <token>`; never logged, never in status."
    )
    format: Literal["json", "slack"] = Field(
        default="json", description="json: the event as JSON; slack: a Slack message ({text, attachments})."
    )
    events: list[NotificationEvent] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS),
        min_length=1,
        max_length=5,
        description="What to send. Default: CanaryStarted, Promoted, RolledBack, BakeFailed (WeightChanged is "
        "optional).",
    )
    timeout: str = Field(default="5s", max_length=32, pattern=DURATION, description="Per attempt.")


WEBHOOK_RULES = (
    Rule(_UNIQUE_NAMES.format(list="webhooks"), "rollout.webhooks names must be unique"),
    Rule(_UNIQUE_NAMES.format(list="notifications"), "rollout.notifications names must be unique"),
)


class GateStatus(ApiModel):
    """The last call of one gate: what it was asked for and what it answered (never a URL or a token)."""

    name: str
    type: GateType
    revision: str = Field(description="The revision it was asked about.")
    step: int | None = Field(default=None, description="For a rollout hook: the step index it was asked about.")
    result: GateResult
    answer: str = Field(default="", max_length=1024, description="The last answer, e.g. 'HTTP 403: not approved'.")
    attempts: int = Field(default=0, description="Calls answered for this revision and step.")
    at: Time
    next_call_at: Time | None = Field(default=None, description="When a held gate is asked again.")
