"""The rollout state machine: (spec, observed, previous status, now) -> (next state, what to write).

It is pure and restart-safe: everything it needs to resume lives in `status`, and each decision is taken
from what the cluster shows now, so repeating a reconcile never repeats or skips a weight change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, get_args

from modeldeploy.core.analysis import overall, time_to_rollback
from modeldeploy.core.api import (
    HISTORY_LIMIT,
    MEASUREMENTS_KEPT,
    ActionName,
    ActionStatus,
    AnalysisStatus,
    CanaryStatus,
    GateStatus,
    GateType,
    HistoryEntry,
    Measurement,
    MetricMeasurements,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Outcome,
    RollbackStatus,
    ServedModel,
    parse_duration,
)
from modeldeploy.core.hooks import GateAnswer, GateCall, check_gates
from modeldeploy.core.routers import ROUTERS
from modeldeploy.core.status import DeploymentState, Event, now_rfc3339, parse_time

ACTIONS: tuple[ActionName, ...] = get_args(ActionName)
# While a canary runs, look again at least this often, even without a watch event.
RECHECK_SECONDS = 30.0


@dataclass(frozen=True)
class Action:
    name: ActionName
    id: str
    by: str | None = None
    """Who asked, as the client said: for the record, not for authorization (RBAC decided who may annotate)."""


def parse_action(value: str) -> Action:
    """The action annotation, `{"action": "promote", "id": "...", "by": "..."}` (`by` optional); ValueError says
    what is wrong with it."""
    try:
        body = json.loads(value)
        name, action_id = body["action"], str(body["id"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"the action annotation is not JSON with 'action' and 'id': {value[:100]!r}") from error
    if name not in ACTIONS:
        raise ValueError(f"unknown action {name!r} in the action annotation; use one of {', '.join(ACTIONS)}")
    by = body.get("by")
    return Action(name=name, id=action_id, by=by[:253] if isinstance(by, str) and by else None)


@dataclass(frozen=True)
class Observed:
    stable: DeploymentState | None
    canary: DeploymentState | None
    router_weight: int | None
    paused: bool = False
    action: Action | None = None
    measurements: list[Measurement] | None = None
    """This tick's analysis measurements, one per metric in spec order, when a tick was due."""
    analysis_templates: tuple[str, ...] = ()
    """The analysis templates this tick's measurements used, e.g. 'AnalysisTemplate/std-gates@generation 3'."""
    gate_answers: dict[str, GateAnswer] = field(default_factory=dict)
    """Webhook gate answers that came back, by the fingerprint of their call."""


@dataclass(frozen=True)
class Decision:
    stable_runs_target: bool
    """The stable Deployment gets the spec's pod template; otherwise it keeps the one it runs."""
    canary_replicas: int | None
    """Write the canary Deployment with the spec's template and this many pods; None leaves it alone."""
    delete_canary: bool
    weight: int
    status: ModelDeploymentStatus
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    gate_calls: list[GateCall] = field(default_factory=list)
    """Webhook gate calls the rollout waits for (the reconcile makes them, off its workers)."""
    gate_held: GateStatus | None = None
    """The webhook gate holding the rollout, if one does."""


def _seconds_since(stamp: str, now: datetime) -> float:
    return (now - parse_time(stamp)).total_seconds()


