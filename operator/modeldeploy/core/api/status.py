"""The ModelDeployment status: what serves, the canary in progress, analysis, history and conditions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modeldeploy.core.api.base import ApiModel, Time
from modeldeploy.core.api.hooks import MAX_HOOKS, GateStatus

ConditionStatus = Literal["True", "False", "Unknown"]
Phase = Literal["Pending", "Progressing", "Paused", "Ready", "ScaledToZero", "Degraded"]
Outcome = Literal["Deployed", "Promoted", "RolledBack", "Aborted", "Superseded"]
MeasurementResult = Literal["Successful", "Failed", "NoData", "Error"]
ActionName = Literal["promote", "promote-full", "abort", "retry"]
HISTORY_LIMIT = 10
MEASUREMENTS_KEPT = 5


class Condition(ApiModel):
    """metav1.Condition."""

    type: str = Field(max_length=316)
    status: ConditionStatus
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    reason: str = Field(min_length=1, max_length=1024)
    message: str = Field(default="", max_length=32768)


class ServedModel(ApiModel):
    name: str
    version: str
    uri: str = Field(description="What the pods fetch: for a models:/ source, the registry's download URI.")
    source: str | None = Field(default=None, description="The models:/ URI it was resolved from.")
    run_id: str | None = Field(default=None, description="The MLflow run that produced it.")
    digest: str | None = Field(
        default=None, description="sha256 of the artifact: the spec's pin, or what the pods' fetch step reported."
    )
    image: str | None = Field(default=None, description="The serving container's image.")


class SourceStatus(ApiModel):
    """A registry answer pinned for serving: the pods get this version, never the moving alias."""

    uri: str = Field(description="The spec's models:/ URI.")
    version: str
    download_uri: str
    run_id: str | None = None
    resolved_at: Time = Field(description="When the registry last gave a different answer.")


class RevisionStatus(ApiModel):
    revision: str = Field(description="Hash of everything that shapes the pods.")
    model: ServedModel


class Measurement(ApiModel):
    result: MeasurementResult
    value: float | None = None
    stable_value: float | None = None
    bound: str = Field(description="The bound the value was held to, e.g. '>= 0.99' or '<= stable + 0.005'.")
    message: str = ""
    at: Time


class MetricMeasurements(ApiModel):
    name: str
    measurements: list[Measurement] = Field(
        default_factory=list, max_length=MEASUREMENTS_KEPT, description="The last few, newest last."
    )


class AnalysisStatus(ApiModel):
    """Metric analysis of the current (or last) canary."""

    revision: str = Field(description="The canary revision measured.")
    last_result: MeasurementResult | None = Field(default=None, description="The last tick's overall result.")
    failures: int = 0
    consecutive_successes: int = 0
    consecutive_no_data: int = 0
    consecutive_errors: int = 0
    next_measurement_at: Time | None = None
    time_to_rollback_seconds: float = Field(
        description="The contract: a breach visible in Prometheus rolls back within interval x (failureLimit + 1)."
    )
    metrics: list[MetricMeasurements] = Field(default_factory=list)
    templates: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="The analysis templates the last measurement used, e.g. 'AnalysisTemplate/std-gates@generation "
        "3'; a template changed since applies from the next measurement on (Event AnalysisTemplateChanged).",
    )


class CanaryStatus(ApiModel):
    """The canary in progress. The operator resumes from here after a restart."""

    revision: str
    model: ServedModel
    phase: Literal["Progressing", "Paused", "Promoting"] = Field(
        description="Progressing through the steps, Paused (a pause step without duration, or paused by hand), or "
        "Promoting (the stable track rolls out the canary's revision)."
    )
    step_index: int = Field(description="Index of the current step; equal to stepCount once all steps are done.")
    step_count: int
    step_started_at: Time
    started_at: Time
    desired_weight: int = Field(description="Weight the current step asks for.")
    weight: int = Field(description="Weight the operator has given the canary so far.")
    actual_weight: int = Field(description="Share of traffic the canary can get now, from the router or the pods.")
    replicas: int = Field(description="Canary pods wanted.")
    ready_replicas: int
    not_ready_since: Time | None = Field(default=None, description="Since when the canary lacks ready pods.")


class HistoryEntry(ApiModel):
    revision: str
    model: ServedModel
    outcome: Outcome
    started_at: Time
    finished_at: Time
    reason: str | None = None
    message: str | None = None


class RollbackStatus(ApiModel):
    revision: str
    model: ServedModel
    reason: str
    message: str
    at: Time


class BakeStatus(ApiModel):
    """The promoted revision under watch, with the previous revision kept warm. The operator resumes from here
    after a restart."""

    revision: str = Field(description="The promoted revision on bake.")
    model: ServedModel
    previous: RevisionStatus = Field(description="The revision kept warm, to move traffic back to on a breach.")
    phase: Literal["Baking", "Reverting"] = Field(
        description="Baking (the analysis goes on measuring the new stable), or Reverting (a breach: traffic on "
        "the warm previous revision while the stable track rolls back to it)."
    )
    started_at: Time
    ends_at: Time = Field(description="When the bake passes and the warm pods go.")
    warm_replicas: int = Field(description="Warm pods of the previous revision wanted.")
    ready_warm_replicas: int = 0
    weight: int = Field(default=0, description="Share of traffic on the warm previous revision.")
    scale_down_at: Time | None = Field(
        default=None, description="Reverted: when the warm pods, no longer receiving traffic, are removed."
    )


class ActionStatus(ApiModel):
    action: Literal[ActionName, "invalid"] = Field(description="The action handled; invalid for an unusable one.")
    id: str
    at: Time
    result: str
    by: str | None = Field(default=None, description="Who asked, as the client said (the kubectl plugin sends it).")


class ModelDeploymentStatus(ApiModel):
    observed_generation: int | None = Field(default=None, description="The generation this status describes.")
    phase: Phase | None = Field(default=None, description="Human summary; conditions carry the detail.")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    stable: RevisionStatus | None = Field(default=None, description="The revision fully rolled out and serving.")
    target_revision: str | None = Field(default=None, description="The revision the spec asks for.")
    source: SourceStatus | None = Field(default=None, description="The registry answer a models:/ source is pinned to.")
    replicas: int | None = Field(default=None, description="Pods of the stable Deployment.")
    ready_replicas: int | None = Field(default=None, description="Stable pods that are ready.")
    updated_replicas: int | None = Field(default=None, description="Stable pods on the stable Deployment's template.")
    canary: CanaryStatus | None = Field(default=None, description="The canary in progress, if any.")
    rejected_revision: str | None = Field(
        default=None, description="A rolled-back revision; not tried again until the spec changes or a retry."
    )
    last_rollback: RollbackStatus | None = None
    canary_scale_down_at: Time | None = Field(
        default=None, description="When the canary Deployment, no longer receiving traffic, is removed."
    )
    last_action: ActionStatus | None = Field(default=None, description="The last manual action handled.")
    bake: BakeStatus | None = Field(default=None, description="The bake after a promotion, while it lasts.")
    analysis: AnalysisStatus | None = Field(default=None, description="Metric analysis of the current or last canary.")
    history: list[HistoryEntry] = Field(
        default_factory=list, max_length=HISTORY_LIMIT, description="Recent canaries, newest last."
    )
    webhooks: list[GateStatus] = Field(
        default_factory=list, max_length=MAX_HOOKS, description="The last call of each gate webhook, while it matters."
    )
