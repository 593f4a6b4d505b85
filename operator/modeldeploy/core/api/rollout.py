"""The canary every new revision goes through: steps, deadlines, and the analysis that gates it."""

from __future__ import annotations

from pydantic import Field

from modeldeploy.core.api.analysis import Analysis
from modeldeploy.core.api.base import DURATION, ApiModel, Rule
from modeldeploy.core.api.hooks import MAX_HOOKS, WEBHOOK_RULES, Notification, Webhook


class Pause(ApiModel):
    duration: str | None = Field(
        default=None,
        max_length=32,
        pattern=DURATION,
        description="How long to wait, e.g. 30s or 5m; without it the canary waits until promoted.",
    )


class AnalysisGate(ApiModel):
    measurements: int = Field(
        default=1, ge=1, le=100, description="Successful analysis measurements in a row needed to go on."
    )


class Step(ApiModel):
    """One canary step: exactly one of setWeight, pause or analysis."""

    rules = (
        Rule(
            "[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1",
            "a step is exactly one of setWeight, pause or analysis",
        ),
    )

    set_weight: int | None = Field(default=None, ge=0, le=100, description="Percent of traffic for the canary.")
    pause: Pause | None = Field(default=None, description="Wait before the next step.")
    analysis: AnalysisGate | None = Field(
        default=None, description="Wait for successful measurements of rollout.analysis before the next step."
    )


def default_steps() -> list[Step]:
    return [
        Step(set_weight=20),
        Step(pause=Pause(duration="30s")),
        Step(set_weight=50),
        Step(pause=Pause(duration="30s")),
    ]


# The first step that is either traffic or an analysis gate; an analysis gate there would measure nothing.
_FIRST_GATE_OR_TRAFFIC = "self.steps.filter(s, has(s.analysis) || (has(s.setWeight) && s.setWeight > 0))"


class Rollout(ApiModel):
    """How a new revision reaches users: a canary that moves through `steps`, then is promoted."""

    rules = (
        Rule(
            "!has(self.steps) || !self.steps.exists(s, has(s.analysis)) || has(self.analysis)",
            "an analysis step needs rollout.analysis",
        ),
        Rule(
            "!has(self.analysis) || ("
            "(!has(self.steps) || self.steps.exists(s, has(s.setWeight) && s.setWeight > 0)) && "
            "(!has(self.analysis.startingStep) || "
            f"self.analysis.startingStep <= (has(self.steps) ? self.steps.size() : {len(default_steps())})))",
            "rollout.analysis could never measure: a canary is measured only once a step gives it traffic "
            "(setWeight above 0), from analysis.startingStep on, which must not be past the last step",
        ),
        Rule(
            f"!has(self.steps) || {_FIRST_GATE_OR_TRAFFIC}.size() == 0 || !has({_FIRST_GATE_OR_TRAFFIC}[0].analysis)",
            "an analysis step needs a setWeight above 0 before it; a canary without traffic has nothing to measure",
        ),
        Rule(
            "!has(self.bakeWarmReplicas) || has(self.bakeSeconds)",
            "rollout.bakeWarmReplicas needs rollout.bakeSeconds",
        ),
        Rule(
            "!has(self.bakeSeconds) || has(self.analysis)",
            "rollout.bakeSeconds needs rollout.analysis: without metrics nothing can fail the bake",
        ),
        Rule(
            "!has(self.bakeSeconds) || !has(self.analysis) || self.bakeSeconds >= "
            "duration(has(self.analysis.interval) ? self.analysis.interval : '30s').getSeconds()",
            "rollout.bakeSeconds must be at least one analysis.interval, or the bake would never be measured",
        ),
        *WEBHOOK_RULES,
    )

    steps: list[Step] = Field(
        default_factory=default_steps,
        max_length=32,
        description="Canary steps. Default: setWeight 20, pause 30s, setWeight 50, pause 30s. [] promotes as soon "
        "as the canary's pods are ready.",
    )
    progress_deadline_seconds: int = Field(
        default=600, ge=10, le=86400, description="How long the canary's pods may stay not ready before rollback."
    )
    canary_replicas: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Fixed canary pod count, whatever the weight (not with the replicas router, where the pod "
        "ratio is the weight).",
    )
    analysis: Analysis | None = Field(
        default=None, description="Prometheus metrics that gate the canary; a failure rolls it back."
    )
    scale_down_delay_seconds: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="How long canary pods live on after traffic leaves them (promotion or rollback), so that "
        "routers which apply weights asynchronously never send requests to pods that are gone.",
    )
    bake_seconds: int | None = Field(
        default=None,
        ge=10,
        le=604800,
        description="After promotion, keep the previous revision warm this long while the analysis goes on "
        "measuring the new stable; a breach moves traffic back to the previous revision at once (RolledBack, "
        "reason BakeFailed). Needs a weighted router (gatewayAPI, istio or nginx).",
    )
    bake_warm_replicas: int | None = Field(
        default=None, ge=1, le=100, description="Pods of the previous revision kept warm during the bake; default 1."
    )

    @property
    def warm_replicas(self) -> int:
        return self.bake_warm_replicas or 1

    webhooks: list[Webhook] = Field(
        default_factory=list, max_length=MAX_HOOKS, description="Gates the canary waits on (see Webhook.type)."
    )
    notifications: list[Notification] = Field(
        default_factory=list, max_length=MAX_HOOKS, description="Where the rollout's events are POSTed."
    )
