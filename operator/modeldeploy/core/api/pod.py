"""Where and as whom the serving pods run: scheduling, identity, metadata and extra volumes.

Stable and canary pods get the same placement. The restricted Pod Security profile stays in force: a spec
that would break it (a hostPath volume, say) is refused at admission with the field named.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from modeldeploy.core.api.base import DNS_LABEL, ApiModel, Rule

# A qualified name (taint and toleration keys): an optional DNS-subdomain prefix, then a name. Map keys (labels,
# node selectors) are checked by the API server when the Deployment is applied: CRD schemas cannot pattern them.
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")]
ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
# Volume sources the restricted Pod Security profile allows.
RESTRICTED_VOLUMES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
# Names the operator uses itself: the model volume, and labels it selects pods by.
RESERVED_VOLUME = "model"
MODEL_MOUNT_PATH = "/mnt/models"
RESERVED_LABEL_PREFIXES = ("app.kubernetes.io/", "modeldeploy.io/")


def _free_form(description: str) -> Any:
    """A Kubernetes type passed through as written; the API server validates it when the Deployment is applied."""
    return Field(
        default=None, description=description, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )


class Toleration(ApiModel):
    key: str | None = Field(default=None, max_length=317, pattern=QUALIFIED_NAME)
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)


class VolumeMount(ApiModel):
    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL, description="One of pod.volumes.")
    mount_path: str = Field(min_length=1, max_length=1024, pattern=r"^/", description="Where, in the server container.")
    read_only: bool = True
    sub_path: str | None = Field(default=None, max_length=1024, pattern=r"^[^/]")


class EnvFromSource(ApiModel):
    rules = (
        Rule("has(self.secretRef) != has(self.configMapRef)", "envFrom needs exactly one of secretRef or configMapRef"),
    )

    prefix: str | None = Field(default=None, max_length=253)
    secret_ref: ObjectName | None = Field(default=None, description="Every key of this Secret, as variables.")
    config_map_ref: ObjectName | None = Field(default=None, description="Every key of this ConfigMap, as variables.")


class Volume(ApiModel):
    """A core/v1 Volume of a kind the restricted Pod Security profile allows; its source is passed through."""

    rules = (
        Rule(
            "[" + ", ".join(f"has(self.{kind})" for kind in RESTRICTED_VOLUMES) + "].filter(x, x).size() == 1",
            "a pod volume sets exactly one of " + ", ".join(RESTRICTED_VOLUMES) + " (the kinds the restricted "
            "Pod Security profile allows)",
        ),
        Rule(f"self.name != '{RESERVED_VOLUME}'", f"'{RESERVED_VOLUME}' is the operator's model volume; rename it"),
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    config_map: dict[str, Any] | None = _free_form("A core/v1 ConfigMapVolumeSource.")
    csi: dict[str, Any] | None = _free_form("A core/v1 CSIVolumeSource.")
    downward_api: dict[str, Any] | None = Field(
        default=None,
        alias="downwardAPI",
        description="A core/v1 DownwardAPIVolumeSource.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    empty_dir: dict[str, Any] | None = _free_form("A core/v1 EmptyDirVolumeSource.")
    ephemeral: dict[str, Any] | None = _free_form("A core/v1 EphemeralVolumeSource.")
    persistent_volume_claim: dict[str, Any] | None = _free_form("A core/v1 PersistentVolumeClaimVolumeSource.")
    projected: dict[str, Any] | None = _free_form("A core/v1 ProjectedVolumeSource.")
    secret: dict[str, Any] | None = _free_form("A core/v1 SecretVolumeSource.")


class PodPlacement(ApiModel):
    """Scheduling, identity and metadata of the serving pods (stable and canary alike)."""

    rules = (
        Rule(
            "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
            "self.volumes.exists(v, v.name == m.name))",
            "every pod.volumeMounts entry must name one of pod.volumes",
        ),
        Rule(
            f"!has(self.volumeMounts) || self.volumeMounts.all(m, m.mountPath != '{MODEL_MOUNT_PATH}')",
            f"{MODEL_MOUNT_PATH} is where the operator mounts the model; mount elsewhere",
        ),
        Rule(
            "!has(self.labels) || self.labels.all(k, "
            + " && ".join(f"!k.startsWith('{prefix}')" for prefix in RESERVED_LABEL_PREFIXES)
            + ")",
            "pod.labels may not set app.kubernetes.io/ or modeldeploy.io/ labels: the operator selects pods by them",
        ),
    )

    node_selector: dict[str, LabelValue] | None = Field(
        default=None, max_length=32, description="Only nodes with these labels, e.g. {nvidia.com/gpu.present: 'true'}."
    )
    tolerations: list[Toleration] | None = Field(default=None, max_length=32, description="Taints the pods tolerate.")
    affinity: dict[str, Any] | None = _free_form("A core/v1 Affinity (node, pod and pod anti-affinity).")
    topology_spread_constraints: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=8,
        description="core/v1 TopologySpreadConstraints; each should select the pods by their track label.",
        json_schema_extra={"items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    )
    service_account_name: ObjectName | None = Field(
        default=None,
        description="Runs the pods (and so the model fetch) as this ServiceAccount, e.g. one bound to a cloud "
        "identity for object storage. Its API token is still not mounted.",
    )
    annotations: dict[str, Annotated[str, StringConstraints(max_length=4096)]] | None = Field(
        default=None, max_length=64, description="Extra pod annotations."
    )
    labels: dict[str, LabelValue] | None = Field(default=None, max_length=32, description="Extra pod labels.")
    image_pull_secrets: list[ObjectName] | None = Field(
        default=None, max_length=8, description="Secrets to pull the server and fetch images with."
    )
    priority_class_name: ObjectName | None = None
    runtime_class_name: ObjectName | None = None
    env_from: list[EnvFromSource] | None = Field(
        default=None, max_length=16, description="Variables for the server container from whole Secrets/ConfigMaps."
    )
    volumes: list[Volume] | None = Field(
        default=None,
        max_length=16,
        description="Extra volumes of the kinds restricted Pod Security allows, e.g. a CA bundle ConfigMap.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    volume_mounts: list[VolumeMount] | None = Field(
        default=None, max_length=16, description="Where the server container mounts pod.volumes."
    )
