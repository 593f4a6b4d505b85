"""An in-memory API server with the Kubernetes adapter's interface (`KubeApi`), for reconcile-level tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

from modeldeploy.core.status import Event


class FakeKube:
    """An in-memory API server with the adapter's interface, `KubeApi`, plus the start-up listing of the
    informer cache's `ListingKubeApi` (mypy checks it: see tests/unit/test_reconcile.py)."""

    def __init__(self, spec: dict[str, Any], name: str = "fraud-scorer") -> None:
        self.md: dict[str, Any] = {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "ns", "uid": "uid-1", "generation": 1},
            "spec": spec,
        }
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.config_maps: dict[str, dict[str, str]] = {}
        self.templates: dict[tuple[bool, str], dict[str, Any]] = {}  # (cluster scope, name) -> template
        self.writes: list[tuple[str, str]] = []
        self.events: list[str] = []
        self.reject: str | None = None
        self.not_served: set[str] = set()  # kinds whose CRD the cluster lacks
        self.pods: list[dict[str, Any]] = []
        self.reads: list[tuple[str, str]] = []

    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.md)

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return dict(self.secrets[name])

    def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        if name not in self.config_maps:
            raise ApiException(status=404, reason="Not Found")
        return dict(self.config_maps[name])

    def get_analysis_template(self, cluster_scope: bool, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.templates.get((cluster_scope, name)))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((kind, name)))

    def list_children(self, kind: str, namespace: str, owner_name: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (k, _), o in self.objects.items()
            if k == kind and o["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == owner_name
        ]

    def list_pods(self, namespace: str, owner_name: str, revision: str) -> list[dict[str, Any]]:
        self.reads.append(("list", "Pod"))
        return [
            copy.deepcopy(p) for p in self.pods if p["metadata"]["labels"].get("modeldeploy.io/revision") == revision
        ]

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.reject:
            raise ApiException(status=422, reason="Unprocessable Entity")
        if obj["kind"] in self.not_served:
            raise ApiException(status=404, reason="Not Found")
        self.writes.append(("apply", obj["kind"]))
        live = copy.deepcopy(obj)
        live["metadata"]["uid"] = f"uid-{obj['kind']}"
        live["status"] = {
            "observedGeneration": 1,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "conditions": [{"type": "Available", "status": "True"}],
        }
        live["metadata"]["generation"] = 1
        self.objects[(obj["kind"], obj["metadata"]["name"])] = live
        return copy.deepcopy(live)

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        self.writes.append(("delete", kind))
        del self.objects[(kind, name)]

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Answers None (no object in the answer); a subclass may answer with the patched object."""
        self.writes.append(("patch-status", "ModelDeployment"))
        _merge(self.md.setdefault("status", {}), patch)
        return None

    def list_managed(self, kind: str, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Every object of `kind` the fake holds (all of them its reconciles wrote), in `namespace` or in all."""
        for (k, _), o in list(self.objects.items()):
            if k == kind and namespace in (None, o["metadata"].get("namespace")):
                yield copy.deepcopy(o)

    def emit_event(self, owner: dict[str, Any], event: Event) -> None:
        self.events.append(event.reason)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386, as the API server applies a merge patch: nested objects merge, null removes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
