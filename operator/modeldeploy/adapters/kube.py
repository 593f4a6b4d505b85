"""The Kubernetes API, as raw dicts: server-side apply, reads, status patches, prunes and Events."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modeldeploy.core import api
from modeldeploy.core.render import FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from modeldeploy.core.status import Event


@dataclass(frozen=True)
class KindOps:
    read: Callable[..., Any]
    patch: Callable[..., Any]
    delete: Callable[..., Any]
    list: Callable[..., Any]


def load_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, the kubeconfig otherwise."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def _body(response: Any) -> dict[str, Any]:
    return json.loads(response.data)  # type: ignore[no-any-return]


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        apps = client.AppsV1Api(api_client)
        core = client.CoreV1Api(api_client)
        autoscaling = client.AutoscalingV2Api(api_client)
        self.core = core
        self.custom = client.CustomObjectsApi(api_client)
        self.ops = {
            "Deployment": KindOps(
                apps.read_namespaced_deployment,
                apps.patch_namespaced_deployment,
                apps.delete_namespaced_deployment,
                apps.list_namespaced_deployment,
            ),
            "Service": KindOps(
                core.read_namespaced_service,
                core.patch_namespaced_service,
                core.delete_namespaced_service,
                core.list_namespaced_service,
            ),
            "HorizontalPodAutoscaler": KindOps(
                autoscaling.read_namespaced_horizontal_pod_autoscaler,
                autoscaling.patch_namespaced_horizontal_pod_autoscaler,
                autoscaling.delete_namespaced_horizontal_pod_autoscaler,
                autoscaling.list_namespaced_horizontal_pod_autoscaler,
            ),
        }
        self.instance = socket.gethostname()

    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _body(
                self.custom.get_namespaced_custom_object(
                    api.GROUP, api.VERSION, namespace, api.PLURAL, name, _preload_content=False
                )
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _body(self.ops[kind].read(name, namespace, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def list_children(self, kind: str, namespace: str, owner_name: str) -> list[dict[str, Any]]:
        selector = f"{INSTANCE_LABEL}={owner_name},{MANAGED_BY_LABEL}={MANAGED_BY}"
        listing = _body(self.ops[kind].list(namespace, label_selector=selector, _preload_content=False))
        items: list[dict[str, Any]] = listing["items"]
        for item in items:  # a LIST leaves out each item's apiVersion and kind
            item.setdefault("apiVersion", listing["apiVersion"])
            item.setdefault("kind", kind)
        return items

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under our one field manager; a controller forces conflicts on what it owns."""
        meta = obj["metadata"]
        return _body(
            self.ops[obj["kind"]].patch(
                meta["name"],
                meta["namespace"],
                obj,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
            )
        )

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Deletes exactly the object we saw (uid precondition), never a namesake created since."""
        try:
            self.ops[kind].delete(name, namespace, body=client.V1DeleteOptions(preconditions={"uid": uid}))
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            name,
            {"status": patch},
            _content_type="application/merge-patch+json",
        )

    def emit_event(self, owner: dict[str, Any], event: Event) -> None:
        meta = owner["metadata"]
        now = datetime.now(UTC)
        body: Any = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": MANAGED_BY},
            "reportingComponent": f"{api.GROUP}/operator",
            "reportingInstance": self.instance,
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
        }
        self.core.create_namespaced_event(meta["namespace"], body)
