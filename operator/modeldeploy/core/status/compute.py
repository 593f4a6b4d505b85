"""Conditions and phase from what the rollout decided and what the cluster shows."""

from __future__ import annotations

from datetime import datetime

from modeldeploy.core.api import (
    HISTORY_LIMIT,
    Condition,
    ConditionStatus,
    HistoryEntry,
    ModelDeploymentStatus,
    Phase,
    RevisionStatus,
)
from modeldeploy.core.fetch import needs_fetch
from modeldeploy.core.source import served_model
from modeldeploy.core.status.clock import now_rfc3339
from modeldeploy.core.status.conditions import (
    AS_EXPECTED,
    BAKING,
    CANARY_PAUSED,
    CANARY_PROGRESSING,
    DEGRADED,
    MODEL_FETCHED,
    MODEL_RESOLVED,
    PAUSED,
    PROGRESS_DEADLINE_EXCEEDED,
    PROGRESSING,
    PROMOTING,
    READY,
    REVISION_AVAILABLE,
    ROLLED_BACK,
    ROLLOUT_COMPLETE,
    ROLLOUT_IN_PROGRESS,
    SCALED_TO_ZERO,
    STALLED,
    find_condition,
    set_condition,
)
from modeldeploy.core.status.events import Event, describe, events_between
from modeldeploy.core.status.observed import Observation


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
            stable = RevisionStatus(revision=revision, model=served_model(spec, current.source, obs.digest))
            newly_stable = current.stable is None or current.stable.revision != revision
            if newly_stable and previous.canary is None:  # a promoted canary has its own history entry
                history = _deployed(current, stable, now)
            zero = d.spec_replicas == 0
            ready_reason = SCALED_TO_ZERO if zero else REVISION_AVAILABLE
            put(
                READY,
                "True",
                ready_reason,
                f"{describe(revision, spec)}: {d.available_replicas}/{d.spec_replicas} replicas available",
            )
            put(PROGRESSING, "False", ROLLOUT_COMPLETE, f"{describe(revision, spec)} is fully rolled out")
            put(DEGRADED, "False", AS_EXPECTED, "")
            phase = "ScaledToZero" if zero else "Ready"
        elif d is not None and d.deadline_exceeded_message is not None:
            message = f"{describe(revision, spec)} did not become available in time: {d.deadline_exceeded_message}"
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
            message = f"rolling out {describe(revision, spec)}: {detail}"
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
    conditions = _bake_condition(conditions, current, gen, now)
    conditions = _fetch_condition(conditions, obs, gen, now)
    if obs.source is not None:
        put(MODEL_RESOLVED, "True" if obs.source.resolved else "False", obs.source.reason, obs.source.message)
    else:
        conditions = [c for c in conditions if c.type != MODEL_RESOLVED]

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


def _bake_condition(
    conditions: list[Condition], status: ModelDeploymentStatus, gen: int, now: datetime
) -> list[Condition]:
    """Baking: True while a promoted revision bakes, with when it ends (the CLI shows the time left); False while a
    failed bake reverts; absent otherwise."""
    bake = status.bake
    if bake is None:
        return [c for c in conditions if c.type != BAKING]
    warm = f"revision {bake.previous.revision} kept warm on {bake.ready_warm_replicas}/{bake.warm_replicas} pods"
    if bake.phase == "Baking":
        message = f"revision {bake.revision} bakes until {bake.ends_at}; {warm}"
        return set_condition(conditions, BAKING, "True", "BakeInProgress", message, gen, now)
    message = (
        f"revision {bake.revision} failed its bake: {bake.weight}% of traffic on revision {bake.previous.revision} "
        f"({bake.ready_warm_replicas}/{bake.warm_replicas} warm pods ready) while the stable track rolls back to it"
    )
    return set_condition(conditions, BAKING, "False", "BakeFailed", message, gen, now)


def _fetch_condition(conditions: list[Condition], obs: Observation, gen: int, now: datetime) -> list[Condition]:
    """ModelFetched: what the target revision's pods said of their fetch; kept as is when nothing new was read."""
    if obs.spec is None or obs.revision is None:
        return conditions
    if not needs_fetch(obs.spec.model.uri):
        return [c for c in conditions if c.type != MODEL_FETCHED]
    if obs.fetch is not None and obs.fetch.failure is not None:
        message = f"revision {obs.revision}: the model fetch failed: {obs.fetch.failure}"
        return set_condition(conditions, MODEL_FETCHED, "False", "FetchFailed", message, gen, now)
    if obs.digest is not None:
        return set_condition(
            conditions, MODEL_FETCHED, "True", "Fetched", f"revision {obs.revision}: {obs.digest}", gen, now
        )
    return conditions
