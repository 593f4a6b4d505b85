"""The Events a status change deserves: one specific, past-tense reason per kind of happening."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modeldeploy.core.api import ModelDeploymentSpec, ModelDeploymentStatus
from modeldeploy.core.status.conditions import (
    ANALYSIS_TEMPLATE_NOT_FOUND,
    APPLY_FAILED,
    DEGRADED,
    INVALID_SPEC,
    MODEL_FETCHED,
    MODEL_RESOLVED,
    PROGRESS_DEADLINE_EXCEEDED,
    find_condition,
)
from modeldeploy.core.status.observed import Observation


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


# Event reason for each Degraded reason: what happened, in the past tense.
DEGRADED_EVENT_REASONS = {
    INVALID_SPEC: "SpecRejected",
    APPLY_FAILED: "ApplyFailed",
    PROGRESS_DEADLINE_EXCEEDED: "RolloutStalled",
    "NameConflict": "NameConflictDetected",
    ANALYSIS_TEMPLATE_NOT_FOUND: "AnalysisTemplateNotFound",
}


def describe(revision: str, spec: ModelDeploymentSpec) -> str:
    return f"revision {revision} (model {spec.model.name} version {spec.model.concrete_version})"


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
                "Normal", "RolloutStarted", f"Started rolling out {describe(current.target_revision, spec)}{replacing}"
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
    events.extend(_source_events(previous, current))
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


def _source_events(previous: ModelDeploymentStatus, current: ModelDeploymentStatus) -> list[Event]:
    """A registry answer that changed, and a registry that stopped (or started again) answering."""
    events: list[Event] = []
    old, new = previous.source, current.source
    if new is not None and (old is None or (old.uri, old.version) != (new.uri, new.version)):
        was = f" (was version {old.version})" if old is not None and old.uri == new.uri else ""
        events.append(
            Event(
                "Normal",
                "ModelVersionResolved",
                f"{new.uri} resolves to version {new.version}{was}: {new.download_uri}",
            )
        )
    fetched = find_condition(current.conditions, MODEL_FETCHED)
    fetched_before = find_condition(previous.conditions, MODEL_FETCHED)
    was_failing = fetched_before is not None and (fetched_before.status, fetched_before.message) == (
        "False",
        fetched.message if fetched else None,
    )
    if fetched is not None and fetched.status == "False" and not was_failing:
        events.append(Event("Warning", "ModelFetchFailed", fetched.message))
    before = find_condition(previous.conditions, MODEL_RESOLVED)
    after = find_condition(current.conditions, MODEL_RESOLVED)
    if (
        after is not None
        and after.status == "False"
        and (before is None or before.status != "False" or before.reason != after.reason)
    ):
        events.append(Event("Warning", "ModelResolutionFailed", after.message))
    if after is not None and after.status == "True" and before is not None and before.status == "False":
        events.append(Event("Normal", "RegistryRecovered", f"The registry answers again (was {before.reason})"))
    return events
