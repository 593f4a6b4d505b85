"""How the model reaches the serving container: a fetch init container into a shared volume (KServe's shape).

- object stores, HTTP, file:// and the MLflow registry: the init container `model-fetch` (the reference model
  server's image, `modelserver fetch`) downloads the artifact into an emptyDir, and checks a pinned digest;
  the server container mounts that volume read-only at /mnt/models;
- pvc://<claim>/<path>: the claim is mounted read-only, nothing is copied;
- builtin://: a demo model built into the server; nothing to fetch.

Credentials reach only the fetch container, as `envFrom` of the named Secret: never a value in the pod spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modeldeploy.core.api import ModelDeploymentSpec
from modeldeploy.core.api.pod import MODEL_MOUNT_PATH, RESERVED_VOLUME

FETCH_CONTAINER = "model-fetch"
RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class Delivery:
    """What the pod template gains so that the server finds the model at MODEL_MOUNT_PATH."""

    init_containers: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    server_mounts: list[dict[str, Any]] = field(default_factory=list)
    server_env: dict[str, str] = field(default_factory=dict)


def _env(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in values.items()]


def delivery(spec: ModelDeploymentSpec, fetch_image: str, model_dir_env: str) -> Delivery:
    """The init container, volume and mounts for `spec.model`; `model_dir_env` tells the server where it is."""
    model = spec.model
    if model.scheme == "builtin://":
        return Delivery()
    if model.scheme == "pvc://":
        claim, _, path = model.uri.removeprefix("pvc://").partition("/")
        mount: dict[str, Any] = {"name": RESERVED_VOLUME, "mountPath": MODEL_MOUNT_PATH, "readOnly": True}
        if path:
            mount["subPath"] = path
        return Delivery(
            volumes=[{"name": RESERVED_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
            server_mounts=[mount],
            server_env={model_dir_env: MODEL_MOUNT_PATH},
        )
    storage = model.storage
    env = {
        "MODEL_URI": model.uri,
        "MODEL_DIR": MODEL_MOUNT_PATH,
        "MODEL_FETCH_TIMEOUT_SECONDS": str(storage.timeout_seconds if storage else 600),
    }
    if model.digest:
        env["MODEL_DIGEST"] = model.digest
    if storage is not None and storage.s3 is not None:
        if storage.s3.endpoint:
            env["AWS_ENDPOINT_URL"] = storage.s3.endpoint
        if storage.s3.region:
            env["AWS_REGION"] = storage.s3.region
        if storage.s3.path_style:
            env["AWS_S3_FORCE_PATH_STYLE"] = "true"
    secrets = [storage.secret_name] if storage is not None and storage.secret_name else []
    if model.registry is not None:
        env["MLFLOW_TRACKING_URI"] = model.registry.mlflow.tracking_uri
        if model.registry.mlflow.secret_name:
            secrets.append(model.registry.mlflow.secret_name)
    fetch: dict[str, Any] = {
        "name": FETCH_CONTAINER,
        "image": fetch_image,
        "args": ["fetch"],
        "env": _env(env),
        "volumeMounts": [{"name": RESERVED_VOLUME, "mountPath": MODEL_MOUNT_PATH}],
        # The fetch writes a JSON report (digest, size) here; on a crash the log's tail says why.
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
    }
    if secrets:
        fetch["envFrom"] = [{"secretRef": {"name": name}} for name in secrets]
    return Delivery(
        init_containers=[fetch],
        volumes=[{"name": RESERVED_VOLUME, "emptyDir": {}}],
        server_mounts=[{"name": RESERVED_VOLUME, "mountPath": MODEL_MOUNT_PATH, "readOnly": True}],
        server_env={model_dir_env: MODEL_MOUNT_PATH},
    )
