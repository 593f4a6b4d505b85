"""Traffic routers: how the canary's weight reaches users. One module each, behind one interface (`base.Router`).

Adding a router: a module here with a `Router` subclass that declares the `resources` it writes, plus one line in
`ROUTERS` (and the name in `api.traffic.RouterName`, its settings block there, and its tests). The Kubernetes
adapter, the Kopf watches, the reconcile and the RBAC test pick its resources up from this registry; the rollout
state machine does not change.
"""

from __future__ import annotations

from modeldeploy.core.api.traffic import RouterName
from modeldeploy.core.routers.base import CHILD_VERBS, PolicyRule, Resource, Router, WeightedRouter
from modeldeploy.core.routers.gateway_api import GatewayApiRouter
from modeldeploy.core.routers.istio import IstioRouter
from modeldeploy.core.routers.nginx import NginxRouter
from modeldeploy.core.routers.replicas import ReplicasRouter

__all__ = ["CHILD_VERBS", "ROUTERS", "PolicyRule", "Resource", "Router", "RouterName", "WeightedRouter"]

ROUTERS: dict[RouterName, Router] = {
    "replicas": ReplicasRouter(),
    "gatewayAPI": GatewayApiRouter(),
    "istio": IstioRouter(),
    "nginx": NginxRouter(),
}
