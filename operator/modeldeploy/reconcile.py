"""One idempotent, level-based reconcile per ModelDeployment: read, decide, apply what differs, report."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modeldeploy.adapters import metrics, providers
from modeldeploy.adapters.background import InlineRunner, Runner
from modeldeploy.adapters.kube import KubeApi
from modeldeploy.adapters.watcher import InlineWatcher, Watcher
from modeldeploy.adapters.webhooks import GateRunner, InlineGates
from modeldeploy.core.analysis import Raw, bake_analysis, critical_analysis, critical_breaches, evaluate, queries
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
from modeldeploy.core.hooks import Delivery, GateAnswer, gate_budget, gate_condition, notifications
from modeldeploy.core.naming import ACTION_ANNOTATION, PAUSED_ANNOTATION, Owner, canary_name, previous_name
from modeldeploy.core.presets import SpecError
from modeldeploy.core.render import live_template, pod_template, render
from modeldeploy.core.repairs import ChildMemory, Repair
from modeldeploy.core.rollout import (
    Action,
    CriticalBreach,
    Decision,
    Observed,
    bake_measurement_due,
    critical_revision,
    decide,
    measurement_due,
    parse_action,
)
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
    parse_time,
    status_patch,
)
from modeldeploy.core.templates import Resolved, Template, describe_ref, resolve
from modeldeploy.core.validation import validate
from modeldeploy.sources import SourceResolver

log = logging.getLogger("modeldeploy.reconcile")

CHILD_KINDS = tuple(resource.kind for resource in CHILD_RESOURCES)
TICK_GRACE_SECONDS = 1.0
DIGEST_WAIT_SECONDS = 120.0
"""How long after a revision's pods are all ready their fetch reports are still read for a digest."""
APPLY_RETRY_SECONDS = 1.0
APPLY_RETRY_MAX_SECONDS = 300.0
GATE_ROUNDS = 4
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
    def __init__(
        self,
        kube: KubeApi,
        sources: SourceResolver | None = None,
        owns: Callable[[str], bool] | None = None,
        runner: Runner[list[Raw]] | None = None,
        watcher: Watcher | None = None,
        gates: GateRunner | InlineGates | None = None,
        notify: Callable[[str, str, list[Delivery]], None] | None = None,
    ) -> None:
        self.kube = kube
        self.sources = sources or SourceResolver(kube)
        self.runner: Runner[list[Raw]] = runner or InlineRunner()
        """Where analysis ticks run: inline by default; the operator gives a `BackgroundRunner` (own threads)."""
        self.watcher: Watcher = watcher or InlineWatcher()
        """Where critical bounds are checked: inline by default; the operator gives a `BackgroundWatcher`."""
        self.gates = gates or InlineGates(kube)
        """Where webhook gates are called: inline by default; the operator gives a `GateRunner` (own threads)."""
        self.notify = notify
        """Sends notifications without waiting for them (the operator's `Notifier.send`); none when not given."""
        self.children = ChildMemory()
        """The children this process has seen, to tell our own changes from someone else's."""
        self._apply_failures: dict[tuple[str, str], int] = {}
        """Writes the API server refused in a row, per object: their retries back off."""
        self._resolved: dict[tuple[str, str], Resolved] = {}
        """Per object, the analysis the last tick resolved (templates merged in), for the critical-bound checks."""
        self.owns = owns or (lambda uid: True)
        """Whether this replica's shard serves the object with this uid (every object when not sharded)."""

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
        # Not ours: a namesake in another shard, created since this key was queued.
        if md is None or md["metadata"].get("deletionTimestamp") or not self.owns(md["metadata"]["uid"]):
            metrics.OBJECTS.set(namespace, name, None)
            self.sources.forget((namespace, name))
            self.runner.forget((namespace, name))
            self.watcher.unwatch((namespace, name))
            self._resolved.pop((namespace, name), None)
            self.gates.forget(namespace, name)
            self.children.forget((namespace, name))
            self._apply_failures.pop((namespace, name), None)
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
        tick_wait: float | None = None  # an analysis tick runs: it wakes this object up when it finishes
        repairs: list[Repair] = []
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
            previous_live = live.get(("Deployment", previous_name(owner)))
            router = ROUTERS[spec.traffic.router]
            observed = Observed(
                stable=DeploymentState.from_object(stable_live) if stable_live else None,
                canary=DeploymentState.from_object(canary_live) if canary_live else None,
                router_weight=router.read_weight(owner, list(live.values())),
                paused=paused,
                action=action,
                previous=DeploymentState.from_object(previous_live) if previous_live else None,
            )
            unresolved = spec
            if measurement_due(spec, previous, now) or bake_measurement_due(spec, previous, now):
                resolved, measured = self._measure(spec, owner, previous, now)
                rollout = spec.rollout.model_copy(update={"analysis": resolved.analysis})
                spec = spec.model_copy(update={"rollout": rollout})
                if measured is not None:
                    observed = replace(observed, measurements=measured, analysis_templates=resolved.templates)
                else:
                    tick_wait = self.runner.wait((namespace, name))
            else:
                self.runner.forget((namespace, name))
            watched = critical_revision(unresolved, previous)
            if watched is not None:
                breach = self._watch_critical(unresolved, owner, previous, watched)
                if breach is not None:
                    observed = replace(observed, critical_breach=CriticalBreach(watched, breach))
            else:
                self.watcher.unwatch((namespace, name))
                self._resolved.pop((namespace, name), None)
            known = spec.model.digest or _known_digest(previous, target.revision)
            fetch = self._fetch_report(owner, spec, target.revision, previous, known, now)
            digest = known or (fetch.digest if fetch else None)
            observation = replace(observation, fetch=fetch, digest=digest)
            model = served_model(spec, previous.source, digest)
            decision = decide(spec, target.revision, model, observed, previous, now)
            answers: dict[str, GateAnswer] = {}
            for _ in range(GATE_ROUNDS):  # an answer in may open the next gate (confirm-rollout, then pre-rollout)
                new = {c.fingerprint: a for c in decision.gate_calls if (a := self.gates.take(namespace, name, c))}
                if not new:
                    break
                answers |= new
                observed = replace(observed, gate_answers=answers)
                decision = decide(spec, target.revision, model, observed, previous, now)
            self.sources.tag_outcomes(namespace, declared, _ended(decision))
            stable_template = live_template(stable_live) if stable_live and not decision.stable_runs_target else target
            # A canary Deployment nobody writes any more drains until its scale-down time (its Service with it).
            draining = canary_live is not None and decision.canary_replicas is None and not decision.delete_canary
            # The previous revision's template: the warm Deployment's own, or (as a promotion starts) the one the
            # stable track still runs; written before the stable Deployment, so it is never lost.
            warm_template = (
                live_template(previous_live)
                if previous_live
                else live_template(stable_live)
                if stable_live and DeploymentState.from_object(stable_live).revision != target.revision
                else None
            )
            if decision.stable_runs_previous and warm_template is not None:
                stable_template = warm_template
            desired = render(
                owner,
                spec,
                stable_template,
                target if decision.canary_replicas is not None else None,
                decision.canary_replicas or 0,
                decision.weight,
                draining=draining,
                previous=warm_template if decision.previous_replicas is not None else None,
                previous_replicas=decision.previous_replicas or 0,
                route_to_previous=decision.route_to_previous,
            )
            keep = {("Deployment", canary_name(owner))} if draining else set()
            stable_after = self._converge(owner, desired, live, keep, _existed(owner, previous), repairs)
            self._apply_failures.pop((namespace, name), None)
            observation = replace(observation, spec=spec, deployment=DeploymentState.from_object(stable_after))
        except SpecError as error:
            observation = _failed(observation, INVALID_SPEC, str(error))
        except ReconcileError as error:
            observation = _failed(observation, error.reason, error.message)
            decision = None
            retry = error.retry_after

        current = decision.status if decision else previous
        status, events = compute_status(stored, current, observation, now)
        if decision is not None:
            status = gate_condition(status, observation.spec, decision.gate_held, observation.generation, now)
        events = [*(decision.events if decision else []), *events]
        events += [Event("Warning", repair.reason, repair.message) for repair in repairs]
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
            if patch is None or (event.reason, event.message) != (
                observation.failure_reason,
                observation.failure_message,
            ):  # the failure's own line above says it already
                log.info("[%s/%s] %s: %s", namespace, name, event.reason, event.message)
            try:
                self.kube.emit_event(md, event)
            except ApiException as error:
                log.warning("[%s/%s] Could not post Event %s: %s", namespace, name, event.reason, error.reason)
        if decision is not None and self.notify is not None and observation.spec is not None:
            sends = notifications(
                namespace, name, meta["uid"], observation.spec.rollout.notifications, decision.events, status, now
            )
            if sends:
                self.notify(namespace, name, sends)
        again = _soonest(decision.requeue_after if decision else retry, look_again)
        if decision is not None and decision.gate_calls:
            # The runner queues the object when a call is answered; this is the backstop.
            calls = max(gate_budget(c.hook, parse_duration(c.hook.timeout)) for c in decision.gate_calls)
            again = _soonest(again, calls + TICK_GRACE_SECONDS)
        if tick_wait is not None and again is not None:
            # The overdue tick would ask for "now" again and again: the runner queues the object when the tick is
            # done; until then, look again no sooner than its deadline.
            again = max(again, tick_wait + TICK_GRACE_SECONDS)
        return again

    def _fetch_report(
        self,
        owner: Owner,
        spec: ModelDeploymentSpec,
        revision: str,
        previous: ModelDeploymentStatus,
        known: str | None,
        now: datetime,
    ) -> FetchReport | None:
        """What the revision's pods said of their model fetch; read (a LIST of pods, not cached) only while it
        matters: the revision's pods are not all ready (a failing fetch would be why), or they became ready a short
        while ago and their digest is unknown (a report can land just after readiness). Pods that have been ready
        for longer will not report anything new: reading them on every reconcile (and for every object after a
        restart) would cost a LIST each, which the API server answers by scanning the namespace's pods."""
        if not needs_fetch(spec.model.uri):
            return None
        pending = _pods_pending(previous, revision)
        if not pending and (known is not None or _ready_for(previous, now) > DIGEST_WAIT_SECONDS):
            return None
        return read_fetch_report(self.kube.list_pods(owner.namespace, owner.name, revision))

    def _measure(
        self, spec: ModelDeploymentSpec, owner: Owner, previous: ModelDeploymentStatus, now: datetime
    ) -> tuple[Resolved, list[Measurement] | None]:
        """One analysis tick: the templates read and merged, every metric measured by its provider within its
        timeout. The measuring runs on the runner (off this reconcile's thread): None while it has not finished."""
        analysis = spec.rollout.analysis
        assert analysis is not None
        stamp = now_rfc3339(now)
        resolved = self._resolved[(owner.namespace, owner.name)] = self._resolve(spec, owner.namespace)
        if previous.canary is not None:
            revision = previous.canary.revision
            stable = previous.stable.revision if previous.stable else None
        else:
            # A bake measures the new stable against its absolute bounds; the warm revision has no traffic.
            assert previous.bake is not None
            revision, stable = previous.bake.revision, None
            resolved = replace(resolved, analysis=bake_analysis(resolved.analysis))
        planned = queries(
            resolved.analysis,
            spec.runtime.preset,
            owner.namespace,
            owner.name,
            revision,
            stable,
            resolved.sources,
        )
        context = providers.Context(owner.namespace, owner.name, self.kube)
        # What is asked, for which canary and which tick: answers to anything else are never used.
        asked = f"{revision}|{previous.analysis and previous.analysis.next_measurement_at}|{planned!r}"
        fingerprint = hashlib.sha256(asked.encode()).hexdigest()
        raws = self.runner.take(
            (owner.namespace, owner.name),
            fingerprint,
            lambda: providers.measure(planned, context),
            providers.budget(planned),
        )
        if raws is None:
            return resolved, None
        measurements = [evaluate(q.metric, raw, stamp) for q, raw in zip(planned, raws, strict=True)]
        for measurement in measurements:
            metrics.MEASUREMENTS.labels(result=measurement.result).inc()
        return resolved, measurements

    def _watch_critical(
        self, spec: ModelDeploymentSpec, owner: Owner, previous: ModelDeploymentStatus, revision: str
    ) -> str | None:
        """A critical bound `revision` breached, from the watcher (checked at analysis.criticalInterval, off
        this reconcile's thread); starts the watch when it is not running."""
        key = (owner.namespace, owner.name)
        analysis = spec.rollout.analysis
        assert analysis is not None
        # Templates are read when a tick measures; between ticks, the checks go on with what the last tick read.
        resolved = self._resolved.get(key) if analysis.templates else None
        if resolved is None:
            resolved = self._resolved[key] = self._resolve(spec, owner.namespace)
        critical = critical_analysis(resolved.analysis)
        if critical is None:
            self.watcher.unwatch(key)
            return None
        stable = previous.stable.revision if previous.stable and previous.stable.revision != revision else None
        planned = queries(
            critical, spec.runtime.preset, owner.namespace, owner.name, revision, stable, resolved.sources
        )
        context = providers.Context(owner.namespace, owner.name, self.kube)
        fingerprint = hashlib.sha256(f"critical|{revision}|{planned!r}".encode()).hexdigest()

        def check() -> str | None:
            return critical_breaches(planned, providers.measure(planned, context), now_rfc3339(datetime.now(UTC)))

        return self.watcher.watch(key, fingerprint, check, parse_duration(critical.critical_interval))

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
        existed: frozenset[tuple[str, str]] = frozenset(),
        repairs: list[Repair] | None = None,
    ) -> dict[str, Any]:
        """Applies the children that differ, prunes the ones no longer wanted; returns the stable Deployment.
        Writes that undo someone else's change (an edit, a deletion) are added to `repairs`; `existed` are the
        children the last status shows, for when this process knows nothing of the object yet."""
        key = (owner.namespace, owner.name)
        written: dict[tuple[str, str], dict[str, Any]] = {}
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
                repair = self.children.judge(key, owner.uid, obj, current, existed)
                current = written[(kind, child_name)] = self._apply(owner, obj)
                if repair is not None:
                    metrics.CHILD_REPAIRS.labels(kind=kind, action=repair.action).inc()
                    if repairs is not None:
                        repairs.append(repair)
            if kind == "Deployment" and child_name == owner.name:
                stable = current
        self.children.remember(key, owner.uid, desired, live, written, keep)
        return stable

    def _backoff(self, key: tuple[str, str], error: ApiException) -> float:
        """When to try a refused write again: 1 s, doubling each time up to 5 minutes."""
        failures = self._apply_failures[key] = self._apply_failures.get(key, 0) + 1
        metrics.RECONCILE_ERRORS.labels(error=f"api_{error.status}").inc()
        return float(min(APPLY_RETRY_SECONDS * 2 ** (failures - 1), APPLY_RETRY_MAX_SECONDS))

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
            # A refusal the API server explains is reported in status (once: the status is written only when it
            # changes) and tried again with backoff, without a traceback per try; anything else (the API server
            # unreachable, overloaded) is raised, for the work queue's retries.
            key = (owner.namespace, owner.name)
            message = _api_message(error)
            if error.status in (400, 422):
                raise ReconcileError(
                    INVALID_SPEC, f"the API server rejected {kind} {child_name}: {message}", self._backoff(key, error)
                ) from error
            if error.status == 404 and kind in _ROUTING_BY_KIND:
                served = f"{kind} ({_ROUTING_BY_KIND[kind].api_version})"
                routers = " or ".join(routers_writing(kind))
                raise ReconcileError(
                    "RouterUnavailable",
                    f"the cluster does not serve {served}, which the {routers} traffic router writes; "
                    "install it or choose another spec.traffic.router",
                    self._backoff(key, error),
                ) from error
            if error.status == 403:
                raise ReconcileError(
                    APPLY_FAILED, f"not allowed to write {kind} {child_name}: {message}", self._backoff(key, error)
                ) from error
            if error.status in (409, 413, 500):
                if error.status == 413 or "too large" in message:
                    message += (
                        f"; the rendered {kind} is larger than the API server stores (etcd's limit is 1.5 MiB by "
                        "default): make spec.runtime.env, args or pod annotations smaller"
                    )
                raise ReconcileError(
                    APPLY_FAILED,
                    f"the API server refused {kind} {child_name} (HTTP {error.status}): {message}",
                    self._backoff(key, error),
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


def _ready_for(previous: ModelDeploymentStatus, now: datetime) -> float:
    """Seconds since the last status turned Ready (0 when it is not Ready)."""
    ready = next((c for c in previous.conditions if c.type == "Ready" and c.status == "True"), None)
    if ready is None:
        return 0.0
    try:
        return (now - parse_time(ready.last_transition_time)).total_seconds()
    except ValueError:
        return 0.0


def _existed(owner: Owner, previous: ModelDeploymentStatus) -> frozenset[tuple[str, str]]:
    """The Deployments that the last status shows running (a stable track, a canary with pods)."""
    existed = set()
    if previous.stable is not None:
        existed.add(("Deployment", owner.name))
    if previous.canary is not None and previous.canary.replicas > 0:
        existed.add(("Deployment", canary_name(owner)))
    return frozenset(existed)


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
