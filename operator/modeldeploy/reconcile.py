"""One idempotent, level-based reconcile per ModelDeployment: read, render, apply what differs, report."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modeldeploy.adapters import metrics
from modeldeploy.adapters.kube import Kube
from modeldeploy.core.api import ModelDeploymentSpec, ModelDeploymentStatus
from modeldeploy.core.compare import contains
from modeldeploy.core.presets import SpecError
from modeldeploy.core.render import Owner, render
from modeldeploy.core.status import (
    APPLY_FAILED,
    INVALID_SPEC,
    DeploymentState,
    Observation,
    compute_status,
    status_patch,
)
from modeldeploy.core.validation import validate

log = logging.getLogger("modeldeploy.reconcile")

CHILD_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler")


@dataclass
class ReconcileError(Exception):
    reason: str
    message: str


def _previous_status(raw: dict[str, Any]) -> ModelDeploymentStatus:
    try:
        return ModelDeploymentStatus.model_validate(raw)
    except ValidationError:
        # A hand-edited or foreign status is not trusted; start over from the cluster's truth.
        return ModelDeploymentStatus()


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid and ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or [])


class Reconciler:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def reconcile(self, namespace: str, name: str) -> None:
        started = time.perf_counter()
        try:
            with metrics.RECONCILES_IN_FLIGHT.track_inprogress():
                self._reconcile(namespace, name)
        except Exception as error:
            label = f"api_{error.status}" if isinstance(error, ApiException) else type(error).__name__
            metrics.RECONCILES.labels(result="error").inc()
            metrics.RECONCILE_ERRORS.labels(error=label).inc()
            raise
        else:
            metrics.RECONCILES.labels(result="success").inc()
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    def _reconcile(self, namespace: str, name: str) -> None:
        md = self.kube.get_modeldeployment(namespace, name)
        if md is None or md["metadata"].get("deletionTimestamp"):
            metrics.OBJECTS.set(f"{namespace}/{name}", None)
            return
        meta = md["metadata"]
        owner = Owner(name=name, namespace=namespace, uid=meta["uid"])
        raw_status = md.get("status") or {}
        spec: ModelDeploymentSpec | None = None
        revision: str | None = None
        deployment: DeploymentState | None = None
        failure: ReconcileError | None = None
        try:
            spec = validate(name, md.get("spec") or {})
            desired = render(owner, spec)
            revision = desired.revision
            live_deployment = self._converge(owner, desired.objects)
            deployment = DeploymentState.from_object(live_deployment)
        except SpecError as error:
            failure = ReconcileError(INVALID_SPEC, str(error))
        except ReconcileError as error:
            failure = error

        observation = Observation(
            generation=int(meta.get("generation") or 0),
            spec=spec,
            revision=revision,
            deployment=deployment,
            failure_reason=failure.reason if failure else None,
            failure_message=failure.message if failure else None,
        )
        status, events = compute_status(_previous_status(raw_status), observation, datetime.now(UTC))
        metrics.OBJECTS.set(f"{namespace}/{name}", status.phase)
        patch = status_patch(raw_status, status)
        if patch is None:
            return
        self.kube.patch_status(namespace, name, patch)
        metrics.API_WRITES.labels(kind="ModelDeployment", verb="patch-status").inc()
        if failure is not None:
            log.warning("[%s/%s] %s: %s", namespace, name, failure.reason, failure.message)
        log.info("[%s/%s] Status updated: phase=%s", namespace, name, status.phase)
        for event in events:
            try:
                self.kube.emit_event(md, event)
            except ApiException as error:
                log.warning("[%s/%s] Could not post Event %s: %s", namespace, name, event.reason, error.reason)

    def _converge(self, owner: Owner, desired: list[dict[str, Any]]) -> dict[str, Any]:
        """Applies the children that differ, prunes the ones no longer wanted; returns the live Deployment."""
        wanted = {(obj["kind"], obj["metadata"]["name"]) for obj in desired}
        live: dict[tuple[str, str], dict[str, Any]] = {}
        for kind in CHILD_KINDS:
            for obj in self.kube.list_children(kind, owner.namespace, owner.name):
                if not _owned_by(obj, owner.uid):
                    continue
                key = (kind, obj["metadata"]["name"])
                if key in wanted:
                    live[key] = obj
                else:
                    self.kube.delete(kind, owner.namespace, obj["metadata"]["name"], obj["metadata"]["uid"])
                    metrics.API_WRITES.labels(kind=kind, verb="delete").inc()
                    log.info("[%s/%s] Deleted %s %s, no longer wanted", owner.namespace, owner.name, kind, key[1])

        deployment: dict[str, Any] = {}
        for obj in desired:
            kind, child_name = obj["kind"], obj["metadata"]["name"]
            current = live.get((kind, child_name))
            if current is None:
                self._refuse_foreign(kind, owner, child_name)
            if current is None or not contains(current, obj):
                current = self._apply(owner, obj)
            if kind == "Deployment":
                deployment = current
        return deployment

    def _refuse_foreign(self, kind: str, owner: Owner, child_name: str) -> None:
        existing = self.kube.get(kind, owner.namespace, child_name)
        if existing is not None and not _owned_by(existing, owner.uid):
            raise ReconcileError(
                "NameConflict",
                f"{kind} {owner.namespace}/{child_name} already exists and is not owned by this ModelDeployment; "
                "rename the ModelDeployment or remove that object",
            )

    def _apply(self, owner: Owner, obj: dict[str, Any]) -> dict[str, Any]:
        kind, child_name = obj["kind"], obj["metadata"]["name"]
        try:
            result = self.kube.apply(obj)
        except ApiException as error:
            if error.status in (400, 422):
                raise ReconcileError(
                    INVALID_SPEC, f"the API server rejected {kind} {child_name}: {_api_message(error)}"
                ) from error
            if error.status == 403:
                raise ReconcileError(
                    APPLY_FAILED, f"not allowed to write {kind} {child_name}: {_api_message(error)}"
                ) from error
            raise
        metrics.API_WRITES.labels(kind=kind, verb="apply").inc()
        log.info("[%s/%s] Applied %s %s", owner.namespace, owner.name, kind, child_name)
        return result


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "").get("message", error.reason))
    except (TypeError, ValueError):
        return str(error.reason)
