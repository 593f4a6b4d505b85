"""Pure rendering: a ModelDeployment in, the desired child objects out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from modeldeploy.core import api
from modeldeploy.core.api import ModelDeploymentSpec, Probe
from modeldeploy.core.presets import ResolvedRuntime, resolve_runtime

MANAGED_BY = "modeldeploy"
FIELD_MANAGER = "modeldeploy"
TRACK_LABEL = f"{api.GROUP}/track"
REVISION_LABEL = f"{api.GROUP}/revision"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
STABLE = "stable"
CONTAINER_NAME = "model-server"
PORT_NAME = "http"


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns the children."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class Desired:
    revision: str
    objects: list[dict[str, Any]]


def selector_labels(owner: Owner, track: str = STABLE) -> dict[str, str]:
    return {INSTANCE_LABEL: owner.name, TRACK_LABEL: track}


def common_labels(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.model.name,
        INSTANCE_LABEL: owner.name,
        "app.kubernetes.io/version": spec.model.version,
        "app.kubernetes.io/component": "model-server",
        MANAGED_BY_LABEL: MANAGED_BY,
    }


def _probe(probe: Probe | None, port: int) -> dict[str, Any]:
    if probe is None:
        return {"tcpSocket": {"port": port}, "periodSeconds": 10}
    return {
        "httpGet": {"path": probe.path, "port": probe.port or port},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "failureThreshold": probe.failure_threshold,
    }


def _container(spec: ModelDeploymentSpec, runtime: ResolvedRuntime) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": runtime.image,
        "ports": [{"name": PORT_NAME, "containerPort": runtime.port, "protocol": "TCP"}],
        "env": runtime.env,
        "readinessProbe": _probe(runtime.readiness, runtime.port),
        "livenessProbe": _probe(runtime.liveness, runtime.port),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if runtime.command:
        container["command"] = runtime.command
    if runtime.args:
        container["args"] = runtime.args
    if spec.runtime.resources is not None:
        container["resources"] = spec.runtime.resources.model_dump(by_alias=True, exclude_none=True)
    return container


def pod_template(owner: Owner, spec: ModelDeploymentSpec, runtime: ResolvedRuntime, track: str) -> dict[str, Any]:
    """The pod template without the revision label, which is derived from it."""
    return {
        "metadata": {"labels": {**common_labels(owner, spec), TRACK_LABEL: track}},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": runtime.run_as_user,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [_container(spec, runtime)],
        },
    }


def revision_of(template: dict[str, Any]) -> str:
    """A short, stable hash of everything that changes the pods."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _metadata(name: str, owner: Owner, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner.reference()],
    }


def deployment(owner: Owner, spec: ModelDeploymentSpec, template: dict[str, Any], revision: str) -> dict[str, Any]:
    labels = {**common_labels(owner, spec), TRACK_LABEL: STABLE, REVISION_LABEL: revision}
    template = {
        "metadata": {"labels": {**template["metadata"]["labels"], REVISION_LABEL: revision}},
        "spec": template["spec"],
    }
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(owner)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": 600,
        "template": template,
    }
    # With autoscaling the HPA owns replicas: leaving the field out keeps server-side apply from fighting it.
    if spec.desired_replicas is not None:
        deployment_spec["replicas"] = spec.desired_replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner.name, owner, labels),
        "spec": deployment_spec,
    }


def service(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner.name, owner, common_labels(owner, spec)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner),
            "ports": [{"name": PORT_NAME, "port": spec.service.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def autoscaler(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    scaling = spec.autoscaling
    assert scaling is not None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(owner.name, owner, common_labels(owner, spec)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def render(owner: Owner, spec: ModelDeploymentSpec) -> Desired:
    """Every child the ModelDeployment should have. Raises SpecError for specs that cannot be served."""
    runtime = resolve_runtime(spec)
    template = pod_template(owner, spec, runtime, STABLE)
    revision = revision_of(template)
    objects = [deployment(owner, spec, template, revision), service(owner, spec)]
    if spec.autoscaling is not None:
        objects.append(autoscaler(owner, spec))
    return Desired(revision=revision, objects=objects)
