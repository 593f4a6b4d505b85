"""Conditions with metav1.Condition semantics: the types, the reasons, and the upsert rule."""

from __future__ import annotations

from datetime import datetime

from modeldeploy.core.api import Condition, ConditionStatus
from modeldeploy.core.status.clock import now_rfc3339

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
PAUSED = "Paused"
STALLED = "Stalled"
MODEL_RESOLVED = "ModelResolved"
MODEL_FETCHED = "ModelFetched"
BAKING = "Baking"

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
ANALYSIS_TEMPLATE_NOT_FOUND = "AnalysisTemplateNotFound"


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