class _Machine:
    """One decision's working state."""

    def __init__(
        self,
        spec: ModelDeploymentSpec,
        target: str,
        model: ServedModel,
        obs: Observed,
        prev: ModelDeploymentStatus,
        now: datetime,
    ) -> None:
        self.spec, self.target, self.model, self.obs, self.now = spec, target, model, obs, now
        self.router = ROUTERS[spec.traffic.router]
        self.stamp = now_rfc3339(now)
        self.status = prev
        self.events: list[Event] = []
        self.requeue: list[float] = []
        self.gate_calls: list[GateCall] = []
        self.gate_held: GateStatus | None = None

    # -- helpers ---------------------------------------------------------------------------------------

    def event(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def update(self, **changes: object) -> None:
        self.status = self.status.model_copy(update=changes)

    def remember(
        self, outcome: Outcome, canary: CanaryStatus, reason: str | None = None, message: str | None = None
    ) -> None:
        entry = HistoryEntry(
            revision=canary.revision,
            model=canary.model,
            outcome=outcome,
            started_at=canary.started_at,
            finished_at=self.stamp,
            reason=reason,
            message=message,
        )
        self.update(history=[*self.status.history, entry][-HISTORY_LIMIT:])

    def stable_replicas(self) -> int:
        if self.spec.desired_replicas is not None:
            return self.spec.desired_replicas
        return self.obs.stable.spec_replicas if self.obs.stable else 1

    def pods_for(self, weight: int) -> int:
        return self.router.canary_pods(self.stable_replicas(), weight, self.spec.rollout.canary_replicas)

    def ready_canary_pods(self) -> int:
        """Ready canary pods that run the target revision (not a superseded one still rolling away)."""
        live = self.obs.canary
        if live is None or live.revision != self.target or live.observed_generation < live.generation:
            return 0
        return min(live.updated_replicas, live.available_replicas)

    def actual_weight(self, weight: int) -> int:
        ready = self.ready_canary_pods()
        if self.router.weight_from_pods:
            stable_ready = self.obs.stable.available_replicas if self.obs.stable else 0
            total = stable_ready + ready
            return round(100 * ready / total) if total else 0
        if ready == 0:
            return 0
        return self.obs.router_weight if self.obs.router_weight is not None else 0

    def decision(self, stable_runs_target: bool, canary_replicas: int | None, weight: int) -> Decision:
        delete = False
        if canary_replicas is None and self.obs.canary is not None:
            delete = self._drain_canary()
        requeue = min(self.requeue) if self.requeue else None
        return Decision(
            stable_runs_target,
            canary_replicas,
            delete,
            weight,
            self.status,
            self.events,
            requeue,
            self.gate_calls,
            self.gate_held,
        )

    def _gate(self, type_: GateType, revision: str, step: int | None = None) -> tuple[str, str] | bool:
        """True when every webhook of `type_` answered 2xx at this point; False while one holds; a (reason,
        message) when one failed with onFailure fail."""
        canary = self.status.canary
        stable = self.status.stable
        payload = {
            "phase": canary.phase if canary else "Waiting",
            "checksum": revision,
            "revision": revision,
            "model": self.model.model_dump(by_alias=True, exclude_none=True),
            "stableRevision": stable.revision if stable else None,
            "stepIndex": step if step is not None else (canary.step_index if canary else None),
            "stepCount": len(self.spec.rollout.steps),
            "weight": canary.weight if canary else 0,
        }
        check = check_gates(
            self.spec.rollout.webhooks,
            type_,
            revision,
            step,
            payload,
            self.status.webhooks,
            self.obs.gate_answers,
            self.now,
        )
        self.update(webhooks=check.records)
        self.gate_calls.extend(check.calls)
        if check.recheck_in is not None:
            self.requeue.append(check.recheck_in)
        if check.failed is not None:
            return "WebhookFailed", f"{check.failed.type} webhook {check.failed.name!r} answered {check.failed.answer}"
        self.gate_held = check.held
        return check.open

    def _drain_canary(self) -> bool:
        """A canary Deployment nobody routes to lives on for the scale-down delay, then goes."""
        due = self.status.canary_scale_down_at
        if due is None:
            due = now_rfc3339(self.now + timedelta(seconds=self.spec.rollout.scale_down_delay_seconds))
            self.update(canary_scale_down_at=due)
        remaining = -_seconds_since(due, self.now)
        if remaining > 0:
            self.requeue.append(remaining)
            return False
        self.update(canary_scale_down_at=None)
        return True

    # -- the machine -----------------------------------------------------------------------------------

    def run(self) -> Decision:
        action = self.obs.action
        if action is not None:
            self.update(
                last_action=ActionStatus(action=action.name, id=action.id, at=self.stamp, result="", by=action.by)
            )
        hooks = {hook.name for hook in self.spec.rollout.webhooks}
        if any(record.name not in hooks for record in self.status.webhooks):
            self.update(webhooks=[record for record in self.status.webhooks if record.name in hooks])
        if self.status.rejected_revision not in (None, self.target):
            self.update(rejected_revision=None)  # the spec changed: the old rejection no longer applies
        if action is not None and action.name == "retry":
            self._retry()

        canary = self.status.canary
        if canary is not None and canary.revision != self.target:
            self.remember("Superseded", canary, "Superseded", f"replaced by revision {self.target}")
            self.event(
                "Normal", "Superseded", f"Canary revision {canary.revision} superseded by revision {self.target}"
            )
            self.update(canary=None)
            canary = None
        if canary is not None and canary.model != self.model:
            # Same revision, so same version and URI: what is new is the digest its pods reported.
            canary = replace_canary(canary, model=self.model)
            self.update(canary=canary)

        if self.spec.desired_replicas == 0:
            return self._roll_through_at_zero(canary, action)
        stable_revision = self.obs.stable.revision if self.obs.stable else None
        if canary is None and (self.status.stable is None or stable_revision in (None, self.target)):
            self._answer(action, "no canary in progress")
            return self.decision(True, None, 0)  # first deployment, or nothing new: no canary needed
        if canary is None and self.status.rejected_revision == self.target:
            self._answer(action, f"revision {self.target} was rolled back; retry to try it again")
            return self.decision(False, None, 0)
        if canary is None:
            if self._gate("confirm-rollout", self.target) is not True:
                self._answer(action, f"revision {self.target} waits for its confirm-rollout webhook")
                return self.decision(False, None, 0)
            canary = self._start()
        if action is not None and action.name == "abort":
            self._answer(action, f"aborted the canary of revision {canary.revision}")
            return self._roll_back(canary, "Aborted", "the canary was aborted by hand")
        if canary.phase == "Promoting" or (action is not None and action.name == "promote-full"):
            self._answer(action, "promoting")
            return self._promote(canary)
        if action is not None and action.name == "promote" and canary.step_index < canary.step_count:
            self._answer(action, f"skipped step {canary.step_index + 1}/{canary.step_count}")
            canary = replace_canary(canary, step_index=canary.step_index + 1, step_started_at=self.stamp)
        return self._progress(canary)

    def _roll_through_at_zero(self, canary: CanaryStatus | None, action: Action | None) -> Decision:
        """Scaled to zero, no track has pods to compare or traffic to split: the target rolls straight through,
        at zero pods, and a canary in progress ends (the next scale-up serves the target)."""
        if canary is not None:
            message = f"scaled to zero: revision {self.target} rolls out directly"
            self.remember("Superseded", canary, "ScaledToZero", message)
            self.event("Normal", "Superseded", f"Canary revision {canary.revision} ended: {message}")
            self.update(canary=None)
        self._answer(action, "scaled to zero: no canary")
        return self.decision(True, None, 0)

    def _answer(self, action: Action | None, result: str) -> None:
        if action is not None and self.status.last_action and not self.status.last_action.result:
            self.update(last_action=self.status.last_action.model_copy(update={"result": result}))
            # status keeps the last action only; the Event records each one, and who asked, for the audit report.
            self.event("Normal", "ActionHandled", f"{action.name} by {action.by or 'an unnamed client'}: {result}")

    def _retry(self) -> None:
        if self.status.rejected_revision == self.target:
            self.update(rejected_revision=None)
            self._answer(self.obs.action, f"retrying revision {self.target}")
            self.event("Normal", "Retried", f"Retrying revision {self.target} after its rollback")
        else:
            self._answer(self.obs.action, "nothing to retry")

    def _start(self) -> CanaryStatus:
        steps = self.spec.rollout.steps
        canary = CanaryStatus(
            revision=self.target,
            model=self.model,
            phase="Progressing",
            step_index=0,
            step_count=len(steps),
            step_started_at=self.stamp,
            started_at=self.stamp,
            desired_weight=0,
            weight=0,
            actual_weight=0,
            replicas=0,
            ready_replicas=0,
        )
        analysis = self.spec.rollout.analysis
        self.update(
            canary=canary,
            canary_scale_down_at=None,
            analysis=AnalysisStatus(revision=self.target, time_to_rollback_seconds=time_to_rollback(analysis))
            if analysis
            else None,
        )
        stable = self.status.stable
        replacing = f" against stable revision {stable.revision}" if stable else ""
        self.event(
            "Normal",
            "CanaryStarted",
            f"Started a canary of revision {self.target} (model {self.model.name} "
            f"version {self.model.version}){replacing}, {len(steps)} steps",
        )
        return canary

    def _progress(self, canary: CanaryStatus) -> Decision:
        steps = self.spec.rollout.steps
        ready = self.ready_canary_pods()
        paused = self.obs.paused
        phase: Literal["Progressing", "Paused", "Promoting"] = "Progressing"
        index, started, weight = canary.step_index, canary.step_started_at, canary.weight
        desired = weight
        if self.spec.rollout.analysis is not None:
            failure = self._record_tick(canary)
            if failure is not None:
                return self._roll_back(canary, *failure)
        holding = self._holding()
        gate = self._gate("pre-rollout", canary.revision)
        while index < len(steps):
            step = steps[index]
            if paused:
                phase = "Paused"
                break
            if holding:
                break  # the analysis has no verdict yet, or a bad one: do not advance
            if gate is True:
                gate = self._gate("rollout", canary.revision, index)
            if isinstance(gate, tuple):
                return self._roll_back(canary, *gate)
            if not gate:
                break  # a webhook has not answered 2xx (yet) at this step
            if step.analysis is not None:
                analysis = self.status.analysis
                if analysis is None or analysis.consecutive_successes < step.analysis.measurements:
                    break
            elif step.set_weight is not None:
                desired = step.set_weight
                if ready < self.pods_for(desired):
                    break  # weights move only once the canary's pods are ready
                if weight != desired:
                    self.event(
                        "Normal",
                        "WeightChanged",
                        f"Canary weight {weight}% -> {desired}% "
                        f"(step {index + 1}/{len(steps)}, revision {canary.revision})",
                    )
                    weight = desired
            elif step.pause is not None:
                if step.pause.duration is None:
                    phase = "Paused"
                    break
                remaining = parse_duration(step.pause.duration) - _seconds_since(started, self.now)
                if remaining > 0:
                    self.requeue.append(remaining)
                    break
            index, started, gate = index + 1, self.stamp, True
            if index < len(steps) and steps[index].analysis is not None and self.status.analysis is not None:
                # An analysis step counts only the measurements taken while it waits.
                self.update(analysis=self.status.analysis.model_copy(update={"consecutive_successes": 0}))
        pods = self.pods_for(desired)
        canary = replace_canary(
            canary,
            phase=phase,
            step_index=index,
            step_started_at=started,
            desired_weight=desired,
            weight=weight,
            replicas=pods,
            ready_replicas=ready,
        )
        if ready < pods:
            since = canary.not_ready_since or self.stamp
            canary = replace_canary(canary, not_ready_since=since)
            deadline = self.spec.rollout.progress_deadline_seconds
            waited = _seconds_since(since, self.now)
            stalled = self.obs.canary.deadline_exceeded_message if self.obs.canary else None
            if waited >= deadline or stalled:
                detail = stalled or f"{ready}/{pods} canary pods ready after {waited:.0f}s"
                return self._roll_back(
                    canary, "ProgressDeadlineExceeded", f"the canary did not become ready within {deadline}s: {detail}"
                )
            self.requeue.append(deadline - waited)
        else:
            canary = replace_canary(canary, not_ready_since=None)
        if isinstance(gate, tuple):
            return self._roll_back(canary, *gate)  # pre-rollout failed, or a rollout hook at the last step
        if index >= len(steps) and not paused and ready >= pods and self._analysis_passed() and gate is True:
            gate = self._gate("confirm-promotion", canary.revision)
            if isinstance(gate, tuple):
                return self._roll_back(canary, *gate)
            if gate:
                return self._promote(canary)
        if self.status.analysis is not None and self.status.analysis.next_measurement_at is not None:
            self.requeue.append(max(0.0, -_seconds_since(self.status.analysis.next_measurement_at, self.now)))
        # Never route to pods that are not ready.
        applied = weight if ready > 0 else 0
        canary = replace_canary(canary, actual_weight=self.actual_weight(applied))
        self.update(canary=canary)
        self.requeue.append(RECHECK_SECONDS)
        return self.decision(False, pods, applied)

    def _record_tick(self, canary: CanaryStatus) -> tuple[str, str] | None:
        """Folds this tick's measurements into status.analysis; a (reason, message) means roll back."""
        analysis = self.spec.rollout.analysis
        measurements = self.obs.measurements
        current = self.status.analysis
        if analysis is None or measurements is None or current is None or current.revision != canary.revision:
            return None
        history = {m.name: m for m in current.metrics}
        metrics = [
            MetricMeasurements(
                name=metric.name,
                measurements=[*(history[metric.name].measurements if metric.name in history else []), measured][
                    -MEASUREMENTS_KEPT:
                ],
            )
            for metric, measured in zip(analysis.metrics, measurements, strict=True)
        ]
        tick = overall([m.result for m in measurements])
        counters = {
            "failures": current.failures + (tick == "Failed"),
            "consecutive_successes": current.consecutive_successes + 1 if tick == "Successful" else 0,
            "consecutive_errors": current.consecutive_errors + 1 if tick == "Error" else 0,
            "consecutive_no_data": current.consecutive_no_data + 1 if tick == "NoData" else 0,
        }
        next_at = now_rfc3339(self.now + timedelta(seconds=parse_duration(analysis.interval)))
        templates = list(self.obs.analysis_templates)
        if current.metrics and templates != current.templates:
            # A template edited (or referenced, or dropped) mid-canary: no restart, but never silent.
            now, before = ", ".join(templates) or "none", ", ".join(current.templates) or "none"
            self.event(
                "Normal",
                "AnalysisTemplateChanged",
                f"Analysis templates now {now} (were {before}): the new definition applies from this measurement "
                "on; earlier measurements and counts stand",
            )
        updated = current.model_copy(
            update={
                **counters,
                "last_result": tick,
                "metrics": metrics,
                "next_measurement_at": next_at,
                "templates": templates,
            }
        )
        self.update(analysis=updated)
        bad = "; ".join(
            f"{metric.name} {m.message} (bound {m.bound})"
            for metric, m in zip(analysis.metrics, measurements, strict=True)
            if m.result == tick
        )
        if tick == "Failed":
            self.event(
                "Warning",
                "AnalysisFailed",
                f"Measurement failed ({updated.failures} failures, {analysis.failure_limit} tolerated): {bad}",
            )
            if updated.failures > analysis.failure_limit:
                return "AnalysisFailed", bad
        elif tick == "Error":
            self.event("Warning", "AnalysisError", f"Measurement could not be taken: {bad}")
            if analysis.errors.action == "fail" and updated.consecutive_errors > analysis.errors.limit:
                return "AnalysisError", bad
        elif tick == "NoData":
            self.event("Normal", "AnalysisNoData", f"No data yet: {bad}")
            if analysis.no_data.action == "fail" and updated.consecutive_no_data > analysis.no_data.limit:
                return "AnalysisNoData", bad
        return None

    def _holding(self) -> bool:
        """Hold: the last tick says the canary must neither advance nor be promoted."""
        analysis, status = self.spec.rollout.analysis, self.status.analysis
        if analysis is None or status is None or status.last_result in (None, "Successful"):
            return False
        if status.last_result == "Error":
            return analysis.errors.action != "pass"
        if status.last_result == "NoData":
            return analysis.no_data.action != "pass"
        return True  # a failure within failureLimit

    def _analysis_passed(self) -> bool:
        """A canary is never promoted without a real, successful last measurement."""
        if self.spec.rollout.analysis is None:
            return True
        return self.status.analysis is not None and self.status.analysis.last_result == "Successful"

    def _promote(self, canary: CanaryStatus) -> Decision:
        if canary.phase != "Promoting":
            self.event(
                "Normal",
                "PromotionStarted",
                f"Promoting revision {canary.revision}: the stable track rolls it out while the canary keeps its share",
            )
            canary = replace_canary(canary, phase="Promoting", step_index=canary.step_count)
        stable = self.obs.stable
        if stable is not None and stable.rolled_out(self.target, self.spec.desired_replicas):
            self.remember("Promoted", canary, "Promoted", f"revision {canary.revision} is stable")
            self.event(
                "Normal",
                "Promoted",
                f"Promoted revision {canary.revision} (model {canary.model.name} "
                f"version {canary.model.version}); all traffic on the stable track",
            )
            self.update(canary=None)
            return self.decision(True, None, 0)
        weight = canary.weight if self.ready_canary_pods() > 0 else 0
        self.update(canary=replace_canary(canary, actual_weight=self.actual_weight(weight)))
        self.requeue.append(RECHECK_SECONDS)
        return self.decision(True, canary.replicas, weight)

    def _roll_back(self, canary: CanaryStatus, reason: str, message: str) -> Decision:
        outcome: Outcome = "Aborted" if reason == "Aborted" else "RolledBack"
        self.remember(outcome, canary, reason, message)
        self.update(
            canary=None,
            rejected_revision=canary.revision,
            last_rollback=RollbackStatus(
                revision=canary.revision, model=canary.model, reason=reason, message=message, at=self.stamp
            ),
        )
        if self.router.weight_from_pods:
            self.update(canary_scale_down_at=self.stamp)  # the pods are the traffic: remove them now
        self.event(
            "Warning",
            outcome,
            f"Rolled back revision {canary.revision}: {message}; traffic is back on the stable track",
        )
        return self.decision(False, None, 0)


def replace_canary(canary: CanaryStatus, **changes: object) -> CanaryStatus:
    return canary.model_copy(update=changes)


def decide(
    spec: ModelDeploymentSpec,
    target: str,
    model: ServedModel,
    obs: Observed,
    prev: ModelDeploymentStatus,
    now: datetime,
) -> Decision:
    return _Machine(spec, target, model, obs, prev, now).run()


def measurement_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> bool:
    """Whether this reconcile should measure the canary's metrics (the caller runs the queries)."""
    analysis, canary, state = spec.rollout.analysis, status.canary, status.analysis
    if analysis is None or canary is None or canary.phase == "Promoting":
        return False
    if canary.weight == 0:
        return False  # a canary without traffic has nothing to measure
    if state is None or state.revision != canary.revision:
        return False
    steps = spec.rollout.steps
    at_gate = canary.step_index < len(steps) and steps[canary.step_index].analysis is not None
    if canary.step_index < analysis.starting_step and not at_gate:
        return False
    return state.next_measurement_at is None or _seconds_since(state.next_measurement_at, now) >= 0
