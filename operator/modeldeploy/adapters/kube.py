"""The Kubernetes API, as raw dicts: server-side apply, reads, status patches, prunes and Events."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modeldeploy.adapters import redaction
from modeldeploy.core import api, children
from modeldeploy.core.naming import FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, REVISION_LABEL
from modeldeploy.core.routers import Resource
from modeldeploy.core.status import Event

# Every kind the operator writes, from the core's registry (the workload plus every router's resources). Services
# live in the core group and go through CoreV1Api; the rest through the generic group/version/plural paths.
RESOURCES: dict[str, Resource] = dict(children.BY_KIND)
SERVICE = children.SERVICE.kind


class KubeApi(Protocol):
    """What the reconciler needs from the Kubernetes API; `Kube` is the real one, the unit tests fake it."""

    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ModelDeployment, or None when it is gone."""
        ...

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, decoded."""
        ...

    def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        """A ConfigMap's data (an analysis CA bundle)."""
        ...

    def get_analysis_template(self, cluster_scope: bool, namespace: str, name: str) -> dict[str, Any] | None:
        """An AnalysisTemplate in `namespace`, or a ClusterAnalysisTemplate; None when it does not exist."""
        ...

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One child by kind and name, or None when it does not exist."""
        ...

    def list_children(self, kind: str, namespace: str, owner_name: str) -> list[dict[str, Any]]:
        """Objects of `kind` labelled as ours for this owner; none when the kind is not served."""
        ...

    def list_pods(self, namespace: str, owner_name: str, revision: str) -> list[dict[str, Any]]:
        """This owner's pods of one revision (for what their model fetch reported)."""
        ...

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply; returns the object as the API server now has it."""
        ...

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Deletes exactly the object with this uid, if it is still there."""
        ...

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patches the ModelDeployment's status; returns it as the API server now has it (None if unknown)."""
        ...

    def emit_event(self, owner: dict[str, Any], event: Event) -> None:
        """Posts an Event about the ModelDeployment `owner`."""
        ...


def load_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, the kubeconfig otherwise."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def _body(response: Any) -> dict[str, Any]:
    return json.loads(response.data)  # type: ignore[no-any-return]


