"""The ModelDeployment API (modeldeploy.io/v1alpha1): the single source of truth for the CRD.

Cross-field rules live twice on purpose: as CEL (`x-kubernetes-validations`) so the API server rejects
bad objects at admission, and as pydantic validators so the operator reports the same error as an
`InvalidSpec` condition when an object slipped past an older CRD.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

GROUP = "modeldeploy.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["mdep"]

# Children get suffixes such as "-canary"; a Service name must stay a 63-character DNS label.
MAX_NAME_LENGTH = 52
DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
# A Kubernetes resource.Quantity, e.g. 500m, 2Gi, 1.5, 1e3.
QUANTITY = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
IMAGE = r"^[^\s]+$"
URI = r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^\s]+$"

Port = Annotated[int, Field(ge=1, le=65535)]
Quantity = Annotated[int | Annotated[str, StringConstraints(pattern=QUANTITY, max_length=64)], Field()]
ShortString = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, JsonValue]:
    """One `x-kubernetes-validations` entry."""
    entry: dict[str, JsonValue] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class ApiModel(BaseModel):
    """camelCase on the wire, unknown fields rejected, immutable once parsed."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ModelSource(ApiModel):
    """What is served. A change here starts a new revision."""

    name: str = Field(
        min_length=1, max_length=63, pattern=DNS_LABEL, description="Model name, a DNS label (e.g. fraud-scorer)."
    )
    version: str = Field(
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE,
        description="Model version, usable as a label value (e.g. '7' or 'v2.1').",
    )
    uri: str = Field(
        max_length=2048,
        pattern=URI,
        description="Where the model artifact lives, with a scheme: s3://, gs://, https://, pvc://, models:/ ...",
    )
    format: Literal["sklearn", "xgboost", "lightgbm", "mlflow", "huggingface", "onnx", "custom"] = Field(
        description="Serialisation format of the artifact; the runtime preset must support it."
    )


class KeyRef(ApiModel):
    name: str = Field(min_length=1, max_length=253, description="Name of the Secret or ConfigMap.")
    key: str = Field(min_length=1, max_length=253, description="Key inside it.")


class EnvSource(ApiModel):
    secret_key_ref: KeyRef | None = Field(default=None, description="Read the value from a Secret key.")
    config_map_key_ref: KeyRef | None = Field(default=None, description="Read the value from a ConfigMap key.")

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                    "valueFrom needs exactly one of secretKeyRef or configMapKeyRef",
                )
            ]
        }
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> EnvSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("valueFrom needs exactly one of secretKeyRef or configMapKeyRef")
        return self


