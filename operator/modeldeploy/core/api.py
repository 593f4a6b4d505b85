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


def cel(rule: str, message: str) -> dict[str, JsonValue]:
    """One `x-kubernetes-validations` entry."""
    return {"rule": rule, "message": message}


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

    preset: Literal["modelserver", "mlserver", "custom"] = Field(
        default="modelserver",
        description="modelserver: modeldeploy's reference server, whose metrics the analysis presets query; "
        "mlserver: Seldon MLServer for the model's format; custom: your own image and port.",
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


class AnalysisGate(ApiModel):
    measurements: int = Field(
        default=1, ge=1, le=100, description="Successful analysis measurements in a row needed to go on."
    )


ONE_ACTION = "a step is exactly one of setWeight, pause or analysis"


class Step(ApiModel):
    """One canary step: exactly one of setWeight, pause or analysis."""

    set_weight: int | None = Field(default=None, ge=0, le=100, description="Percent of traffic for the canary.")
    pause: Pause | None = Field(default=None, description="Wait before the next step.")
    analysis: AnalysisGate | None = Field(
        default=None, description="Wait for successful measurements of rollout.analysis before the next step."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1", ONE_ACTION)
            ]
        }
    )

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if sum(x is not None for x in (self.set_weight, self.pause, self.analysis)) != 1:
            raise ValueError(ONE_ACTION)
        return self


def default_steps() -> list[Step]:
    return [
        Step(set_weight=20),
        Step(pause=Pause(duration="30s")),
        Step(set_weight=50),
        Step(pause=Pause(duration="30s")),
    ]


class SecretKey(ApiModel):
    name: str = Field(min_length=1, max_length=253, description="Secret in the ModelDeployment's namespace.")
    key: str = Field(min_length=1, max_length=253)


class PrometheusSource(ApiModel):
    address: str = Field(max_length=2048, pattern=r"^https?://[^\s]+$", description="e.g. http://prometheus:9090")
    timeout: str = Field(default="5s", max_length=32, pattern=DURATION, description="Per query; bounds every tick.")
    bearer_token_secret: SecretKey | None = Field(default=None, description="Bearer token read from a Secret.")
    basic_auth_secret: str | None = Field(
        default=None, max_length=253, description="Secret with keys username and password for basic auth."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.bearerTokenSecret) && has(self.basicAuthSecret))",
                    "prometheus takes a bearer token or basic auth, not both",
                )
            ]
        }
    )

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusSource:
        if self.bearer_token_secret is not None and self.basic_auth_secret is not None:
            raise ValueError("prometheus takes a bearer token or basic auth, not both")
        return self


class Relative(ApiModel):
    """Bounds against the stable track, measured the same way over the same window."""

    max_increase: float | None = Field(default=None, description="canary - stable may be at most this.")
    max_decrease: float | None = Field(default=None, description="stable - canary may be at most this.")
    max_ratio: float | None = Field(default=None, gt=0, description="canary may be at most this times stable.")


Builtin = Literal["successRate", "latencyP99", "predictionDrift"]


class AnalysisMetric(ApiModel):
    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    builtin: Builtin | None = Field(
        default=None,
        description="successRate (non-5xx share), latencyP99 (seconds), predictionDrift (PSI of the canary pods' "
        "prediction histogram against the stable pods', each accumulated since the pods started).",
    )
    query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL returning one number; {{namespace}}, {{name}}, {{revision}}, {{track}} and "
        "{{window}} are filled in.",
    )
    window: str = Field(default="1m", max_length=32, pattern=DURATION, description="Range of rate() windows.")
    min: float | None = Field(default=None, description="The canary's value may not be below this.")
    max: float | None = Field(default=None, description="The canary's value may not be above this.")
    relative: Relative | None = None
    min_samples: int = Field(
        default=200,
        ge=1,
        description="predictionDrift: fewer predictions on either track than this is no data (PSI from a few "
        "dozen samples is mostly noise: about (buckets - 1) / samples).",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.builtin) != has(self.query)", "a metric is exactly one of builtin or query"),
                cel(
                    "has(self.min) || has(self.max) || has(self.relative)",
                    "a metric needs a bound: min, max or relative",
                ),
                cel("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max"),
            ]
        }
    )

    @model_validator(mode="after")
    def _coherent(self) -> AnalysisMetric:
        if (self.builtin is None) == (self.query is None):
            raise ValueError("a metric is exactly one of builtin or query")
        if self.min is None and self.max is None and self.relative is None:
            raise ValueError("a metric needs a bound: min, max or relative")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class Policy(ApiModel):
    action: Literal["hold", "fail", "pass"] = Field(
        default="hold",
        description="hold: the canary neither advances nor is promoted; fail: rolled back once `limit` ticks in a "
        "row end so; pass: counts as a success (but promotion still needs real data).",
    )
    limit: int = Field(default=3, ge=0, le=1000, description="Ticks in a row before `fail` rolls back.")


