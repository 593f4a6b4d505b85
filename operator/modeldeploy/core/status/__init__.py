"""Status maths, by concept: the clock, what was observed, conditions, the Events due, and the merge patch."""

from modeldeploy.core.status.clock import now_rfc3339, parse_time
from modeldeploy.core.status.compute import compute_status
from modeldeploy.core.status.conditions import (
    ANALYSIS_TEMPLATE_NOT_FOUND,
    APPLY_FAILED,
    DEGRADED,
    INVALID_SPEC,
    MODEL_RESOLVED,
    PAUSED,
    PROGRESSING,
    READY,
    STALLED,
    find_condition,
    set_condition,
)
from modeldeploy.core.status.events import Event, events_between
from modeldeploy.core.status.observed import DeploymentState, Observation, SourceReport
from modeldeploy.core.status.patch import status_patch

__all__ = [
    "ANALYSIS_TEMPLATE_NOT_FOUND",
    "APPLY_FAILED",
    "DEGRADED",
    "INVALID_SPEC",
    "MODEL_RESOLVED",
    "PAUSED",
    "PROGRESSING",
    "READY",
    "STALLED",
    "DeploymentState",
    "Event",
    "Observation",
    "SourceReport",
    "compute_status",
    "events_between",
    "find_condition",
    "now_rfc3339",
    "parse_time",
    "set_condition",
    "status_patch",
]
