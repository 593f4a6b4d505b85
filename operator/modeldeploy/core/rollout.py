"""The rollout state machine: (spec, observed, previous status, now) -> (next state, what to write).

It is pure and restart-safe: everything it needs to resume lives in `status`, and each decision is taken
from what the cluster shows now, so repeating a reconcile never repeats or skips a weight change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, get_args

from modeldeploy.core.analysis import bake_analysis, overall, time_to_rollback
from modeldeploy.core.api import (
    HISTORY_LIMIT,
    MEASUREMENTS_KEPT,
    ActionName,
    ActionStatus,
    AnalysisStatus,
    BakeStatus,
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
class CriticalBreach:
    revision: str
    """The revision that breached: a breach applies to it alone (never to a canary that replaced it)."""
    message: str
    """The metric, its value and the critical bound."""


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
    previous: DeploymentState | None = None
    """The Deployment that keeps the previous revision warm during a promotion and its bake."""
    critical_breach: CriticalBreach | None = None
    """A critical bound the canary (or the revision on bake) breached."""
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
    previous_replicas: int | None = None
    """Write the warm Deployment of the previous revision with this many pods; None removes it."""
    stable_runs_previous: bool = False
    """A failed bake: the stable Deployment gets the warm Deployment's pod template back."""
    route_to_previous: bool = False
    """A failed bake: `weight` goes to the warm previous revision (the canary Service selects its pods)."""


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
        decided = Decision(
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
        return self._with_warm_revision(decided)

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

        if self.status.bake is not None:
            baking = self._bake(self.status.bake)
            if baking is not None:
                return baking
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
        breach = self.obs.critical_breach
        if breach is not None and breach.revision == canary.revision and canary.phase != "Promoting":
            self._answer(action, "the canary breached a critical bound and was rolled back")
            return self._roll_back(canary, "CriticalBreach", breach.message)
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
            failure = self._record_tick(canary.revision)
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

    def _record_tick(self, revision: str) -> tuple[str, str] | None:
        """Folds this tick's measurements into status.analysis; a (reason, message) means roll back."""
        analysis = self.spec.rollout.analysis
        measurements = self.obs.measurements
        current = self.status.analysis
        if analysis is None or measurements is None or current is None or current.revision != revision:
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
            self._start_bake(canary)
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

    # -- the bake after a promotion ---------------------------------------------------------------------

    def _ready_warm_pods(self, revision: str) -> int:
        live = self.obs.previous
        if live is None or live.revision != revision or live.observed_generation < live.generation:
            return 0
        return min(live.updated_replicas, live.available_replicas)

    def _with_warm_revision(self, decided: Decision) -> Decision:
        """The warm Deployment of the previous revision: from the start of a promotion that a bake follows (so
        that the previous revision's pods never all go), through the bake, until its pods are drained."""
        bake = self.status.bake
        canary = self.status.canary
        if bake is not None:
            # Reverting, the warm revision takes all the traffic: it gets the stable track's pod count.
            pods = max(bake.warm_replicas, self.stable_replicas()) if bake.phase == "Reverting" else bake.warm_replicas
            return replace(decided, previous_replicas=pods)
        if (
            canary is not None
            and canary.phase == "Promoting"
            and self.spec.rollout.bake_seconds is not None
            and self.status.stable is not None
        ):
            return replace(decided, previous_replicas=self.spec.rollout.warm_replicas)
        return decided

    def _start_bake(self, canary: CanaryStatus) -> None:
        seconds, previous = self.spec.rollout.bake_seconds, self.status.stable
        if seconds is None or previous is None or previous.revision == canary.revision:
            return
        bake = BakeStatus(
            revision=canary.revision,
            model=canary.model,
            previous=previous,
            phase="Baking",
            started_at=self.stamp,
            ends_at=now_rfc3339(self.now + timedelta(seconds=seconds)),
            warm_replicas=self.spec.rollout.warm_replicas,
            ready_warm_replicas=self._ready_warm_pods(previous.revision),
        )
        analysis = self.status.analysis
        if analysis is not None:
            # The bake counts its own failures, measured from now on.
            fresh = {
                "failures": 0,
                "consecutive_successes": 0,
                "consecutive_errors": 0,
                "consecutive_no_data": 0,
                "last_result": None,
                "next_measurement_at": None,
            }
            self.update(analysis=analysis.model_copy(update=fresh))
        self.update(bake=bake)
        self.requeue.append(float(seconds))
        self.event(
            "Normal",
            "BakeStarted",
            f"Revision {canary.revision} bakes for {seconds}s; revision {previous.revision} (version "
            f"{previous.model.version}) is kept warm on {bake.warm_replicas} pods, and a breach moves traffic back to "
            "it at once",
        )

    def _bake(self, bake: BakeStatus) -> Decision | None:
        """A decision while the bake (or its revert) goes on; None once it has ended and the usual rules apply."""
        bake = bake.model_copy(update={"ready_warm_replicas": self._ready_warm_pods(bake.previous.revision)})
        if bake.phase == "Reverting":
            return self._revert(bake)
        if self.target != bake.revision:
            self.event(
                "Normal",
                "BakeEnded",
                f"The bake of revision {bake.revision} ended early: the spec now asks for revision {self.target}",
            )
            self.update(bake=None)
            return None
        failure: str | None = None
        breach = self.obs.critical_breach
        if breach is not None and breach.revision == bake.revision:
            failure = breach.message
        elif self.spec.rollout.analysis is not None:
            # The tick measured what a bake measures (see bake_analysis), one measurement per metric of it.
            rollout = self.spec.rollout.model_copy(update={"analysis": bake_analysis(self.spec.rollout.analysis)})
            self.spec = self.spec.model_copy(update={"rollout": rollout})
            tick = self._record_tick(bake.revision)
            failure = None if tick is None else tick[1] if tick[0] == "AnalysisFailed" else f"{tick[0]}: {tick[1]}"
        if failure is not None:
            return self._fail_bake(bake, failure)
        remaining = -_seconds_since(bake.ends_at, self.now)
        if remaining <= 0:
            self.event(
                "Normal",
                "BakePassed",
                f"Revision {bake.revision} passed its bake; the warm pods of revision {bake.previous.revision} go",
            )
            self.update(bake=None)
            return None
        self._answer(self.obs.action, f"revision {bake.revision} is baking; no canary in progress")
        self.update(bake=bake)
        self.requeue.append(remaining)
        analysis = self.status.analysis
        if analysis is not None and analysis.next_measurement_at is not None:
            self.requeue.append(max(0.0, -_seconds_since(analysis.next_measurement_at, self.now)))
        return self.decision(True, None, 0)

    def _fail_bake(self, bake: BakeStatus, message: str) -> Decision:
        entry = HistoryEntry(
            revision=bake.revision,
            model=bake.model,
            outcome="RolledBack",
            started_at=bake.started_at,
            finished_at=self.stamp,
            reason="BakeFailed",
            message=message,
        )
        self.update(
            history=[*self.status.history, entry][-HISTORY_LIMIT:],
            rejected_revision=bake.revision,
            last_rollback=RollbackStatus(
                revision=bake.revision, model=bake.model, reason="BakeFailed", message=message, at=self.stamp
            ),
        )
        self.event("Warning", "BakeFailed", f"Revision {bake.revision} failed its bake: {message}")
        self.event(
            "Warning",
            "RolledBack",
            f"Rolled back revision {bake.revision} (BakeFailed): {message}; traffic moves to the warm revision "
            f"{bake.previous.revision} while the stable track rolls back to it",
        )
        self._answer(self.obs.action, f"revision {bake.revision} failed its bake and is rolled back")
        return self._revert(bake.model_copy(update={"phase": "Reverting"}))

    def _revert(self, bake: BakeStatus) -> Decision:
        """Traffic on the warm previous revision (only once it has ready pods) while the stable track rolls back
        to it; then traffic back on the stable track, and the warm pods drain."""
        stable, previous = self.obs.stable, bake.previous
        if stable is not None and stable.rolled_out(previous.revision, self.spec.desired_replicas):
            if bake.scale_down_at is None:
                self.event("Normal", "Reverted", f"Revision {previous.revision} is stable again")
                due = now_rfc3339(self.now + timedelta(seconds=self.spec.rollout.scale_down_delay_seconds))
                bake = bake.model_copy(update={"weight": 0, "scale_down_at": due})
                self.update(stable=previous)
            remaining = -_seconds_since(bake.scale_down_at, self.now) if bake.scale_down_at else 0.0
            if remaining <= 0:
                self.update(bake=None)
                return self.decision(False, None, 0)
            self.update(bake=bake)
            self.requeue.append(remaining)
            return replace(self.decision(False, None, 0), route_to_previous=True)
        weight = 100 if bake.ready_warm_replicas > 0 else 0  # never weight on pods that are not ready
        self.update(bake=bake.model_copy(update={"weight": weight}))
        self.requeue.append(RECHECK_SECONDS)
        return replace(self.decision(False, None, weight), stable_runs_previous=True, route_to_previous=True)


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


def bake_measurement_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> bool:
    """Whether this reconcile should measure the revision on bake (the caller runs the queries)."""
    analysis, bake, state = spec.rollout.analysis, status.bake, status.analysis
    if analysis is None or bake is None or bake.phase != "Baking" or state is None or state.revision != bake.revision:
        return False
    return state.next_measurement_at is None or _seconds_since(state.next_measurement_at, now) >= 0


def critical_revision(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> str | None:
    """The revision whose critical bounds are checked now: a canary with traffic (at any step), or the revision on
    bake; None when there is nothing to check."""
    analysis, canary, bake = spec.rollout.analysis, status.canary, status.bake
    if analysis is None:
        return None
    if canary is not None and canary.phase != "Promoting" and canary.weight > 0:
        return canary.revision
    if bake is not None and bake.phase == "Baking":
        return bake.revision
    return None


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