class Analysis(ApiModel):
    interval: str = Field(default="30s", max_length=32, pattern=DURATION, description="Time between measurements.")
    failure_limit: int = Field(
        default=0, ge=0, le=100, description="Failed measurements tolerated; one more rolls back."
    )
    no_data: Policy = Field(default_factory=Policy, description="When a query returns nothing.")
    errors: Policy = Field(default_factory=Policy, description="When a query fails (Prometheus down, bad PromQL).")
    starting_step: int = Field(default=0, ge=0, le=32, description="Background analysis runs from this step index on.")
    prometheus: PrometheusSource
    metrics: list[AnalysisMetric] = Field(
        min_length=1,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Analysis:
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError("analysis metric names must be unique")
        return self


class Rollout(ApiModel):
    """How a new revision reaches users: a canary that moves through `steps`, then is promoted."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.steps) || !self.steps.exists(s, has(s.analysis)) || has(self.analysis)",
                    "an analysis step needs rollout.analysis",
                )
            ]
        }
    )

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
    analysis: Analysis | None = Field(
        default=None, description="Prometheus metrics that gate the canary; a failure rolls it back."
    )
    scale_down_delay_seconds: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="How long canary pods live on after traffic leaves them (promotion or rollback), so that "
        "routers which apply weights asynchronously never send requests to pods that are gone.",
    )

    @model_validator(mode="after")
    def _analysis_steps_need_analysis(self) -> Rollout:
        if self.analysis is None and any(step.analysis is not None for step in self.steps):
            raise ValueError("an analysis step needs rollout.analysis")
        return self

    @model_validator(mode="after")
    def _analysis_after_traffic(self) -> Rollout:
        for index, step in enumerate(self.steps):
            if step.set_weight:
                break
            if step.analysis is not None:
                raise ValueError(
                    f"rollout.steps[{index}]: an analysis step needs a setWeight above 0 before it; "
                    "a canary without traffic has nothing to measure"
                )
        return self


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

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.replicas) && has(self.autoscaling))",
                    "spec.replicas and spec.autoscaling are mutually exclusive: set one",
                ),
                cel(
                    "!has(self.rollout) || !has(self.rollout.analysis) || !has(self.runtime) || "
                    "!has(self.runtime.preset) || self.runtime.preset != 'mlserver' || "
                    "!self.rollout.analysis.metrics.exists(m, has(m.builtin) && m.builtin == 'predictionDrift')",
                    "predictionDrift needs a prediction histogram, which MLServer does not export",
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
    def _presets_the_runtime_can_feed(self) -> ModelDeploymentSpec:
        analysis = self.rollout.analysis
        if analysis is not None and self.runtime.preset == "mlserver":
            for metric in analysis.metrics:
                if metric.builtin == "predictionDrift":
                    raise ValueError(
                        f"analysis metric {metric.name!r}: predictionDrift needs a prediction histogram, which "
                        "MLServer does not export; use runtime.preset modelserver or a custom query"
                    )
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


MeasurementResult = Literal["Successful", "Failed", "NoData", "Error"]


class Measurement(ApiModel):
    result: MeasurementResult
    value: float | None = None
    stable_value: float | None = None
    bound: str = Field(description="The bound the value was held to, e.g. '>= 0.99' or '<= stable + 0.005'.")
    message: str = ""
    at: Time


class MetricMeasurements(ApiModel):
    name: str
    measurements: list[Measurement] = Field(default_factory=list, description="The last few, newest last.")


class AnalysisStatus(ApiModel):
    """Metric analysis of the current (or last) canary."""

    revision: str = Field(description="The canary revision measured.")
    last_result: MeasurementResult | None = Field(default=None, description="The last tick's overall result.")
    failures: int = 0
    consecutive_successes: int = 0
    consecutive_no_data: int = 0
    consecutive_errors: int = 0
    next_measurement_at: Time | None = None
    time_to_rollback_seconds: float = Field(
        description="The contract: a breach visible in Prometheus rolls back within interval x (failureLimit + 1)."
    )
    metrics: list[MetricMeasurements] = Field(default_factory=list)


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
    analysis: AnalysisStatus | None = Field(default=None, description="Metric analysis of the current or last canary.")
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
