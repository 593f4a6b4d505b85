"""The ModelDeployment spec as a whole, the rules that span its parts, and its name."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from modeldeploy.core.api.base import DNS_LABEL, ApiModel, Rule
from modeldeploy.core.api.model import ModelSource
from modeldeploy.core.api.pod import PodPlacement
from modeldeploy.core.api.rollout import Rollout
from modeldeploy.core.api.runtime import Autoscaling, Runtime, ServicePort
from modeldeploy.core.api.traffic import Traffic

# Children get suffixes such as "-canary"; a Service name must stay a 63-character DNS label.
MAX_NAME_LENGTH = 52

GPU = "nvidia.com/gpu"
_REPLICAS_ROUTER = "!has(self.traffic) || !has(self.traffic.router) || self.traffic.router == 'replicas'"

# The CRD's root rules, on metadata.name: the name also names the Service and the other children.
NAME_RULES = (
    Rule(
        f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
        f"metadata.name must be at most {MAX_NAME_LENGTH} characters, so that child names stay valid DNS labels",
    ),
    Rule(
        f"self.metadata.name.matches('{DNS_LABEL}')",
        "metadata.name must be a DNS label (lowercase letters, digits and '-', starting with a letter), "
        "because it names the Service",
    ),
)


class ModelDeploymentSpec(ApiModel):
    rules = (
        Rule(
            "!(has(self.replicas) && has(self.autoscaling))",
            "spec.replicas and spec.autoscaling are mutually exclusive: set one",
        ),
        Rule(
            "!has(self.rollout) || !has(self.rollout.analysis) || !has(self.runtime) || "
            "!has(self.runtime.preset) || self.runtime.preset != 'mlserver' || !has(self.rollout.analysis.metrics) || "
            "!self.rollout.analysis.metrics.exists(m, has(m.builtin) && m.builtin == 'predictionDrift')",
            "predictionDrift needs a prediction histogram, which MLServer does not export",
        ),
        Rule(
            "!has(self.rollout) || !has(self.rollout.analysis) || !has(self.runtime) || "
            "!has(self.runtime.preset) || self.runtime.preset != 'mlserver' || !has(self.rollout.analysis.metrics) || "
            "!self.rollout.analysis.metrics.exists(m, has(m.builtin) && "
            "(m.builtin == 'accuracy' || m.builtin == 'meanAbsoluteError'))",
            "accuracy and meanAbsoluteError need the feedback counters of modeldeploy's model server, which MLServer "
            "does not export",
        ),
        Rule(
            f"!({_REPLICAS_ROUTER}) || !has(self.rollout) || !has(self.rollout.canaryReplicas)",
            "rollout.canaryReplicas cannot be used with the replicas router, where the pod ratio is the weight",
        ),
        Rule(
            f"!({_REPLICAS_ROUTER}) || !has(self.rollout) || !has(self.rollout.steps) || "
            "self.rollout.steps.all(s, !has(s.setWeight) || s.setWeight < 100)",
            "the replicas router cannot send 100% to the canary while stable stays fully scaled; "
            "end the steps below 100 and let promotion finish",
        ),
        Rule(
            f"!({_REPLICAS_ROUTER}) || !has(self.rollout) || !has(self.rollout.bakeSeconds)",
            "rollout.bakeSeconds needs a weighted router (gatewayAPI, istio or nginx): the replicas router's one "
            "Service would send traffic to the warm previous revision",
        ),
        Rule(
            "!has(self.runtime) || !has(self.runtime.resources) || !has(self.runtime.resources.limits) || "
            f"!('{GPU}' in self.runtime.resources.limits) || "
            f"(!({_REPLICAS_ROUTER}) && has(self.rollout) && has(self.rollout.canaryReplicas))",
            f"a model with {GPU} limits needs a weighted router (gatewayAPI, istio or nginx) and "
            "rollout.canaryReplicas, so that a canary adds exactly that many GPU pods",
        ),
    )

    model: ModelSource
    runtime: Runtime = Field(
        default_factory=Runtime, description="Serving runtime; modeldeploy's reference model server by default."
    )
    replicas: int | None = Field(
        default=None, ge=0, le=1000, description="Fixed replica count (1 when neither this nor autoscaling is set)."
    )
    autoscaling: Autoscaling | None = Field(default=None, description="Scale with an HPA instead of fixed replicas.")
    service: ServicePort = Field(default_factory=ServicePort)
    rollout: Rollout = Field(default_factory=Rollout, description="The canary every new revision goes through.")
    traffic: Traffic = Field(default_factory=Traffic, description="How traffic is split during a canary.")
    pod: PodPlacement | None = Field(
        default=None, description="Scheduling, identity and metadata of the serving pods, stable and canary alike."
    )

    @property
    def desired_replicas(self) -> int | None:
        """The fixed replica count, or None when an HPA owns it."""
        if self.autoscaling is not None:
            return None
        return 1 if self.replicas is None else self.replicas


def check_name(name: str) -> str | None:
    """What is wrong with a ModelDeployment's name (the CRD's root rules), or None."""
    obj = {"metadata": {"name": name}}
    return next((rule.message for rule in NAME_RULES if not rule.holds(obj)), None)


def parse_spec(raw: dict[str, Any]) -> ModelDeploymentSpec:
    """Validates a spec as the API server handed it over; raises pydantic.ValidationError."""
    return ModelDeploymentSpec.model_validate(raw)
