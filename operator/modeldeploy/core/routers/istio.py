"""The `istio` router: an Istio VirtualService splitting between two Services, one per track."""

from __future__ import annotations

from typing import Any, ClassVar

from modeldeploy.core.api import ModelDeploymentSpec
from modeldeploy.core.naming import Owner, canary_name, child_metadata
from modeldeploy.core.routers.base import Resource, WeightedRouter

VIRTUALSERVICE = Resource("networking.istio.io", "v1", "virtualservices", "VirtualService")


def _host(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.cluster.local"


class IstioRouter(WeightedRouter):
    """An Istio VirtualService splitting between two Services, one per track."""

    resources: ClassVar[tuple[Resource, ...]] = (VIRTUALSERVICE,)

    def render(self, owner: Owner, spec: ModelDeploymentSpec, weight: int | None) -> list[dict[str, Any]]:
        config = spec.traffic.istio
        port = {"number": spec.service.port}
        route = [
            {"destination": {"host": _host(owner.name, owner.namespace), "port": port}, "weight": 100 - (weight or 0)}
        ]
        if weight is not None:
            route.append(
                {"destination": {"host": _host(canary_name(owner), owner.namespace), "port": port}, "weight": weight}
            )
        vs_spec: dict[str, Any] = {
            "hosts": list(config.hosts) if config and config.hosts else [_host(owner.name, owner.namespace)],
            "http": [{"name": "modeldeploy", "route": route}],
        }
        if config and config.gateways:
            vs_spec["gateways"] = list(config.gateways)
        return [
            {
                "apiVersion": VIRTUALSERVICE.api_version,
                "kind": VIRTUALSERVICE.kind,
                "metadata": child_metadata(owner.name, owner, spec),
                "spec": vs_spec,
            }
        ]

    def read_weight(self, owner: Owner, live: list[dict[str, Any]]) -> int | None:
        canary_host = _host(canary_name(owner), owner.namespace)
        for obj in live:
            if obj.get("kind") == VIRTUALSERVICE.kind and obj["metadata"]["name"] == owner.name:
                for route in obj.get("spec", {}).get("http", []):
                    for destination in route.get("route", []):
                        if destination.get("destination", {}).get("host") == canary_host:
                            return int(destination.get("weight", 0))
        return None
