"""One idempotent, level-based reconcile per ModelDeployment: read, decide, apply what differs, report."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modeldeploy.adapters import metrics
from modeldeploy.adapters.kube import RESOURCES, Kube
from modeldeploy.adapters.prometheus import Prometheus
from modeldeploy.core.analysis import Raw, evaluate, queries
from modeldeploy.core.api import (
    ActionStatus,
    Measurement,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    PrometheusSource,
    ServedModel,
)
from modeldeploy.core.compare import contains
from modeldeploy.core.naming import ACTION_ANNOTATION, PAUSED_ANNOTATION, Owner, canary_name
from modeldeploy.core.presets import SpecError
from modeldeploy.core.render import live_template, pod_template, render
from modeldeploy.core.rollout import Action, Decision, Observed, decide, measurement_due, parse_action
from modeldeploy.core.routers import ROUTERS, ROUTING_KINDS
from modeldeploy.core.status import (
    APPLY_FAILED,
    INVALID_SPEC,
    DeploymentState,
    Event,
    Observation,
    compute_status,
    now_rfc3339,
    status_patch,
)
from modeldeploy.core.validation import validate

log = logging.getLogger("modeldeploy.reconcile")

CHILD_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler", *ROUTING_KINDS)


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
    refs = obj["metadata"].get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def _pending_action(
    annotations: dict[str, str], previous: ModelDeploymentStatus, now: datetime
) -> tuple[Action | None, ActionStatus | None]:
    """The manual action still to handle, or the record of an unusable one (each is handled once)."""
    raw = annotations.get(ACTION_ANNOTATION)
    if not raw:
        return None, None
    handled = previous.last_action.id if previous.last_action else None
    try:
        action = parse_action(raw)
    except ValueError as error:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
        if digest == handled:
            return None, None
        return None, ActionStatus(action="invalid", id=digest, at=now_rfc3339(now), result=str(error))
    return (None if action.id == handled else action), None


class Reconciler:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def reconcile(self, namespace: str, name: str) -> float | None:
        """Returns when to look again (a canary in progress), or None."""
        started = time.perf_counter()
        try:
            with metrics.RECONCILES_IN_FLIGHT.track_inprogress():
                again = self._reconcile(namespace, name)
        except Exception as error:
            label = f"api_{error.status}" if isinstance(error, ApiException) else type(error).__name__
            metrics.RECONCILES.labels(result="error").inc()
            metrics.RECONCILE_ERRORS.labels(error=label).inc()
            raise
        else:
            metrics.RECONCILES.labels(result="success").inc()
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        return again

    def _reconcile(self, namespace: str, name: str) -> float | None:
        md = self.kube.get_modeldeployment(namespace, name)
        if md is None or md["metadata"].get("deletionTimestamp"):
            metrics.OBJECTS.set(namespace, name, None)
            return None
        meta = md["metadata"]
        annotations = meta.get("annotations") or {}
        owner = Owner(name=name, namespace=namespace, uid=meta["uid"])
        raw_status = md.get("status") or {}
        previous = _previous_status(raw_status)
        now = datetime.now(UTC)
        action, rejected_action = _pending_action(annotations, previous, now)
        paused = annotations.get(PAUSED_ANNOTATION) == "true"

        observation = Observation(
            generation=int(meta.get("generation") or 0), spec=None, revision=None, deployment=None, paused=paused
        )
        decision: Decision | None = None
        try:
            spec = validate(name, md.get("spec") or {})
            target = pod_template(owner, spec)
            observation = Observation(observation.generation, spec, target.revision, None, paused=paused)
            live = self._live_children(owner)
            stable_live = live.get(("Deployment", name))
            canary_live = live.get(("Deployment", canary_name(owner)))
            router = ROUTERS[spec.traffic.router]
            observed = Observed(
                stable=DeploymentState.from_object(stable_live) if stable_live else None,
                canary=DeploymentState.from_object(canary_live) if canary_live else None,
                router_weight=router.read_weight(owner, list(live.values())),
                paused=paused,
                action=action,
            )
            if measurement_due(spec, previous, now):
                observed = replace(observed, measurements=self._measure(spec, owner, previous, now))
            model = ServedModel(name=spec.model.name, version=spec.model.version, uri=spec.model.uri)
            decision = decide(spec, target.revision, model, observed, previous, now)
            stable_template = live_template(stable_live) if stable_live and not decision.stable_runs_target else target
            desired = render(
                owner,
                spec,
                stable_template,
                target if decision.canary_replicas is not None else None,
                decision.canary_replicas or 0,
                decision.weight,
            )
            keep = set()
            if canary_live is not None and decision.canary_replicas is None and not decision.delete_canary:
                keep.add(("Deployment", canary_name(owner)))  # drains until its scale-down time
            stable_after = self._converge(owner, desired, live, keep)
            observation = Observation(
                observation.generation, spec, target.revision, DeploymentState.from_object(stable_after), paused=paused
            )
        except SpecError as error:
            observation = _failed(observation, INVALID_SPEC, str(error))
        except ReconcileError as error:
            observation = _failed(observation, error.reason, error.message)
            decision = None

        current = decision.status if decision else previous
        status, events = compute_status(previous, current, observation, now)
        events = [*(decision.events if decision else []), *events]
        if rejected_action is not None:
            status = status.model_copy(update={"last_action": rejected_action})
            events.append(Event("Warning", "ActionRejected", rejected_action.result))
        metrics.OBJECTS.set(
            namespace,
            name,
            status.phase,
            status.canary.actual_weight if status.canary else None,
            _last_values(status) if status.canary else None,
            _bounds(observation.spec) if observation.spec else None,
        )
        patch = status_patch(raw_status, status)
        if patch is not None:
            self.kube.patch_status(namespace, name, patch)
            metrics.API_WRITES.labels(kind="ModelDeployment", verb="patch-status").inc()
            if observation.failure_reason is not None:
                log.warning("[%s/%s] %s: %s", namespace, name, observation.failure_reason, observation.failure_message)
            log.info("[%s/%s] Status updated: phase=%s", namespace, name, status.phase)
        if decision is not None:
            _count_outcomes(decision)
        for event in events:
            log.info("[%s/%s] %s: %s", namespace, name, event.reason, event.message)
            try:
                self.kube.emit_event(md, event)
            except ApiException as error:
                log.warning("[%s/%s] Could not post Event %s: %s", namespace, name, event.reason, error.reason)
        return decision.requeue_after if decision else None

    def _measure(
        self, spec: ModelDeploymentSpec, owner: Owner, previous: ModelDeploymentStatus, now: datetime
    ) -> list[Measurement]:
        """One analysis tick: every metric measured against Prometheus, each query bounded by its timeout."""
        analysis = spec.rollout.analysis
        assert analysis is not None
        assert previous.canary is not None
        stamp = now_rfc3339(now)
        stable = previous.stable.revision if previous.stable else None
        planned = queries(analysis, spec.runtime.preset, owner.namespace, owner.name, previous.canary.revision, stable)
        try:
            auth = self._prometheus_auth(owner.namespace, analysis.prometheus)
        except ReconcileError as error:
            return [evaluate(q.metric, Raw(canary=None, error=error.message), stamp) for q in planned]
        prometheus = Prometheus(analysis.prometheus, auth)
        try:
            measurements = [evaluate(q.metric, prometheus.measure(q), stamp) for q in planned]
        finally:
            prometheus.close()
        for measurement in measurements:
            metrics.MEASUREMENTS.labels(result=measurement.result).inc()
        return measurements

    def _prometheus_auth(self, namespace: str, source: PrometheusSource) -> httpx.Auth | None:
        secret_name = source.basic_auth_secret or (
            source.bearer_token_secret.name if source.bearer_token_secret else None
        )
        if secret_name is None:
            return None
        try:
            data = self.kube.read_secret(namespace, secret_name)
        except ApiException as error:
            raise ReconcileError(
                "AnalysisError", f"cannot read Secret {namespace}/{secret_name}: {error.reason}"
            ) from error
        if source.bearer_token_secret is not None:
            key = source.bearer_token_secret.key
            if key not in data:
                raise ReconcileError("AnalysisError", f"Secret {namespace}/{secret_name} has no key {key!r}")
            return BearerAuth(data[key])
        if "username" not in data or "password" not in data:
            raise ReconcileError("AnalysisError", f"Secret {namespace}/{secret_name} needs keys username and password")
        return httpx.BasicAuth(data["username"], data["password"])

    def _live_children(self, owner: Owner) -> dict[tuple[str, str], dict[str, Any]]:
        """Our children by (kind, name); objects that only carry our labels are not ours."""
        live: dict[tuple[str, str], dict[str, Any]] = {}
        for kind in CHILD_KINDS:
            for obj in self.kube.list_children(kind, owner.namespace, owner.name):
                if _owned_by(obj, owner.uid):
                    live[(kind, obj["metadata"]["name"])] = obj
        return live

    def _converge(
        self,
        owner: Owner,
        desired: list[dict[str, Any]],
        live: dict[tuple[str, str], dict[str, Any]],
        keep: set[tuple[str, str]],
    ) -> dict[str, Any]:
        """Applies the children that differ, prunes the ones no longer wanted; returns the stable Deployment."""
        wanted = {(obj["kind"], obj["metadata"]["name"]) for obj in desired} | keep
        for (kind, child_name), obj in live.items():
            if (kind, child_name) not in wanted:
                self.kube.delete(kind, owner.namespace, child_name, obj["metadata"]["uid"])
                metrics.API_WRITES.labels(kind=kind, verb="delete").inc()
                log.info("[%s/%s] Deleted %s %s, no longer wanted", owner.namespace, owner.name, kind, child_name)

        stable: dict[str, Any] = {}
        for obj in desired:
            kind, child_name = obj["kind"], obj["metadata"]["name"]
            current = live.get((kind, child_name))
            if current is None:
                self._refuse_foreign(kind, owner, child_name)
            if current is None or not contains(current, obj):
                current = self._apply(owner, obj)
            if kind == "Deployment" and child_name == owner.name:
                stable = current
        return stable

    def _refuse_foreign(self, kind: str, owner: Owner, child_name: str) -> None:
        try:
            existing = self.kube.get(kind, owner.namespace, child_name)
        except ApiException as error:
            if error.status == 404:
                return  # the kind itself is not served; applying will say so
            raise
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
            if error.status == 404 and kind in RESOURCES and kind in ROUTING_KINDS:
                raise ReconcileError(
                    "RouterUnavailable",
                    f"the cluster does not serve {kind} ({RESOURCES[kind].api_version}), which the chosen traffic "
                    "router writes; install it or choose another spec.traffic.router",
                ) from error
            if error.status == 403:
                raise ReconcileError(
                    APPLY_FAILED, f"not allowed to write {kind} {child_name}: {_api_message(error)}"
                ) from error
            raise
        metrics.API_WRITES.labels(kind=kind, verb="apply").inc()
        log.info("[%s/%s] Applied %s %s", owner.namespace, owner.name, kind, child_name)
        return result


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def _last_values(status: ModelDeploymentStatus) -> dict[str, float]:
    if status.analysis is None:
        return {}
    return {
        metric.name: metric.measurements[-1].value
        for metric in status.analysis.metrics
        if metric.measurements and metric.measurements[-1].value is not None
    }


def _bounds(spec: ModelDeploymentSpec) -> dict[tuple[str, str], float]:
    analysis = spec.rollout.analysis
    if analysis is None:
        return {}
    out = {}
    for metric in analysis.metrics:
        for side, bound in (("min", metric.min), ("max", metric.max)):
            if bound is not None:
                out[(metric.name, side)] = bound
    return out


def _count_outcomes(decision: Decision) -> None:
    """Counts canaries that ended, from the Events that say so (the history is capped, so not from it)."""
    for event in decision.events:
        if event.reason in ("Promoted", "Superseded", "RolledBack", "Aborted"):
            metrics.ROLLOUT_OUTCOMES.labels(outcome=event.reason).inc()
            rollback = decision.status.last_rollback
            if event.reason in ("RolledBack", "Aborted") and rollback is not None:
                metrics.ROLLBACKS.labels(reason=rollback.reason).inc()


def _failed(observation: Observation, reason: str, message: str) -> Observation:
    return Observation(
        observation.generation,
        observation.spec,
        observation.revision,
        None,
        failure_reason=reason,
        failure_message=message,
        paused=observation.paused,
    )


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "").get("message", error.reason))
    except (TypeError, ValueError):
        return str(error.reason)
