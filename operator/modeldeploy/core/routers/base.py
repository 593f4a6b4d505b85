"""What every traffic router is: the interface, the resources it owns and the RBAC they need.

A router is a self-describing plug-in. Besides the behaviour the state machine and the renderer call
(`service_selector`, `canary_pods`, `render`, `read_weight`), it declares the kinds of object it writes
(`resources`) and the RBAC rules the operator needs for them (`rbac`, derived from `resources` unless a
router needs more). The Kubernetes adapter, the Kopf watches, the reconcile's child kinds and the RBAC
test all derive from these declarations (see `modeldeploy.core.children`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from modeldeploy.core.api import ModelDeploymentSpec
from modeldeploy.core.naming import STABLE, Owner, selector_labels

CHILD_VERBS = ("get", "list", "watch", "create", "patch", "update", "delete")
"""What the operator does with every kind of child: watch and list it, server-side apply it, prune it."""


@dataclass(frozen=True)
class Resource:
    """One kind of object the operator owns, as the API server serves it."""

    group: str
    """The API group; "" for the core group."""
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class PolicyRule:
    """One RBAC rule, as in a Role's `rules`."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    @classmethod
    def owning(cls, resource: Resource) -> PolicyRule:
        """Everything the operator does with a kind of child it owns."""
        return cls((resource.group,), (resource.plural,), CHILD_VERBS)

    def to_dict(self) -> dict[str, list[str]]:
        return {"apiGroups": list(self.api_groups), "resources": list(self.resources), "verbs": list(self.verbs)}


class Router(ABC):
    """How the canary's weight reaches users."""

    resources: ClassVar[tuple[Resource, ...]] = ()
    """The kinds of routing object this router writes: the adapter serves them, Kopf watches them, the
    reconcile lists them (and prunes them when the router changes)."""
    weight_from_pods: ClassVar[bool]
    """True when the pod ratio is the weight: then the canary's pod count follows the weight."""
    routes_to_canary_service: ClassVar[bool]
    """True when the routing objects send the canary's share to the `<name>-canary` Service. That Service then
    exists only while a canary runs or drains, so an idle model costs one ClusterIP."""

    @property
    def rbac(self) -> tuple[PolicyRule, ...]:
        """The RBAC rules the operator needs for this router; override to ask for more than `resources`."""
        return tuple(PolicyRule.owning(resource) for resource in self.resources)

    @abstractmethod
    def service_selector(self, owner: Owner) -> dict[str, str]:
        """What the main Service (named like the ModelDeployment) selects."""

    @abstractmethod
    def canary_pods(self, stable_replicas: int, weight: int, fixed: int | None) -> int:
        """How many canary pods a weight needs."""

    @abstractmethod
    def render(self, owner: Owner, spec: ModelDeploymentSpec, weight: int | None) -> list[dict[str, Any]]:
        """The routing objects that send `weight` percent to the canary; with None (no canary runs or drains),
        everything to the stable track, without naming the canary Service (which does not exist then)."""

    @abstractmethod
    def read_weight(self, owner: Owner, live: list[dict[str, Any]]) -> int | None:
        """The canary weight the live routing objects carry, or None if they are missing."""


class WeightedRouter(Router):
    """Routers that split traffic by weight between the stable and canary Services."""

    weight_from_pods: ClassVar[bool] = False
    routes_to_canary_service: ClassVar[bool] = True

    def service_selector(self, owner: Owner) -> dict[str, str]:
        return selector_labels(owner, STABLE)

    def canary_pods(self, stable_replicas: int, weight: int, fixed: int | None) -> int:
        """The fixed count, else enough pods for the canary's share, at least one (warmed before traffic)."""
        if fixed is not None:
            return fixed
        return max(1, math.ceil(stable_replicas * weight / 100))
