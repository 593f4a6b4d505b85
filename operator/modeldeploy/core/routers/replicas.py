"""The `replicas` router: no mesh, one Service over both tracks; the weight is the share of ready pods."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from modeldeploy.core.api import ModelDeploymentSpec
from modeldeploy.core.naming import INSTANCE_LABEL, Owner
from modeldeploy.core.routers.base import Resource, Router


class ReplicasRouter(Router):
    """No mesh: one Service over both tracks; the canary gets weight w by having w% of the ready pods."""

    resources: ClassVar[tuple[Resource, ...]] = ()
    weight_from_pods: ClassVar[bool] = True
    routes_to_canary_service: ClassVar[bool] = False

    def service_selector(self, owner: Owner) -> dict[str, str]:
        return {INSTANCE_LABEL: owner.name}

    def canary_pods(self, stable_replicas: int, weight: int, fixed: int | None) -> int:
        if weight <= 0:
            return 0
        # Stable stays fully scaled, so the canary needs c pods with c / (stable + c) = w.
        return max(1, math.ceil(stable_replicas * weight / (100 - weight)))

    def render(self, owner: Owner, spec: ModelDeploymentSpec, weight: int | None) -> list[dict[str, Any]]:
        return []

    def read_weight(self, owner: Owner, live: list[dict[str, Any]]) -> int | None:
        return None