class EnvVar(ApiModel):
    name: str = Field(min_length=1, max_length=256, pattern=ENV_NAME, description="Variable name.")
    value: str | None = Field(default=None, max_length=32768, description="Literal value.")
    value_from: EnvSource | None = Field(default=None, description="Value taken from a Secret or ConfigMap.")

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!(has(self.value) && has(self.valueFrom))", "env var sets both value and valueFrom")
            ]
        }
    )

    @model_validator(mode="after")
    def _one_of_value(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env var {self.name!r} sets both value and valueFrom")
        return self


class Resources(ApiModel):
    requests: dict[str, Quantity] | None = Field(
        default=None, max_length=8, description="Minimum resources, e.g. {cpu: 500m, memory: 1Gi}."
    )
    limits: dict[str, Quantity] | None = Field(
        default=None, max_length=8, description="Maximum resources, e.g. {cpu: '2', memory: 2Gi}."
    )


class Probe(ApiModel):
    """An HTTP probe against the serving container."""

    path: str = Field(min_length=1, max_length=1024, pattern=r"^/", description="HTTP path, e.g. /v2/health/ready.")
    port: Port | None = Field(default=None, description="Defaults to the runtime port.")
    initial_delay_seconds: int = Field(default=0, ge=0, le=3600)
    period_seconds: int = Field(default=10, ge=1, le=3600)
    timeout_seconds: int = Field(default=1, ge=1, le=3600)
    failure_threshold: int = Field(default=3, ge=1, le=100)


class Runtime(ApiModel):
    """How the model is served: a preset, optionally overridden, or a custom container."""

    preset: Literal["mlserver", "custom"] = Field(
        default="mlserver",
        description="mlserver: Seldon MLServer for the model's format; custom: your own image and port.",
    )
    image: str | None = Field(default=None, max_length=1024, pattern=IMAGE, description="Container image.")
    port: Port | None = Field(default=None, description="HTTP port the server listens on.")
    command: list[ShortString] | None = Field(default=None, max_length=32, description="Entrypoint override.")
    args: list[ShortString] | None = Field(default=None, max_length=64, description="Arguments.")
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=64,
        description="Extra environment variables; they override the preset's of the same name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    resources: Resources | None = Field(default=None, description="Container resource requests and limits.")
    readiness_probe: Probe | None = Field(default=None, description="Overrides the preset's readiness probe.")
    liveness_probe: Probe | None = Field(default=None, description="Overrides the preset's liveness probe.")
    run_as_user: int | None = Field(
        default=None, ge=1, le=2147483647, description="Non-root UID to run as; the preset's UID by default."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.preset != 'custom' || (has(self.image) && has(self.port))",
                    "runtime.preset 'custom' needs runtime.image and runtime.port",
                )
            ]
        }
    )

    @model_validator(mode="after")
    def _custom_needs_image_and_port(self) -> Runtime:
        if self.preset == "custom" and (self.image is None or self.port is None):
            raise ValueError("runtime.preset 'custom' needs runtime.image and runtime.port")
        return self

    @model_validator(mode="after")
    def _unique_env_names(self) -> Runtime:
        names = [var.name for var in self.env or []]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"runtime.env names must be unique; repeated: {', '.join(duplicates)}")
        return self


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler on CPU utilisation."""

    min_replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int = Field(ge=1, le=1000)
    target_cpu_utilization_percentage: int = Field(
        default=80, ge=1, le=100, alias="targetCPUUtilizationPercentage", description="Average CPU to aim for."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
                    "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
                )
            ]
        }
    )

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"autoscaling.minReplicas ({self.min_replicas}) must not exceed "
                f"autoscaling.maxReplicas ({self.max_replicas})"
            )
        return self


class ServicePort(ApiModel):
    port: Port = Field(default=80, description="Port of the ClusterIP Service in front of the model.")


_REPLICAS = "!has(self.traffic) || !has(self.traffic.router) || self.traffic.router == 'replicas'"
REPLICAS_ROUTER_CEL_CANARY_REPLICAS = f"!({_REPLICAS}) || !has(self.rollout) || !has(self.rollout.canaryReplicas)"
REPLICAS_ROUTER_CEL_FULL_WEIGHT = (
    f"!({_REPLICAS}) || !has(self.rollout) || !has(self.rollout.steps) || "
    "self.rollout.steps.all(s, !has(s.setWeight) || s.setWeight < 100)"
)
DURATION = r"^([0-9]+(ms|s|m|h))+$"
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """'1m30s' -> 90.0 seconds."""
    return sum(float(n) * DURATION_UNITS[unit] for n, unit in re.findall(r"([0-9]+)(ms|s|m|h)", text))


class Pause(ApiModel):
    duration: str | None = Field(
        default=None,
        max_length=32,
        pattern=DURATION,
        description="How long to wait, e.g. 30s or 5m; without it the canary waits until promoted.",
    )


class Step(ApiModel):
    """One canary step: exactly one of setWeight or pause."""

    set_weight: int | None = Field(default=None, ge=0, le=100, description="Percent of traffic for the canary.")
    pause: Pause | None = Field(default=None, description="Wait before the next step.")

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.setWeight) != has(self.pause)", "a step is exactly one of setWeight or pause")
            ]
        }
    )

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if (self.set_weight is None) == (self.pause is None):
            raise ValueError("a step is exactly one of setWeight or pause")
        return self


def default_steps() -> list[Step]:
    return [
        Step(set_weight=20),
        Step(pause=Pause(duration="30s")),
        Step(set_weight=50),
        Step(pause=Pause(duration="30s")),
    ]


class Rollout(ApiModel):
    """How a new revision reaches users: a canary that moves through `steps`, then is promoted."""

    steps: list[Step] = Field(
        default_factory=default_steps,
        max_length=32,
        description="Canary steps. Default: setWeight 20, pause 30s, setWeight 50, pause 30s. [] promotes as soon "
        "as the canary's pods are ready.",
    )
    progress_deadline_seconds: int = Field(
        default=600, ge=10, le=86400, description="How long the canary's pods may stay not ready before rollback."
    )
    canary_replicas: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Fixed canary pod count, whatever the weight (not with the replicas router, where the pod "
        "ratio is the weight).",
    )
    scale_down_delay_seconds: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="How long canary pods live on after traffic leaves them (promotion or rollback), so that "
        "routers which apply weights asynchronously never send requests to pods that are gone.",
    )


class ParentRef(ApiModel):
    name: str = Field(min_length=1, max_length=253, description="Gateway name.")
    namespace: str | None = Field(default=None, max_length=63, description="Gateway namespace; the object's own.")
    section_name: str | None = Field(default=None, max_length=253, description="Listener name.")


HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class GatewayApiRouter(ApiModel):
    parent_refs: list[ParentRef] = Field(min_length=1, max_length=16, description="Gateways the HTTPRoute attaches to.")
    hostnames: list[Annotated[str, StringConstraints(max_length=253, pattern=HOSTNAME)]] = Field(
        default_factory=list, max_length=16, description="Hostnames the HTTPRoute matches."
    )


class IstioRouter(ApiModel):
    hosts: list[Annotated[str, StringConstraints(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=16, description="VirtualService hosts; the Service's own host by default."
    )
    gateways: list[Annotated[str, StringConstraints(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=16, description="Istio Gateways to bind; mesh-internal traffic by default."
    )


class NginxRouter(ApiModel):
    host: str = Field(max_length=253, pattern=HOSTNAME, description="Host the Ingress serves.")
    ingress_class_name: str = Field(default="nginx", min_length=1, max_length=253)
    path: str = Field(default="/", max_length=1024, pattern=r"^/", description="Path prefix.")


Router = Literal["replicas", "gatewayAPI", "istio", "nginx"]


class Traffic(ApiModel):
    """How traffic is split between the stable and canary tracks."""

    router: Router = Field(
        default="replicas",
        description="replicas: one Service over both tracks, weight = pod ratio (no mesh); gatewayAPI: an HTTPRoute; "
        "istio: a VirtualService over two Services; nginx: a canary Ingress.",
    )
    gateway_api: GatewayApiRouter | None = Field(default=None, alias="gatewayAPI")
    istio: IstioRouter | None = None
    nginx: NginxRouter | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "(self.router == 'gatewayAPI') == has(self.gatewayAPI)",
                    "traffic.gatewayAPI is required with router gatewayAPI, and only then",
                ),
                cel("!has(self.istio) || self.router == 'istio'", "traffic.istio is set but the router is not istio"),
                cel(
                    "(self.router == 'nginx') == has(self.nginx)",
                    "traffic.nginx is required with router nginx, and only then",
                ),
            ]
        }
    )

    @model_validator(mode="after")
    def _config_matches_router(self) -> Traffic:
        for router, config in (("gatewayAPI", self.gateway_api), ("nginx", self.nginx)):
            if (self.router == router) != (config is not None):
                raise ValueError(f"traffic.{router} is required with router {router}, and only then")
        if self.istio is not None and self.router != "istio":
            raise ValueError("traffic.istio is set but the router is not istio")
        return self


class ModelDeploymentSpec(ApiModel):
    model: ModelSource
    runtime: Runtime = Field(default_factory=Runtime, description="Serving runtime; MLServer by default.")
    replicas: int | None = Field(
        default=None, ge=0, le=1000, description="Fixed replica count (1 when neither this nor autoscaling is set)."
    )
    autoscaling: Autoscaling | None = Field(default=None, description="Scale with an HPA instead of fixed replicas.")
    service: ServicePort = Field(default_factory=ServicePort)
    rollout: Rollout = Field(default_factory=Rollout, description="The canary every new revision goes through.")
    traffic: Traffic = Field(default_factory=Traffic, description="How traffic is split during a canary.")

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.replicas) && has(self.autoscaling))",
                    "spec.replicas and spec.autoscaling are mutually exclusive: set one",
                ),
                cel(
                    REPLICAS_ROUTER_CEL_CANARY_REPLICAS,
                    "rollout.canaryReplicas cannot be used with the replicas router, where the pod ratio is the weight",
                ),
                cel(
                    REPLICAS_ROUTER_CEL_FULL_WEIGHT,
                    "the replicas router cannot send 100% to the canary while stable stays fully scaled; "
                    "end the steps below 100 and let promotion finish",
                ),
            ]
        }
    )

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> ModelDeploymentSpec:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError("spec.replicas and spec.autoscaling are mutually exclusive: set one")
        return self

    @model_validator(mode="after")
    def _replicas_router_limits(self) -> ModelDeploymentSpec:
        if self.traffic.router != "replicas":
            return self
        if self.rollout.canary_replicas is not None:
            raise ValueError(
                "rollout.canaryReplicas cannot be used with the replicas router, where the pod ratio is the weight"
            )
        if any(step.set_weight == 100 for step in self.rollout.steps):
            raise ValueError(
                "the replicas router cannot send 100% to the canary while stable stays fully scaled; "
                "end the steps below 100 and let promotion finish"
            )
        return self

    @property
    def desired_replicas(self) -> int | None:
        """The fixed replica count, or None when an HPA owns it."""
        if self.autoscaling is not None:
            return None
        return 1 if self.replicas is None else self.replicas


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """metav1.Condition."""

    type: str = Field(max_length=316)
    status: ConditionStatus
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    reason: str = Field(min_length=1, max_length=1024)
    message: str = Field(default="", max_length=32768)


class ServedModel(ApiModel):
    name: str
    version: str
    uri: str


class RevisionStatus(ApiModel):
    revision: str = Field(description="Hash of everything that shapes the pods.")
    model: ServedModel


Phase = Literal["Pending", "Progressing", "Paused", "Ready", "ScaledToZero", "Degraded"]
HISTORY_LIMIT = 10
Outcome = Literal["Deployed", "Promoted", "RolledBack", "Aborted", "Superseded"]
Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class CanaryStatus(ApiModel):
    """The canary in progress. The operator resumes from here after a restart."""

    revision: str
    model: ServedModel
    phase: Literal["Progressing", "Paused", "Promoting"] = Field(
        description="Progressing through the steps, Paused (a pause step without duration, or paused by hand), or "
        "Promoting (the stable track rolls out the canary's revision)."
    )
    step_index: int = Field(description="Index of the current step; equal to stepCount once all steps are done.")
    step_count: int
    step_started_at: Time
    started_at: Time
    desired_weight: int = Field(description="Weight the current step asks for.")
    weight: int = Field(description="Weight the operator has given the canary so far.")
    actual_weight: int = Field(description="Share of traffic the canary can get now, from the router or the pods.")
    replicas: int = Field(description="Canary pods wanted.")
    ready_replicas: int
    not_ready_since: Time | None = Field(default=None, description="Since when the canary lacks ready pods.")


class HistoryEntry(ApiModel):
    revision: str
    model: ServedModel
    outcome: Outcome
    started_at: Time
    finished_at: Time
    reason: str | None = None
    message: str | None = None


class RollbackStatus(ApiModel):
    revision: str
    model: ServedModel
    reason: str
    message: str
    at: Time


class ActionStatus(ApiModel):
    action: str
    id: str
    at: Time
    result: str


class ModelDeploymentStatus(ApiModel):
    observed_generation: int | None = Field(default=None, description="The generation this status describes.")
    phase: Phase | None = Field(default=None, description="Human summary; conditions carry the detail.")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    stable: RevisionStatus | None = Field(default=None, description="The revision fully rolled out and serving.")
    target_revision: str | None = Field(default=None, description="The revision the spec asks for.")
    replicas: int | None = Field(default=None, description="Pods of the stable Deployment.")
    ready_replicas: int | None = Field(default=None, description="Stable pods that are ready.")
    updated_replicas: int | None = Field(default=None, description="Stable pods on the stable Deployment's template.")
    canary: CanaryStatus | None = Field(default=None, description="The canary in progress, if any.")
    rejected_revision: str | None = Field(
        default=None, description="A rolled-back revision; not tried again until the spec changes or a retry."
    )
    last_rollback: RollbackStatus | None = None
    canary_scale_down_at: Time | None = Field(
        default=None, description="When the canary Deployment, no longer receiving traffic, is removed."
    )
    last_action: ActionStatus | None = Field(default=None, description="The last manual action handled.")
    history: list[HistoryEntry] = Field(
        default_factory=list, max_length=20, description="Recent canaries, newest last."
    )


NAME_TOO_LONG = f"metadata.name must be at most {MAX_NAME_LENGTH} characters, so that child names stay valid DNS labels"
NAME_NOT_DNS_LABEL = (
    "metadata.name must be a DNS label (lowercase letters, digits and '-', starting with a letter), "
    "because it names the Service"
)


def check_name(name: str) -> str | None:
    """What is wrong with a ModelDeployment's name (the CRD's root CEL rules), or None."""
    if len(name) > MAX_NAME_LENGTH:
        return NAME_TOO_LONG
    if not re.match(DNS_LABEL, name):
        return NAME_NOT_DNS_LABEL
    return None


def parse_spec(raw: dict[str, Any]) -> ModelDeploymentSpec:
    """Validates a spec as the API server handed it over; raises pydantic.ValidationError."""
    return ModelDeploymentSpec.model_validate(raw)
