"""How the model is served: the container, its resources and probes, and how many pods."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from modeldeploy.core.api.base import ENV_NAME, IMAGE, ApiModel, Port, Quantity, Rule, ShortString


class KeyRef(ApiModel):
    name: str = Field(min_length=1, max_length=253, description="Name of the Secret or ConfigMap.")
    key: str = Field(min_length=1, max_length=253, description="Key inside it.")


class EnvSource(ApiModel):
    rules = (
        Rule(
            "has(self.secretKeyRef) != has(self.configMapKeyRef)",
            "valueFrom needs exactly one of secretKeyRef or configMapKeyRef",
        ),
    )

    secret_key_ref: KeyRef | None = Field(default=None, description="Read the value from a Secret key.")
    config_map_key_ref: KeyRef | None = Field(default=None, description="Read the value from a ConfigMap key.")


class EnvVar(ApiModel):
    rules = (Rule("!(has(self.value) && has(self.valueFrom))", "env var sets both value and valueFrom"),)

    name: str = Field(min_length=1, max_length=256, pattern=ENV_NAME, description="Variable name.")
    value: str | None = Field(default=None, max_length=32768, description="Literal value.")
    value_from: EnvSource | None = Field(default=None, description="Value taken from a Secret or ConfigMap.")


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


RuntimePreset = Literal["modelserver", "mlserver", "custom"]


class Runtime(ApiModel):
    """How the model is served: a preset, optionally overridden, or a custom container."""

    rules = (
        Rule(
            "self.preset != 'custom' || (has(self.image) && has(self.port))",
            "runtime.preset 'custom' needs runtime.image and runtime.port",
        ),
    )

    preset: RuntimePreset = Field(
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

    @model_validator(mode="after")
    def _unique_env_names(self) -> Runtime:
        # The API server enforces this through the list's map keys; the operator says which names repeat.
        names = [var.name for var in self.env or []]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"runtime.env names must be unique; repeated: {', '.join(duplicates)}")
        return self


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler on CPU utilisation."""

    rules = (
        Rule(
            "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
            "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
        ),
    )

    min_replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int = Field(ge=1, le=1000)
    target_cpu_utilization_percentage: int = Field(
        default=80, ge=1, le=100, alias="targetCPUUtilizationPercentage", description="Average CPU to aim for."
    )


class ServicePort(ApiModel):
    port: Port = Field(default=80, description="Port of the ClusterIP Service in front of the model.")
