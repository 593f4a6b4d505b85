"""Traffic routers: how the canary's weight reaches users. One small class each, behind one interface.

Adding a router means a class here and an entry in ROUTERS; the rollout state machine does not change.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from modeldeploy.core.api import ModelDeploymentSpec
from modeldeploy.core.naming import STABLE, Owner, canary_name, child_metadata, selector_labels


class Router(Protocol):
    kinds: tuple[str, ...]
    """The kinds of routing object this router writes (for pruning when the router changes)."""
    weight_from_pods: bool
    """True when the pod ratio is the weight: then the canary's pod count follows the weight."""

    def service_selector(self, owner: Owner) -> dict[str, str]:
        """What the main Service (named like the ModelDeployment) selects."""
        ...

    def canary_pods(self, stable_replicas: int, weight: int, fixed: int | None) -> int:
        """How many canary pods a weight needs."""
        ...

    def render(self, owner: Owner, spec: ModelDeploymentSpec, weight: int) -> list[dict[str, Any]]:
        """The routing objects that send `weight` percent to the canary."""
        ...

    def read_weight(self, owner: Owner, live: list[dict[str, Any]]) -> int | None:
        """The canary weight the live routing objects carry, or None if they are missing."""
        ...


def _host(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.cluster.local"


class ReplicasRouter:
    """No mesh: one Service over both tracks; the canary gets weight w by having w% of the ready pods."""

    kinds: tuple[str, ...] = ()
    weight_from_pods: bool = True

    def service_selector(self, owner: Owner) -> dict[str, str]:
        return {"app.kubernetes.io/instance": owner.name}

    def canary_pods(self, stable_replicas: int, weight: int, fixed: int | None) -> int:
        if weight <= 0:
            return 0
        # Stable stays fully scaled, so the canary needs c pods with c / (stable + c) = w.
        return max(1, math.ceil(stable_replicas * weight / (100 - weight)))

    def render(self, owner: Owner, spec: ModelDeploymentSpec, weight: int) -> list[dict[str, Any]]:
        return []

    def read_weight(self, owner: Owner, live: list[dict[str, Any]]) -> int | None:
        return None


class WeightedRouter:
    """Routers that split traffic by weight between the stable and canary Services."""

    weight_from_pods: bool = False

    def service_selector(self, owner: Owner) -> dict[str, str]:
        return selector_labels(owner, STABLE)

    def canary_pods(self, stable_replicas: int, weight: int, fixed: int | None) -> int:
        """The fixed count, else enough pods for the canary's share, at least one (warmed before traffic)."""
        if fixed is not None:
            return fixed
        return max(1, math.ceil(stable_replicas * weight / 100))


class GatewayApiRouter(WeightedRouter):
    """A Gateway API HTTPRoute with weighted backendRefs to the stable and canary Services."""

    kinds: tuple[str, ...] = ("HTTPRoute",)

    def render(self, owner: Owner, spec: ModelDeploymentSpec, weight: int) -> list[dict[str, Any]]:
        config = spec.traffic.gateway_api
        assert config is not None
        port = spec.service.port
        route_spec: dict[str, Any] = {
            "parentRefs": [ref.model_dump(by_alias=True, exclude_none=True) for ref in config.parent_refs],
            "rules": [
                {
                    "backendRefs": [
                        {"name": owner.name, "port": port, "weight": 100 - weight},
                        {"name": canary_name(owner), "port": port, "weight": weight},
                    ]
                }
            ],
        }
        if config.hostnames:
            route_spec["hostnames"] = list(config.hostnames)
        return [
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": child_metadata(owner.name, owner, spec),
                "spec": route_spec,
            }
        ]

    def read_weight(self, owner: Owner, live: list[dict[str, Any]]) -> int | None:
        for obj in live:
            if obj.get("kind") == "HTTPRoute" and obj["metadata"]["name"] == owner.name:
                for rule in obj.get("spec", {}).get("rules", []):
                    for ref in rule.get("backendRefs", []):
                        if ref.get("name") == canary_name(owner):
                            return int(ref.get("weight", 1))
        return None


class IstioRouter(WeightedRouter):
    """An Istio VirtualService splitting between two Services, one per track."""

    kinds: tuple[str, ...] = ("VirtualService",)

    def render(self, owner: Owner, spec: ModelDeploymentSpec, weight: int) -> list[dict[str, Any]]:
        config = spec.traffic.istio
        port = {"number": spec.service.port}
        vs_spec: dict[str, Any] = {
            "hosts": list(config.hosts) if config and config.hosts else [_host(owner.name, owner.namespace)],
            "http": [
                {
                    "name": "modeldeploy",
                    "route": [
                        {
                            "destination": {"host": _host(owner.name, owner.namespace), "port": port},
                            "weight": 100 - weight,
                        },
                        {
                            "destination": {"host": _host(canary_name(owner), owner.namespace), "port": port},
                            "weight": weight,
                        },
                    ],
                }
            ],
        }
        if config and config.gateways:
            vs_spec["gateways"] = list(config.gateways)
        return [
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": child_metadata(owner.name, owner, spec),
                "spec": vs_spec,
            }
        ]

    def read_weight(self, owner: Owner, live: list[dict[str, Any]]) -> int | None:
        canary_host = _host(canary_name(owner), owner.namespace)
        for obj in live:
            if obj.get("kind") == "VirtualService" and obj["metadata"]["name"] == owner.name:
                for route in obj.get("spec", {}).get("http", []):
                    for destination in route.get("route", []):
                        if destination.get("destination", {}).get("host") == canary_host:
                            return int(destination.get("weight", 0))
        return None


NGINX_CANARY = "nginx.ingress.kubernetes.io/canary"
NGINX_CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


class NginxRouter(WeightedRouter):
    """ingress-nginx: the main Ingress to stable, a canary Ingress to the canary with `canary-weight`."""

    kinds: tuple[str, ...] = ("Ingress",)

    def render(self, owner: Owner, spec: ModelDeploymentSpec, weight: int) -> list[dict[str, Any]]:
        config = spec.traffic.nginx
        assert config is not None

        def ingress(name: str, service: str, annotations: dict[str, str]) -> dict[str, Any]:
            metadata = child_metadata(name, owner, spec)
            if annotations:
                metadata["annotations"] = annotations
            return {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": metadata,
                "spec": {
                    "ingressClassName": config.ingress_class_name,
                    "rules": [
                        {
                            "host": config.host,
                            "http": {
                                "paths": [
                                    {
                                        "path": config.path,
                                        "pathType": "Prefix",
                                        "backend": {
                                            "service": {"name": service, "port": {"number": spec.service.port}}
                                        },
                                    }
                                ]
                            },
                        }
                    ],
                },
            }

        return [
            ingress(owner.name, owner.name, {}),
            ingress(canary_name(owner), canary_name(owner), {NGINX_CANARY: "true", NGINX_CANARY_WEIGHT: str(weight)}),
        ]

    def read_weight(self, owner: Owner, live: list[dict[str, Any]]) -> int | None:
        for obj in live:
            if obj.get("kind") == "Ingress" and obj["metadata"]["name"] == canary_name(owner):
                value = (obj["metadata"].get("annotations") or {}).get(NGINX_CANARY_WEIGHT)
                return int(value) if value is not None else None
        return None


ROUTERS: dict[str, Router] = {
    "replicas": ReplicasRouter(),
    "gatewayAPI": GatewayApiRouter(),
    "istio": IstioRouter(),
    "nginx": NginxRouter(),
}
ROUTING_KINDS = tuple(sorted({kind for router in ROUTERS.values() for kind in router.kinds}))
