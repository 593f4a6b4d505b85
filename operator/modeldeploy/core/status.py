"""Status maths: conditions with metav1.Condition semantics, phase, and the Events a change deserves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from modeldeploy.core.api import (
    HISTORY_LIMIT,
    Condition,
    ConditionStatus,
    HistoryEntry,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Phase,
    RevisionStatus,
    ServedModel,
)
from modeldeploy.core.naming import REVISION_LABEL

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
PAUSED = "Paused"
STALLED = "Stalled"

# Reasons
INVALID_SPEC = "InvalidSpec"
APPLY_FAILED = "ApplyFailed"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
ROLLOUT_IN_PROGRESS = "RolloutInProgress"
ROLLOUT_COMPLETE = "RolloutComplete"
REVISION_AVAILABLE = "RevisionAvailable"
SCALED_TO_ZERO = "ScaledToZero"
AS_EXPECTED = "AsExpected"
CANARY_PROGRESSING = "CanaryProgressing"
CANARY_PAUSED = "CanaryPaused"
PROMOTING = "Promoting"
ROLLED_BACK = "RolledBack"

# Event reason for each Degraded reason: what happened, in the past tense.
DEGRADED_EVENT_REASONS = {
    INVALID_SPEC: "SpecRejected",
    APPLY_FAILED: "ApplyFailed",
    PROGRESS_DEADLINE_EXCEEDED: "RolloutStalled",
    "NameConflict": "NameConflictDetected",
}


def now_rfc3339(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """Upserts by type; lastTransitionTime moves only when the status changes (meta.SetStatusCondition)."""
    existing = next((c for c in conditions if c.type == type_), None)
    transition = existing.last_transition_time if existing and existing.status == status else now_rfc3339(now)
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=transition,
    )
    if existing is None:
        return [*conditions, updated]
    return [updated if c.type == type_ else c for c in conditions]


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


@dataclass(frozen=True)
class DeploymentState:
    """What the serving Deployment reports about itself."""

    generation: int
    observed_generation: int
    revision: str | None
    spec_replicas: int
    replicas: int
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    available: bool
    deadline_exceeded_message: str | None

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> DeploymentState:
        metadata = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        available = (conditions.get("Available") or {}).get("status") == "True"
        progressing = conditions.get("Progressing") or {}
        stalled = progressing.get("status") == "False" and progressing.get("reason") == PROGRESS_DEADLINE_EXCEEDED
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        return cls(
            generation=int(metadata.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            revision=template_labels.get(REVISION_LABEL),
            spec_replicas=int(spec.get("replicas", 1)),
            replicas=int(status.get("replicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            available_replicas=int(status.get("availableReplicas") or 0),
            available=available,
            deadline_exceeded_message=(progressing.get("message") or "") if stalled else None,
        )

    def rolled_out(self, revision: str, desired_replicas: int | None) -> bool:
        """The controller has seen the latest spec and every pod runs `revision` and is available."""
        want = self.spec_replicas if desired_replicas is None else desired_replicas
        return (
            self.revision == revision
            and self.spec_replicas == want
            and self.observed_generation >= self.generation
            and self.updated_replicas == want
            and self.replicas == want
            and self.available_replicas == want
            and self.available
        )


@dataclass(frozen=True)
class Observation:
    """Everything one reconcile learned: the spec's fate and the cluster's state."""

    generation: int
    spec: ModelDeploymentSpec | None
    revision: str | None
    deployment: DeploymentState | None
    # Set when the spec cannot be served, or a child could not be written.
    failure_reason: str | None = None
    failure_message: str | None = None
    paused: bool = False


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def _model_of(spec: ModelDeploymentSpec) -> ServedModel:
    return ServedModel(name=spec.model.name, version=spec.model.version, uri=spec.model.uri)


def _describe(revision: str, spec: ModelDeploymentSpec) -> str:
    return f"revision {revision} (model {spec.model.name} version {spec.model.version})"


def _deployed(current: ModelDeploymentStatus, stable: RevisionStatus, now: datetime) -> list[HistoryEntry]:
    """A revision that reached stable without a canary (the first one) still belongs in the history."""
    stamp = now_rfc3339(now)
    entry = HistoryEntry(
        revision=stable.revision, model=stable.model, outcome="Deployed", started_at=stamp, finished_at=stamp
    )
    return [*current.history, entry][-HISTORY_LIMIT:]


def _rollout_conditions(status: ModelDeploymentStatus, obs: Observation) -> tuple[Phase, str, str, bool] | None:
    """(phase, reason, message, paused) while a canary runs or a rollback holds; None otherwise."""
    stable = status.stable
    serving = f"; stable revision {stable.revision} (version {stable.model.version}) serving" if stable else ""
    canary = status.canary
    if canary is not None:
        version = canary.model.version
        if canary.phase == "Promoting":
            d = obs.deployment
            progress = f"{d.updated_replicas}/{d.spec_replicas} stable pods updated" if d else "starting"
            return (
                "Progressing",
                PROMOTING,
                f"promoting revision {canary.revision} (version {version}): {progress}",
                False,
            )
        step = f"step {min(canary.step_index + 1, canary.step_count)}/{canary.step_count}"
        detail = (
            f"canary revision {canary.revision} (version {version}) at {step}, weight {canary.weight}% "
            f"(actual {canary.actual_weight}%), {canary.ready_replicas}/{canary.replicas} canary pods ready{serving}"
        )
        analysis = status.analysis
        if analysis is not None and analysis.last_result not in (None, "Successful"):
            bad = "; ".join(
                f"{m.name}: {m.measurements[-1].message}"
                for m in analysis.metrics
                if m.measurements and m.measurements[-1].result == analysis.last_result
            )
            detail = f"{detail}; analysis {analysis.last_result}: {bad}"
            reason = f"Analysis{analysis.last_result}"
        else:
            reason = CANARY_PROGRESSING
        if canary.phase == "Paused":
            why = "paused by hand" if obs.paused else "paused until promoted"
            return "Paused", CANARY_PAUSED, f"{detail}; {why}", True
        return "Progressing", reason, detail, False
    rollback = status.last_rollback
    if status.rejected_revision is not None and rollback is not None and rollback.revision == status.rejected_revision:
        verb = "aborted" if rollback.reason == "Aborted" else "rolled back"
        message = (
            f"revision {rollback.revision} (version {rollback.model.version}) was {verb}: {rollback.message}"
            f"{serving}; change the spec or retry"
        )
        return "Degraded", ROLLED_BACK, message, False
    return None


def compute_status(
    previous: ModelDeploymentStatus, current: ModelDeploymentStatus, obs: Observation, now: datetime
) -> tuple[ModelDeploymentStatus, list[Event]]:
    """Conditions and phase for `current` (the stored status, updated by the rollout), and the Events due."""
    conditions = list(previous.conditions)
    gen = obs.generation

    def put(type_: str, status: ConditionStatus, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, status, reason, message, gen, now)

    stable = current.stable
    target = current.target_revision
    history = current.history
    phase: Phase
    paused = False
    d = obs.deployment
    serving = f"; still serving revision {stable.revision}" if stable else ""

    if obs.failure_reason is not None:
        message = obs.failure_message or ""
        put(READY, "False", obs.failure_reason, message + serving)
        put(PROGRESSING, "False", obs.failure_reason, message)
        put(DEGRADED, "True", obs.failure_reason, message)
        phase = "Degraded"
    elif (rollout := _rollout_conditions(current, obs)) is not None:
        assert obs.revision is not None
        target = obs.revision
        phase, reason, message, paused = rollout
        put(READY, "False", reason, message)
        if reason == ROLLED_BACK:
            put(PROGRESSING, "False", reason, message)
            put(DEGRADED, "True", reason, message)
        else:
            put(PROGRESSING, "True", reason, message)
            put(DEGRADED, "False", AS_EXPECTED, "")
    else:
        assert obs.spec is not None
        assert obs.revision is not None
        spec, revision = obs.spec, obs.revision
        target = revision
        want = spec.desired_replicas
        if d is not None and d.rolled_out(revision, want):
            stable = RevisionStatus(revision=revision, model=_model_of(spec))
            newly_stable = current.stable is None or current.stable.revision != revision
            if newly_stable and previous.canary is None:  # a promoted canary has its own history entry
                history = _deployed(current, stable, now)
            zero = d.spec_replicas == 0
            ready_reason = SCALED_TO_ZERO if zero else REVISION_AVAILABLE
            put(
                READY,
                "True",
                ready_reason,
                f"{_describe(revision, spec)}: {d.available_replicas}/{d.spec_replicas} replicas available",
            )
            put(PROGRESSING, "False", ROLLOUT_COMPLETE, f"{_describe(revision, spec)} is fully rolled out")
            put(DEGRADED, "False", AS_EXPECTED, "")
            phase = "ScaledToZero" if zero else "Ready"
        elif d is not None and d.deadline_exceeded_message is not None:
            message = f"{_describe(revision, spec)} did not become available in time: {d.deadline_exceeded_message}"
            put(READY, "False", PROGRESS_DEADLINE_EXCEEDED, message + serving)
            put(PROGRESSING, "False", PROGRESS_DEADLINE_EXCEEDED, message)
            put(DEGRADED, "True", PROGRESS_DEADLINE_EXCEEDED, message)
            phase = "Degraded"
        else:
            if d is None:
                detail = "waiting for the Deployment"
            else:
                goal = d.spec_replicas if want is None else want
                detail = f"{d.updated_replicas}/{goal} pods updated, {d.available_replicas}/{goal} available"
            message = f"rolling out {_describe(revision, spec)}: {detail}"
            put(READY, "False", ROLLOUT_IN_PROGRESS, message + serving)
            put(PROGRESSING, "True", ROLLOUT_IN_PROGRESS, message)
            put(DEGRADED, "False", AS_EXPECTED, "")
            phase = "Progressing"
    if paused:
        put(PAUSED, "True", "PausedByHand" if obs.paused else "PauseStep", "the canary waits; promote or resume it")
    else:
        put(PAUSED, "False", "NotPaused", "")
    # kstatus (Flux) reads Stalled=True as Failed; Ready=False alone would read as InProgress forever.
    degraded = find_condition(conditions, DEGRADED)
    assert degraded is not None
    put(STALLED, degraded.status, degraded.reason, degraded.message)

    status = current.model_copy(
        update={
            "observed_generation": gen,
            "phase": phase,
            "conditions": conditions,
            "stable": stable,
            "target_revision": target,
            "history": history,
            "replicas": d.replicas if d else current.replicas,
            "ready_replicas": d.ready_replicas if d else current.ready_replicas,
            "updated_replicas": d.updated_replicas if d else current.updated_replicas,
        }
    )
    return status, events_between(previous, status, obs)


def events_between(previous: ModelDeploymentStatus, current: ModelDeploymentStatus, obs: Observation) -> list[Event]:
    """The Events that a status change deserves; nothing when nothing happened."""
    events: list[Event] = []
    spec = obs.spec
    # A canary reports its own start and end (CanaryStarted, Promoted); these are for direct rollouts.
    direct = current.canary is None and previous.canary is None
    if (
        direct
        and spec is not None
        and current.target_revision
        and current.target_revision != previous.target_revision
        and current.rejected_revision != current.target_revision
    ):
        replacing = f", replacing revision {previous.target_revision}" if previous.target_revision else ""
        events.append(
            Event(
                "Normal", "RolloutStarted", f"Started rolling out {_describe(current.target_revision, spec)}{replacing}"
            )
        )
    if direct and current.stable and (previous.stable is None or previous.stable.revision != current.stable.revision):
        model = current.stable.model
        events.append(
            Event(
                "Normal",
                "RolloutCompleted",
                f"Revision {current.stable.revision} (model {model.name} version {model.version}) is now stable",
            )
        )
    was = find_condition(previous.conditions, DEGRADED)
    now = find_condition(current.conditions, DEGRADED)
    newly = (
        now is not None and now.status == "True" and (was is None or was.status != "True" or was.reason != now.reason)
    )
    # A rollback has its own Event from the state machine.
    if newly and now is not None and now.reason in DEGRADED_EVENT_REASONS:
        events.append(Event("Warning", DEGRADED_EVENT_REASONS[now.reason], now.message))
    if was is not None and was.status == "True" and now is not None and now.status == "False":
        events.append(Event("Normal", "Recovered", f"No longer degraded (was {was.reason})"))
    return events


def _merge_diff(previous: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """An RFC 7386 merge patch turning `previous` into `wanted`: changed keys, nulls for removed ones."""
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        old = previous.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            nested = _merge_diff(old, value)
            if nested:
                patch[key] = nested
        elif key not in previous or old != value:
            patch[key] = value
    for key in previous.keys() - wanted.keys():
        patch[key] = None
    return patch


def status_patch(previous: dict[str, Any], current: ModelDeploymentStatus) -> dict[str, Any] | None:
    """A merge patch from the stored status to `current`, or None when nothing changed."""
    return _merge_diff(previous, current.model_dump(by_alias=True, exclude_none=True, mode="json")) or None