def is_not_served(error: ApiException) -> bool:
    """404 on a collection: the kind's CRD is not installed."""
    return bool(error.status == 404)


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
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

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, decoded; only for the analysis credentials a spec names."""
        secret = self.core.read_namespaced_secret(name, namespace)
        data = {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}
        for value in data.values():
            redaction.register(value)  # masked in every log line from now on, whatever library writes it
        return data

    def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        """A ConfigMap's data; only for the analysis CA bundle a spec names."""
        return dict(self.core.read_namespaced_config_map(name, namespace).data or {})

    def get_analysis_template(self, cluster_scope: bool, namespace: str, name: str) -> dict[str, Any] | None:
        """Read only while a canary's analysis measures; None when it does not exist."""
        try:
            if cluster_scope:
                response = self.custom.get_cluster_custom_object(
                    api.GROUP, api.VERSION, api.CLUSTER_TEMPLATE_PLURAL, name, _preload_content=False
                )
            else:
                response = self.custom.get_namespaced_custom_object(
                    api.GROUP, api.VERSION, namespace, api.TEMPLATE_PLURAL, name, _preload_content=False
                )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return _body(response)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            if kind == SERVICE:
                return _body(self.core.read_namespaced_service(name, namespace, _preload_content=False))
            r = RESOURCES[kind]
            return _body(
                self.custom.get_namespaced_custom_object(
                    r.group, r.version, namespace, r.plural, name, _preload_content=False
                )
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def list_pods(self, namespace: str, owner_name: str, revision: str) -> list[dict[str, Any]]:
        selector = f"{INSTANCE_LABEL}={owner_name},{MANAGED_BY_LABEL}={MANAGED_BY},{REVISION_LABEL}={revision}"
        listing = _body(self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False))
        items: list[dict[str, Any]] = listing["items"]
        return items

    def list_children(self, kind: str, namespace: str, owner_name: str) -> list[dict[str, Any]]:
        """Objects of `kind` labelled as ours for this owner; none when the kind is not served at all."""
        selector = f"{INSTANCE_LABEL}={owner_name},{MANAGED_BY_LABEL}={MANAGED_BY}"
        try:
            if kind == SERVICE:
                listing = _body(
                    self.core.list_namespaced_service(namespace, label_selector=selector, _preload_content=False)
                )
                api_version = "v1"
            else:
                r = RESOURCES[kind]
                listing = _body(
                    self.custom.list_namespaced_custom_object(
                        r.group, r.version, namespace, r.plural, label_selector=selector, _preload_content=False
                    )
                )
                api_version = r.api_version
        except ApiException as error:
            if is_not_served(error):
                return []
            raise
        items: list[dict[str, Any]] = listing["items"]
        for item in items:  # a LIST leaves out each item's apiVersion and kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under our one field manager; a controller forces conflicts on what it owns.

        The body is JSON (which is YAML) in UTF-8, written here: the generated client's json.dumps escapes
        characters outside the Basic Multilingual Plane (an emoji) as UTF-16 surrogate pairs, which the API
        server's YAML decoder refuses ("invalid Unicode character escape code")."""
        meta, kind = obj["metadata"], obj["kind"]
        namespace, name = quote(meta["namespace"], safe=""), quote(meta["name"], safe="")
        if kind == SERVICE:
            path = f"/api/v1/namespaces/{namespace}/services/{name}"
        else:
            r = RESOURCES[kind]
            path = f"/apis/{r.group}/{r.version}/namespaces/{namespace}/{r.plural}/{name}"
        method, url, headers, _, _ = self.api_client.param_serialize(
            "PATCH",
            path,
            query_params=[("fieldManager", FIELD_MANAGER), ("force", True)],
            header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        body = json.dumps(obj, ensure_ascii=False).encode()
        response = self.api_client.call_api(method, url, header_params=headers, body=body)
        response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return json.loads(response.data or b"{}")  # type: ignore[no-any-return]

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Deletes exactly the object we saw (uid precondition), never a namesake created since."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            if kind == SERVICE:
                self.core.delete_namespaced_service(name, namespace, body=options)
            else:
                r = RESOURCES[kind]
                self.custom.delete_namespaced_custom_object(r.group, r.version, namespace, r.plural, name, body=options)
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        return _body(
            self.custom.patch_namespaced_custom_object_status(
                api.GROUP,
                api.VERSION,
                namespace,
                api.PLURAL,
                name,
                {"status": patch},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        )

    def list_managed(self, kind: str, namespace: str | None, page: int = 200) -> Iterator[dict[str, Any]]:
        """Every object of `kind` labelled as managed by us, in `namespace` or in all (None), `page` at a time;
        nothing when the kind is not served. Fills the informer cache at start-up."""
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
        r = RESOURCES[kind]
        token: str | None = None
        while True:
            options: dict[str, Any] = {"label_selector": selector, "limit": page, "_preload_content": False}
            if token:
                options["_continue"] = token
            response: Any
            try:
                if kind == SERVICE and namespace is None:
                    response = self.core.list_service_for_all_namespaces(**options)
                elif kind == SERVICE:
                    response = self.core.list_namespaced_service(str(namespace), **options)
                elif namespace is None:
                    response = self.custom.list_cluster_custom_object(r.group, r.version, r.plural, **options)
                else:
                    response = self.custom.list_namespaced_custom_object(
                        r.group, r.version, namespace, r.plural, **options
                    )
            except ApiException as error:
                if is_not_served(error):
                    return
                raise
            listing = _body(response)
            for item in listing["items"]:  # a LIST leaves out each item's apiVersion and kind
                item.setdefault("apiVersion", r.api_version)
                item.setdefault("kind", kind)
                yield item
            token = listing.get("metadata", {}).get("continue")
            if not token:
                return

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
