"""What one reconcile observed: the serving Deployment's own report, and the spec's fate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy.core.api import ModelDeploymentSpec
from modeldeploy.core.fetch import FetchReport
from modeldeploy.core.naming import REVISION_LABEL
from modeldeploy.core.status.conditions import PROGRESS_DEADLINE_EXCEEDED


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
class SourceReport:
    """Whether a registry source is resolved, for the ModelResolved condition: a reason and a message."""

    resolved: bool
    reason: str
    message: str


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
    # Only for registry (models:/) sources.
    source: SourceReport | None = None
    # What the target revision's pods reported of their model fetch (read only while it matters), and the
    # artifact digest known for the target revision (the spec's pin, that report, or an earlier one).
    fetch: FetchReport | None = None
    digest: str | None = None
