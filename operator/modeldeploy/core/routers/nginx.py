"""The `nginx` router: ingress-nginx, a main Ingress to stable and a canary Ingress with `canary-weight`."""

from __future__ import annotations

from typing import Any, ClassVar

from modeldeploy.core.api import ModelDeploymentSpec
from modeldeploy.core.naming import Owner, canary_name, child_metadata
from modeldeploy.core.routers.base import Resource, WeightedRouter

INGRESS = Resource("networking.k8s.io", "v1", "ingresses", "Ingress")
NGINX_CANARY = "nginx.ingress.kubernetes.io/canary"
NGINX_CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


class NginxRouter(WeightedRouter):
    """ingress-nginx: the main Ingress to stable, a canary Ingress to the canary with `canary-weight`."""

    resources: ClassVar[tuple[Resource, ...]] = (INGRESS,)

    def render(self, owner: Owner, spec: ModelDeploymentSpec, weight: int | None) -> list[dict[str, Any]]:
        config = spec.traffic.nginx
        assert config is not None

        def ingress(name: str, service: str, annotations: dict[str, str]) -> dict[str, Any]:
            metadata = child_metadata(name, owner, spec)
            if annotations:
                metadata["annotations"] = annotations
            return {
                "apiVersion": INGRESS.api_version,
                "kind": INGRESS.kind,
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

        main = ingress(owner.name, owner.name, {})
        if weight is None:
            return [main]  # no canary Ingress while no canary runs or drains
        return [
            main,
            ingress(canary_name(owner), canary_name(owner), {NGINX_CANARY: "true", NGINX_CANARY_WEIGHT: str(weight)}),
        ]

    def read_weight(self, owner: Owner, live: list[dict[str, Any]]) -> int | None:
        for obj in live:
            if obj.get("kind") == INGRESS.kind and obj["metadata"]["name"] == canary_name(owner):
                value = (obj["metadata"].get("annotations") or {}).get(NGINX_CANARY_WEIGHT)
                return int(value) if value is not None else None
        return None
