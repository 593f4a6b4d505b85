"""Names, labels and owner references shared by every child object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy.core import api
from modeldeploy.core.api import ModelDeploymentSpec

MANAGED_BY = "modeldeploy"
FIELD_MANAGER = "modeldeploy"
TRACK_LABEL = f"{api.GROUP}/track"
REVISION_LABEL = f"{api.GROUP}/revision"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
STABLE = "stable"
CANARY = "canary"
PREVIOUS = "previous"
"""The track of the previous revision, kept warm through a promotion and its bake."""
# Manual controls live in annotations: GitOps tools leave annotations they did not write alone.
PAUSED_ANNOTATION = f"{api.GROUP}/paused"
ACTION_ANNOTATION = f"{api.GROUP}/action"


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns the children."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def canary_name(owner: Owner) -> str:
    return f"{owner.name}-{CANARY}"


def previous_name(owner: Owner) -> str:
    return f"{owner.name}-{PREVIOUS}"


def selector_labels(owner: Owner, track: str) -> dict[str, str]:
    return {INSTANCE_LABEL: owner.name, TRACK_LABEL: track}


def common_labels(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.model.name,
        INSTANCE_LABEL: owner.name,
        "app.kubernetes.io/version": spec.model.concrete_version,
        "app.kubernetes.io/component": "model-server",
        MANAGED_BY_LABEL: MANAGED_BY,
    }


def child_metadata(
    name: str, owner: Owner, spec: ModelDeploymentSpec, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**common_labels(owner, spec), **(labels or {})},
        "ownerReferences": [owner.reference()],
    }
