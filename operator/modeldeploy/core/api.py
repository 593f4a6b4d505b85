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


class ModelDeploymentSpec(ApiModel):
    model: ModelSource
    runtime: Runtime = Field(default_factory=Runtime, description="Serving runtime; MLServer by default.")
    replicas: int | None = Field(
        default=None, ge=0, le=1000, description="Fixed replica count (1 when neither this nor autoscaling is set)."
    )
    autoscaling: Autoscaling | None = Field(default=None, description="Scale with an HPA instead of fixed replicas.")
    service: ServicePort = Field(default_factory=ServicePort)

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.replicas) && has(self.autoscaling))",
                    "spec.replicas and spec.autoscaling are mutually exclusive: set one",
                )
            ]
        }
    )

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> ModelDeploymentSpec:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError("spec.replicas and spec.autoscaling are mutually exclusive: set one")
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


Phase = Literal["Pending", "Progressing", "Ready", "ScaledToZero", "Degraded"]


class ModelDeploymentStatus(ApiModel):
    observed_generation: int | None = Field(default=None, description="The generation this status describes.")
    phase: Phase | None = Field(default=None, description="Human summary; conditions carry the detail.")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    stable: RevisionStatus | None = Field(default=None, description="The revision fully rolled out and serving.")
    target_revision: str | None = Field(default=None, description="The revision the operator is rolling out.")
    replicas: int | None = Field(default=None, description="Pods of the serving Deployment.")
    ready_replicas: int | None = Field(default=None, description="Pods that are ready.")
    updated_replicas: int | None = Field(default=None, description="Pods already on the target revision.")


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
