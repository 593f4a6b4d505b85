"""Pure rendering: a ModelDeployment plus the rollout's decisions in, the desired child objects out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from modeldeploy.core.api import EnvFromSource, ModelDeploymentSpec, PodPlacement, Probe
from modeldeploy.core.delivery import RESTRICTED_CONTAINER_SECURITY, delivery
from modeldeploy.core.naming import (
    CANARY,
    PREVIOUS,
    REVISION_LABEL,
    STABLE,
    TRACK_LABEL,
    Owner,
    canary_name,
    child_metadata,
    common_labels,
    previous_name,
    selector_labels,
)
from modeldeploy.core.presets import PRESETS, ResolvedRuntime, fetch_image, resolve_runtime
from modeldeploy.core.routers import ROUTERS

CONTAINER_NAME = "model-server"
STRATEGIES: dict[str, dict[str, Any]] = {
    # Stable never drops below capacity while it rolls.
    STABLE: {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
    # A superseded canary's pods must not serve the next canary's traffic: replace them all at once.
    CANARY: {"type": "Recreate"},
    # The warm previous revision keeps one template for its whole life.
    PREVIOUS: {"type": "Recreate"},
}
PORT_NAME = "http"
REVISION_ENV = "MODEL_REVISION"


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


def _container(spec: ModelDeploymentSpec, runtime: ResolvedRuntime, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": runtime.image,
        "ports": [{"name": PORT_NAME, "containerPort": runtime.port, "protocol": "TCP"}],
        "env": runtime.env,
        "readinessProbe": _probe(runtime.readiness, runtime.port),
        "livenessProbe": _probe(runtime.liveness, runtime.port),
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
    }
    if mounts:
        container["volumeMounts"] = mounts
    pod = spec.pod
    if pod is not None and pod.env_from:
        container["envFrom"] = [_env_from(source) for source in pod.env_from]
    if runtime.command:
        container["command"] = runtime.command
    if runtime.args:
        container["args"] = runtime.args
    if spec.runtime.resources is not None:
        container["resources"] = spec.runtime.resources.model_dump(by_alias=True, exclude_none=True)
    return container


@dataclass(frozen=True)
class PodTemplate:
    """A pod template without its track; `revision` hashes everything in it."""

    template: dict[str, Any]
    revision: str

    def for_track(self, track: str) -> dict[str, Any]:
        labels = {**self.template["metadata"]["labels"], TRACK_LABEL: track, REVISION_LABEL: self.revision}
        return {
            "metadata": {**self.template["metadata"], "labels": labels},
            "spec": _with_revision_env(self.template["spec"]),
        }


def _with_revision_env(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """MODEL_REVISION from the pod's revision label, which the model server writes into its prediction ids. Added
    after hashing, so the revision does not depend on it; a MODEL_REVISION the spec sets itself is kept."""
    containers = []
    for container in pod_spec["containers"]:
        env = container.get("env") or []
        if container["name"] == CONTAINER_NAME and not any(var.get("name") == REVISION_ENV for var in env):
            field = {"fieldRef": {"fieldPath": f"metadata.labels['{REVISION_LABEL}']"}}
            container = {**container, "env": [*env, {"name": REVISION_ENV, "valueFrom": field}]}
        containers.append(container)
    return {**pod_spec, "containers": containers}


def revision_of(template: dict[str, Any]) -> str:
    """A short, stable hash of everything that changes the pods."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _env_from(source: EnvFromSource) -> dict[str, Any]:
    ref = (
        {"secretRef": {"name": source.secret_ref}}
        if source.secret_ref
        else {"configMapRef": {"name": source.config_map_ref}}
    )
    return {**ref, **({"prefix": source.prefix} if source.prefix else {})}


def _placement(pod: PodPlacement) -> dict[str, Any]:
    """The pod spec fields `spec.pod` sets, as the API writes them."""
    placement: dict[str, Any] = {
        "nodeSelector": pod.node_selector,
        "tolerations": [t.model_dump(by_alias=True, exclude_none=True) for t in pod.tolerations or []] or None,
        "affinity": pod.affinity,
        "topologySpreadConstraints": pod.topology_spread_constraints,
        "serviceAccountName": pod.service_account_name,
        "imagePullSecrets": [{"name": name} for name in pod.image_pull_secrets or []] or None,
        "priorityClassName": pod.priority_class_name,
        "runtimeClassName": pod.runtime_class_name,
    }
    return {key: value for key, value in placement.items() if value is not None}


