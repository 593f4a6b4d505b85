"""One idempotent, level-based reconcile per ModelDeployment: read, decide, apply what differs, report."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modeldeploy.adapters import metrics, providers
from modeldeploy.adapters.kube import KubeApi
from modeldeploy.core.analysis import evaluate, queries
from modeldeploy.core.api import (
    ActionStatus,
    HistoryEntry,
    Measurement,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    parse_duration,
)
from modeldeploy.core.children import CHILD_RESOURCES, ROUTING_RESOURCES, routers_writing
from modeldeploy.core.compare import contains
from modeldeploy.core.fetch import FetchReport, needs_fetch, read_fetch_report
from modeldeploy.core.naming import ACTION_ANNOTATION, PAUSED_ANNOTATION, Owner, canary_name
from modeldeploy.core.presets import SpecError
from modeldeploy.core.render import live_template, pod_template, render
from modeldeploy.core.rollout import Action, Decision, Observed, decide, measurement_due, parse_action
from modeldeploy.core.routers import ROUTERS
from modeldeploy.core.source import pinned_spec, served_model
from modeldeploy.core.status import (
    ANALYSIS_TEMPLATE_NOT_FOUND,
    APPLY_FAILED,
    INVALID_SPEC,
    DeploymentState,
    Event,
    Observation,
    compute_status,
    now_rfc3339,
    status_patch,
)
from modeldeploy.core.templates import Resolved, Template, describe_ref, resolve
from modeldeploy.core.validation import validate
from modeldeploy.sources import SourceResolver

log = logging.getLogger("modeldeploy.reconcile")

CHILD_KINDS = tuple(resource.kind for resource in CHILD_RESOURCES)
_ROUTING_BY_KIND = {resource.kind: resource for resource in ROUTING_RESOURCES}


@dataclass
class ReconcileError(Exception):
    reason: str
    message: str
    retry_after: float | None = None
    """Look again this much later: for what a change elsewhere (e.g. a template created) fixes without an event."""


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
    def __init__(self, kube: KubeApi, sources: SourceResolver | None = None) -> None:
        self.kube = kube
        self.sources = sources or SourceResolver(kube)

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
            self.sources.forget((namespace, name))
            return None
        meta = md["metadata"]
        annotations = meta.get("annotations") or {}
        owner = Owner(name=name, namespace=namespace, uid=meta["uid"])
        raw_status = md.get("status") or {}
        stored = previous = _previous_status(raw_status)
        now = datetime.now(UTC)
        action, rejected_action = _pending_action(annotations, previous, now)
        paused = annotations.get(PAUSED_ANNOTATION) == "true"

        observation = Observation(
            generation=int(meta.get("generation") or 0), spec=None, revision=None, deployment=None, paused=paused
        )
        decision: Decision | None = None
        retry: float | None = None
        look_again: float | None = None
        try:
            declared = validate(name, md.get("spec") or {})
            if declared.model.registry_reference is not None:
                resolution = self.sources.resolve((namespace, name), declared, previous.source, now)
                observation = replace(observation, spec=declared, source=resolution.report)
                look_again = resolution.look_again
                if resolution.source is None:
                    raise ReconcileError(resolution.report.reason, resolution.report.message, resolution.look_again)
                previous = previous.model_copy(update={"source": resolution.source})
            elif previous.source is not None:
                previous = previous.model_copy(update={"source": None})  # no longer a registry source
            spec = pinned_spec(declared, previous.source)
            target = pod_template(owner, spec)
            observation = replace(observation, spec=spec, revision=target.revision)
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
                resolved, measured = self._measure(spec, owner, previous, now)
                rollout = spec.rollout.model_copy(update={"analysis": resolved.analysis})
                spec = spec.model_copy(update={"rollout": rollout})
                observed = replace(observed, measurements=measured, analysis_templates=resolved.templates)
            known = spec.model.digest or _known_digest(previous, target.revision)
            fetch = self._fetch_report(owner, spec, target.revision, previous, known)
            digest = known or (fetch.digest if fetch else None)
            observation = replace(observation, fetch=fetch, digest=digest)
            model = served_model(spec, previous.source, digest)
            decision = decide(spec, target.revision, model, observed, previous, now)
            self.sources.tag_outcomes(namespace, declared, _ended(decision))
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
            observation = replace(observation, spec=spec, deployment=DeploymentState.from_object(stable_after))
        except SpecError as error:
            observation = _failed(observation, INVALID_SPEC, str(error))
        except ReconcileError as error:
            observation = _failed(observation, error.reason, error.message)
            decision = None
            retry = error.retry_after

        current = decision.status if decision else previous
        status, events = compute_status(stored, current, observation, now)
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
        return _soonest(decision.requeue_after if decision else retry, look_again)

    def _fetch_report(
        self, owner: Owner, spec: ModelDeploymentSpec, revision: str, previous: ModelDeploymentStatus, known: str | None
    ) -> FetchReport | None:
        """What the revision's pods said of their model fetch; read only while it matters: the digest is unknown,
        or the revision's pods are not all ready (a failing fetch would be why)."""
        if not needs_fetch(spec.model.uri) or (known is not None and not _pods_pending(previous, revision)):
            return None
        return read_fetch_report(self.kube.list_pods(owner.namespace, owner.name, revision))

    def _measure(
        self, spec: ModelDeploymentSpec, owner: Owner, previous: ModelDeploymentStatus, now: datetime
    ) -> tuple[Resolved, list[Measurement]]:
        """One analysis tick: the templates read and merged, every metric measured by its provider, each request
        bounded by its timeout."""
        analysis = spec.rollout.analysis
        assert analysis is not None
        assert previous.canary is not None
        stamp = now_rfc3339(now)
        stable = previous.stable.revision if previous.stable else None
        resolved = self._resolve(spec, owner.namespace)
        planned = queries(
            resolved.analysis,
            spec.runtime.preset,
            owner.namespace,
            owner.name,
            previous.canary.revision,
            stable,
            resolved.sources,
        )
        raws = providers.measure(planned, providers.Context(owner.namespace, owner.name, self.kube))
        measurements = [evaluate(q.metric, raw, stamp) for q, raw in zip(planned, raws, strict=True)]
        for measurement in measurements:
            metrics.MEASUREMENTS.labels(result=measurement.result).inc()
        return resolved, measurements

    def _resolve(self, spec: ModelDeploymentSpec, namespace: str) -> Resolved:
        """The analysis with its templates merged in. A template missing or in conflict holds the canary where it
        is (nothing is measured, written or promoted) and is looked at again after an interval."""
        analysis = spec.rollout.analysis
        assert analysis is not None
        retry = parse_duration(analysis.interval)
        templates = []
        for ref in analysis.templates:
            obj = self.kube.get_analysis_template(ref.cluster_scope, namespace, ref.name)
            if obj is None:
                raise ReconcileError(
                    ANALYSIS_TEMPLATE_NOT_FOUND,
                    f"{describe_ref(ref, namespace)} not found; the canary holds (no weight change, promotion or "
                    "rollback) until it exists or spec.rollout.analysis.templates no longer names it",
                    retry,
                )
            try:
                templates.append(Template.from_object(ref, namespace, obj))
            except SpecError as error:
                raise ReconcileError(INVALID_SPEC, str(error), retry) from error
        try:
            return resolve(analysis, templates, spec.runtime.preset)
        except SpecError as error:
            raise ReconcileError(INVALID_SPEC, str(error), retry) from error

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
            if error.status == 404 and kind in _ROUTING_BY_KIND:
                served = f"{kind} ({_ROUTING_BY_KIND[kind].api_version})"
                routers = " or ".join(routers_writing(kind))
                raise ReconcileError(
                    "RouterUnavailable",
                    f"the cluster does not serve {served}, which the {routers} traffic router writes; "
                    "install it or choose another spec.traffic.router",
                ) from error
            if error.status == 403:
                raise ReconcileError(
                    APPLY_FAILED, f"not allowed to write {kind} {child_name}: {_api_message(error)}"
                ) from error
            raise
        metrics.API_WRITES.labels(kind=kind, verb="apply").inc()
        log.info("[%s/%s] Applied %s %s", owner.namespace, owner.name, kind, child_name)
        return result


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
    return replace(observation, deployment=None, failure_reason=reason, failure_message=message)


def _known_digest(previous: ModelDeploymentStatus, revision: str) -> str | None:
    for track in (previous.canary, previous.stable):
        if track is not None and track.revision == revision and track.model.digest:
            return track.model.digest
    return None


def _pods_pending(previous: ModelDeploymentStatus, revision: str) -> bool:
    """The revision's pods are not all ready yet, as far as the last status knows."""
    canary = previous.canary
    if canary is not None and canary.revision == revision:
        return canary.ready_replicas < canary.replicas
    return previous.phase not in ("Ready", "ScaledToZero")


def _soonest(*delays: float | None) -> float | None:
    known = [delay for delay in delays if delay is not None]
    return min(known) if known else None


def _ended(decision: Decision) -> list[HistoryEntry]:
    """The history entries of canaries this decision ended (at most one)."""
    ended = {"Promoted", "RolledBack", "Aborted", "Superseded"}
    if any(event.reason in ended for event in decision.events) and decision.status.history:
        return [decision.status.history[-1]]
    return []


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "").get("message", error.reason))
    except (TypeError, ValueError):
        return str(error.reason)
