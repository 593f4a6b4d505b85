"""Every kind of child object the operator owns, in one registry.

The serving workload (Deployment, Service, HorizontalPodAutoscaler) plus whatever the routers in
`modeldeploy.core.routers.ROUTERS` declare. The Kubernetes adapter (`kube.RESOURCES`), the Kopf child watches
(`handlers.CHILD_RESOURCES`), the reconcile's child kinds (`reconcile.CHILD_KINDS`) and the RBAC test derive from
it, so a new router's kinds are served, watched, listed, pruned and checked against the chart without touching
any of them.
"""

from __future__ import annotations

from modeldeploy.core.api.traffic import RouterName
from modeldeploy.core.routers import ROUTERS, PolicyRule, Resource

DEPLOYMENT = Resource("apps", "v1", "deployments", "Deployment")
SERVICE = Resource("", "v1", "services", "Service")
HORIZONTAL_POD_AUTOSCALER = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")

WORKLOAD_RESOURCES: tuple[Resource, ...] = (DEPLOYMENT, SERVICE, HORIZONTAL_POD_AUTOSCALER)
"""What every ModelDeployment may own, whatever its router."""

ROUTING_RESOURCES: tuple[Resource, ...] = tuple(
    sorted({resource for router in ROUTERS.values() for resource in router.resources}, key=lambda r: r.kind)
)
"""What the routers write, each kind once (two routers may share one)."""

CHILD_RESOURCES: tuple[Resource, ...] = (*WORKLOAD_RESOURCES, *ROUTING_RESOURCES)
"""Every kind of child, in the order the reconcile lists them."""

BY_KIND: dict[str, Resource] = {resource.kind: resource for resource in CHILD_RESOURCES}
if len(BY_KIND) != len(CHILD_RESOURCES):
    raise ValueError(f"two child resources share a kind: {CHILD_RESOURCES}")

CHILD_RULES: tuple[PolicyRule, ...] = (
    *(PolicyRule.owning(resource) for resource in WORKLOAD_RESOURCES),
    *dict.fromkeys(rule for router in ROUTERS.values() for rule in router.rbac),
)
"""The RBAC rules the operator needs for its children; the chart and the kustomize base must grant them."""


def routers_writing(kind: str) -> list[RouterName]:
    """The routers that write objects of `kind` (none for the workload kinds)."""
    return [name for name, router in ROUTERS.items() if any(r.kind == kind for r in router.resources)]
