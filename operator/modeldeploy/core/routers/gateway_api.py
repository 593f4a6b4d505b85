"""The `gatewayAPI` router: a Gateway API HTTPRoute with weighted backendRefs to the two Services."""

from __future__ import annotations

from typing import Any, ClassVar

from modeldeploy.core.api import ModelDeploymentSpec
from modeldeploy.core.naming import Owner, canary_name, child_metadata
from modeldeploy.core.routers.base import Resource, WeightedRouter

HTTPROUTE = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")


class GatewayApiRouter(WeightedRouter):
    """A Gateway API HTTPRoute with weighted backendRefs to the stable and canary Services."""

    resources: ClassVar[tuple[Resource, ...]] = (HTTPROUTE,)

    def render(self, owner: Owner, spec: ModelDeploymentSpec, weight: int | None) -> list[dict[str, Any]]:
        config = spec.traffic.gateway_api
        assert config is not None
        port = spec.service.port
        backends = [{"name": owner.name, "port": port, "weight": 100 - (weight or 0)}]
        if weight is not None:
            backends.append({"name": canary_name(owner), "port": port, "weight": weight})
        route_spec: dict[str, Any] = {
            "parentRefs": [ref.model_dump(by_alias=True, exclude_none=True) for ref in config.parent_refs],
            "rules": [{"backendRefs": backends}],
        }
        if config.hostnames:
            route_spec["hostnames"] = list(config.hostnames)
        return [
            {
                "apiVersion": HTTPROUTE.api_version,
                "kind": HTTPROUTE.kind,
                "metadata": child_metadata(owner.name, owner, spec),
                "spec": route_spec,
            }
        ]

    def read_weight(self, owner: Owner, live: list[dict[str, Any]]) -> int | None:
        for obj in live:
            if obj.get("kind") == HTTPROUTE.kind and obj["metadata"]["name"] == owner.name:
                for rule in obj.get("spec", {}).get("rules", []):
                    for ref in rule.get("backendRefs", []):
                        if ref.get("name") == canary_name(owner):
                            return int(ref.get("weight", 1))
        return None