def pod_template(owner: Owner, spec: ModelDeploymentSpec) -> PodTemplate:
    """The spec's pod template. Raises SpecError for specs that cannot be served."""
    model = delivery(spec, fetch_image(spec), PRESETS[spec.runtime.preset].model_dir_env)
    runtime = resolve_runtime(spec, model.server_env)
    pod = spec.pod
    mounts = [
        *model.server_mounts,
        *(
            m.model_dump(by_alias=True, exclude_none=True)
            for m in (pod.volume_mounts if pod and pod.volume_mounts else [])
        ),
    ]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": runtime.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **(_placement(pod) if pod else {}),
        "containers": [_container(spec, runtime, mounts)],
    }
    if model.init_containers:
        pod_spec["initContainers"] = model.init_containers
    volumes = [
        *model.volumes,
        *(v.model_dump(by_alias=True, exclude_none=True) for v in (pod.volumes if pod else None) or []),
    ]
    if volumes:
        pod_spec["volumes"] = volumes
    metadata: dict[str, Any] = {"labels": {**(pod.labels if pod and pod.labels else {}), **common_labels(owner, spec)}}
    if pod is not None and pod.annotations:
        metadata["annotations"] = dict(pod.annotations)
    template = {"metadata": metadata, "spec": pod_spec}
    return PodTemplate(template=template, revision=revision_of(template))


def live_template(deployment: dict[str, Any]) -> PodTemplate:
    """The pod template a live Deployment runs, to keep the stable track where it is during a canary."""
    template = deployment["spec"]["template"]
    labels = {k: v for k, v in template["metadata"]["labels"].items() if k not in (TRACK_LABEL, REVISION_LABEL)}
    metadata: dict[str, Any] = {"labels": labels}
    if template["metadata"].get("annotations"):
        metadata["annotations"] = template["metadata"]["annotations"]
    return PodTemplate(
        template={"metadata": metadata, "spec": template["spec"]},
        revision=template["metadata"]["labels"][REVISION_LABEL],
    )


def deployment(
    owner: Owner,
    spec: ModelDeploymentSpec,
    template: PodTemplate,
    track: str,
    replicas: int | None,
) -> dict[str, Any]:
    """A Deployment for one track. `replicas` None leaves the count to an HPA."""
    pod = template.for_track(track)
    name = {STABLE: owner.name, CANARY: canary_name(owner), PREVIOUS: previous_name(owner)}[track]
    metadata = child_metadata(name, owner, spec, pod["metadata"]["labels"])
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(owner, track)},
        "strategy": STRATEGIES[track],
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
        "template": pod,
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": deployment_spec}


def service(owner: Owner, spec: ModelDeploymentSpec, name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(name, owner, spec),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": PORT_NAME, "port": spec.service.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def autoscaler(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    scaling = spec.autoscaling
    assert scaling is not None
    target = {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization_percentage}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(owner.name, owner, spec),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
        },
    }


def render(
    owner: Owner,
    spec: ModelDeploymentSpec,
    stable: PodTemplate,
    canary: PodTemplate | None,
    canary_replicas: int,
    weight: int,
    draining: bool = False,
    previous: PodTemplate | None = None,
    previous_replicas: int = 0,
    route_to_previous: bool = False,
) -> list[dict[str, Any]]:
    """Every child the ModelDeployment should have right now.

    `stable` is the template the stable track runs (the spec's, or the live one during a canary); `canary` is
    None when no canary Deployment should be written (absent, or left alone while it drains: `draining`).
    The `<name>-canary` Service exists only while a canary runs or drains, and only for routers that send
    traffic to it, so an idle model costs one ClusterIP.

    `previous` is the template of the previous revision, kept warm on `previous_replicas` pods during a promotion
    and its bake (written first, so that it exists before the stable track rolls away from it); with
    `route_to_previous` (a failed bake), the `<name>-canary` Service selects its pods and `weight` goes to them.
    """
    router = ROUTERS[spec.traffic.router]
    canary_track = canary is not None or draining or route_to_previous
    objects = [
        deployment(owner, spec, stable, STABLE, spec.desired_replicas),
        service(owner, spec, owner.name, router.service_selector(owner)),
    ]
    if previous is not None:
        objects.insert(0, deployment(owner, spec, previous, PREVIOUS, previous_replicas))
    if canary_track and router.routes_to_canary_service:
        track = PREVIOUS if route_to_previous else CANARY
        objects.append(service(owner, spec, canary_name(owner), selector_labels(owner, track)))
    objects.extend(router.render(owner, spec, weight if canary_track else None))
    if canary is not None:
        objects.append(deployment(owner, spec, canary, CANARY, canary_replicas))
    if spec.autoscaling is not None:
        objects.append(autoscaler(owner, spec))
    return objects
