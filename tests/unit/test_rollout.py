"""The rollout state machine, case by case: (spec, observed, previous status, now) -> decision."""

from datetime import UTC, datetime, timedelta

import pytest

from modeldeploy.core.api import ModelDeploymentStatus, RevisionStatus, ServedModel, parse_spec
from modeldeploy.core.rollout import Action, Decision, Observed, decide, parse_action
from modeldeploy.core.status import DeploymentState, now_rfc3339
from specs import valid_spec

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
OLD, NEW = "old0000000", "new0000000"
MODEL = ServedModel(name="fraud-scorer", version="8", uri="s3://m/8")
STEPS = [{"setWeight": 25}, {"pause": {"duration": "60s"}}, {"setWeight": 50}, {"pause": {}}]


def spec(steps=None, **overrides):
    rollout = {"steps": STEPS if steps is None else steps, "progressDeadlineSeconds": 120, "scaleDownDelaySeconds": 30}
    return parse_spec(valid_spec(rollout=rollout, **overrides))


def dep(revision, replicas=3, available=None, deadline=None):
    available = replicas if available is None else available
    return DeploymentState(
        generation=1,
        observed_generation=1,
        revision=revision,
        spec_replicas=replicas,
        replicas=replicas,
        updated_replicas=replicas,
        ready_replicas=available,
        available_replicas=available,
        available=True,
        deadline_exceeded_message=deadline,
    )


STABLE_OLD = ModelDeploymentStatus(
    stable=RevisionStatus(revision=OLD, model=ServedModel(name="fraud-scorer", version="7", uri="s3://m/7"))
)


def run(prev=STABLE_OLD, stable=None, canary=None, now=T0, s=None, router_weight=None, paused=False, action=None):
    obs = Observed(
        stable=stable or dep(OLD),
        canary=canary,
        router_weight=router_weight,
        paused=paused,
        action=Action(action, "id-1") if action else None,
    )
    return decide(s or spec(), NEW, MODEL, obs, prev, now)


def reasons(decision: Decision) -> list[str]:
    return [e.reason for e in decision.events]


def test_first_deployment_goes_straight_to_stable() -> None:
    d = run(prev=ModelDeploymentStatus(), stable=None)
    assert (d.stable_runs_target, d.canary_replicas, d.weight, d.status.canary) == (True, None, 0, None)


def test_nothing_new_means_no_canary() -> None:
    d = run(stable=dep(NEW))
    assert (d.stable_runs_target, d.canary_replicas, d.status.canary, d.requeue_after) == (True, None, None, None)


def test_a_new_revision_starts_a_canary_and_scales_it_before_any_traffic() -> None:
    d = run()
    assert reasons(d) == ["CanaryStarted"]
    assert d.stable_runs_target is False, "stable keeps its revision and its replicas"
    assert d.canary_replicas == 1, "3 stable pods + 1 canary pod = 25%"
    assert d.weight == 0
    canary = d.status.canary
    assert canary is not None
    assert (canary.revision, canary.step_index, canary.phase, canary.not_ready_since) == (
        NEW,
        0,
        "Progressing",
        now_rfc3339(T0),
    )


def test_ready_canary_pods_get_the_weight_then_the_timed_pause_waits() -> None:
    started = run()
    d = run(prev=started.status, canary=dep(NEW, replicas=1), now=T0 + timedelta(seconds=5))
    assert reasons(d) == ["WeightChanged"]
    assert d.weight == 25
    canary = d.status.canary
    assert (canary.step_index, canary.weight, canary.actual_weight, canary.not_ready_since) == (1, 25, 25, None)
    assert d.requeue_after == pytest.approx(30.0), "the 60 s pause is rechecked within 30 s"
    again = run(prev=d.status, canary=dep(NEW, replicas=1), now=T0 + timedelta(seconds=50))
    assert again.status.canary.step_index == 1
    assert again.requeue_after == pytest.approx(15.0)
    assert reasons(again) == [], "repeating a reconcile repeats no weight change"


def test_after_the_pause_the_next_weight_waits_for_its_pods_then_an_open_pause_holds() -> None:
    at_pause = run(prev=run().status, canary=dep(NEW, replicas=1), now=T0)
    d = run(prev=at_pause.status, canary=dep(NEW, replicas=1), now=T0 + timedelta(seconds=61))
    assert d.status.canary.step_index == 2
    assert d.canary_replicas == 3, "50% with 3 stable pods needs 3 canary pods"
    assert d.weight == 25, "the weight moves only once the pods are ready"
    d = run(prev=d.status, canary=dep(NEW, replicas=3), now=T0 + timedelta(seconds=70))
    assert (d.weight, d.status.canary.step_index, d.status.canary.phase) == (50, 3, "Paused")


def paused_at_last_step():
    d = run()
    for replicas, seconds in ((1, 1), (1, 62), (3, 63)):
        d = run(prev=d.status, canary=dep(NEW, replicas=replicas), now=T0 + timedelta(seconds=seconds))
    assert d.status.canary.phase == "Paused"
    return d


def test_promotion_rolls_stable_to_the_canary_then_finishes() -> None:
    held = paused_at_last_step()
    d = run(prev=held.status, canary=dep(NEW, replicas=3), action="promote")
    assert reasons(d) == ["ActionHandled", "PromotionStarted"]
    assert (d.stable_runs_target, d.canary_replicas, d.weight) == (True, 3, 50), "canary keeps its share meanwhile"
    assert d.status.canary.phase == "Promoting"
    rolling = run(prev=d.status, stable=dep(NEW, available=1), canary=dep(NEW))
    assert rolling.status.canary.phase == "Promoting"
    assert rolling.events == []
    done = run(prev=rolling.status, stable=dep(NEW), canary=dep(NEW), now=T0 + timedelta(seconds=100))
    assert reasons(done) == ["Promoted"]
    assert (done.stable_runs_target, done.weight, done.status.canary) == (True, 0, None)
    assert done.status.history[-1].outcome == "Promoted"
    assert done.delete_canary is False, "canary pods live on for the scale-down delay"
    assert done.requeue_after == pytest.approx(30.0)
    later = run(prev=done.status, stable=dep(NEW), canary=dep(NEW), now=T0 + timedelta(seconds=131))
    assert later.delete_canary is True
    assert later.status.canary_scale_down_at is None


def test_empty_steps_promote_as_soon_as_the_canary_is_ready() -> None:
    s = spec(steps=[])
    started = run(s=s)
    assert started.canary_replicas == 0, "the replicas router with no weight needs no canary pod"
    d = run(prev=started.status, s=s)
    assert d.status.canary.phase == "Promoting"


def test_progress_deadline_rolls_back_and_holds_the_revision() -> None:
    started = run()
    d = run(prev=started.status, canary=dep(NEW, replicas=1, available=0), now=T0 + timedelta(seconds=121))
    assert reasons(d) == ["RolledBack"]
    assert d.events[0].type == "Warning"
    assert (d.stable_runs_target, d.canary_replicas, d.weight) == (False, None, 0)
    assert d.status.rejected_revision == NEW
    assert d.status.last_rollback.reason == "ProgressDeadlineExceeded"
    assert "within 120s" in d.status.last_rollback.message
    assert d.status.history[-1].outcome == "RolledBack"
    assert d.delete_canary is True, "with the replicas router the pods are the traffic: they go at once"
    held = run(prev=d.status, now=T0 + timedelta(seconds=200))
    assert (held.status.canary, held.stable_runs_target, held.events) == (None, False, [])


def test_the_deployment_controller_reporting_a_stalled_canary_also_rolls_back() -> None:
    started = run()
    d = run(prev=started.status, canary=dep(NEW, replicas=1, available=0, deadline="ReplicaSet timed out"))
    assert d.status.last_rollback.reason == "ProgressDeadlineExceeded"
    assert "ReplicaSet timed out" in d.status.last_rollback.message


def test_retry_and_spec_change_both_lift_a_rejection() -> None:
    rejected = run(prev=run().status, canary=dep(NEW, replicas=1, available=0), now=T0 + timedelta(seconds=121))
    retried = run(prev=rejected.status, action="retry")
    assert reasons(retried) == ["ActionHandled", "Retried", "CanaryStarted"]
    assert retried.status.last_action.result == f"retrying revision {NEW}"
    other = decide(spec(), "other00000", MODEL, Observed(dep(OLD), None, None), rejected.status, T0)
    assert other.status.rejected_revision is None
    assert other.status.canary is not None
    assert other.status.canary.revision == "other00000"


def test_a_new_revision_supersedes_the_running_canary() -> None:
    running = run(prev=run().status, canary=dep(NEW, replicas=1))
    d = decide(spec(), "newer00000", MODEL, Observed(dep(OLD), dep(NEW, replicas=1), None), running.status, T0)
    assert reasons(d) == ["Superseded", "CanaryStarted"]
    assert d.status.history[-1].outcome == "Superseded"
    assert d.status.canary is not None
    assert d.status.canary.revision == "newer00000"
    assert d.weight == 0, "pods of the superseded revision get no traffic"


def test_abort_rolls_back_at_once() -> None:
    running = run(prev=run().status, canary=dep(NEW, replicas=1))
    d = run(prev=running.status, canary=dep(NEW, replicas=1), action="abort")
    assert reasons(d) == ["ActionHandled", "Aborted"]
    assert (d.weight, d.status.canary, d.status.rejected_revision) == (0, None, NEW)
    assert d.status.history[-1].outcome == "Aborted"


def test_promote_skips_one_step_and_promote_full_skips_them_all() -> None:
    at_pause = run(prev=run().status, canary=dep(NEW, replicas=1))
    skipped = run(prev=at_pause.status, canary=dep(NEW, replicas=1), action="promote")
    assert skipped.status.canary.step_index == 2
    full = run(prev=at_pause.status, canary=dep(NEW, replicas=1), action="promote-full")
    assert full.status.canary.phase == "Promoting"
    assert full.stable_runs_target is True


def test_a_manual_pause_freezes_the_steps() -> None:
    started = run()
    d = run(prev=started.status, canary=dep(NEW, replicas=1), paused=True)
    assert (d.weight, d.status.canary.phase, d.status.canary.step_index) == (0, "Paused", 0)


def test_no_traffic_to_a_canary_whose_pods_stopped_being_ready() -> None:
    at_pause = run(prev=run().status, canary=dep(NEW, replicas=1))
    assert at_pause.weight == 25
    d = run(prev=at_pause.status, canary=dep(NEW, replicas=1, available=0), now=T0 + timedelta(seconds=10))
    assert d.weight == 0
    assert d.status.canary.weight == 25, "the step's weight comes back once the pods do"
    assert d.status.canary.not_ready_since is not None


def test_actual_weight_of_a_weighted_router_is_what_the_router_object_says() -> None:
    s = spec(traffic={"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}})
    started = run(s=s)
    d = run(s=s, prev=started.status, canary=dep(NEW, replicas=1), router_weight=25)
    assert (d.weight, d.status.canary.actual_weight) == (25, 25)
    assert d.delete_canary is False


def test_action_annotation_parsing() -> None:
    assert parse_action('{"action": "abort", "id": "x1"}') == Action("abort", "x1")
    assert parse_action('{"action": "abort", "id": "x1", "by": "alice"}') == Action("abort", "x1", "alice")
    with pytest.raises(ValueError, match="unknown action"):
        parse_action('{"action": "explode", "id": "x"}')
    with pytest.raises(ValueError, match="not JSON"):
        parse_action("promote please")


def test_an_action_with_nothing_to_do_says_so() -> None:
    d = run(stable=dep(NEW), action="abort")
    assert d.status.last_action.result == "no canary in progress"


def test_history_records_direct_deployments_and_canaries_once_each() -> None:
    from modeldeploy.core.status import Observation, compute_status

    first = ModelDeploymentStatus()
    obs = Observation(generation=1, spec=spec(), revision=NEW, deployment=dep(NEW))
    deployed, _ = compute_status(first, first, obs, T0)
    assert [(h.revision, h.outcome) for h in deployed.history] == [(NEW, "Deployed")]

    held = paused_at_last_step()
    promoting = run(prev=held.status, canary=dep(NEW, replicas=3), action="promote")
    done = run(prev=promoting.status, stable=dep(NEW), canary=dep(NEW))
    final, events = compute_status(promoting.status, done.status, obs, T0)
    assert [h.outcome for h in final.history] == ["Promoted"]
    assert final.stable is not None
    assert final.stable.revision == NEW
    assert "RolloutCompleted" not in [e.reason for e in events], "Promoted says it already"


# -- metric analysis -----------------------------------------------------------------------------------------

from modeldeploy.core.api import Measurement  # noqa: E402
from modeldeploy.core.rollout import measurement_due  # noqa: E402

ANALYSIS = {
    "interval": "10s",
    "failureLimit": 1,
    "prometheus": {"address": "http://prom:9090"},
    "metrics": [{"name": "ok", "builtin": "successRate", "min": 0.99}],
}


def analysed(steps=None, **analysis):
    rollout = {
        "steps": [{"setWeight": 25}, {"analysis": {"measurements": 2}}] if steps is None else steps,
        "progressDeadlineSeconds": 120,
        "analysis": {**ANALYSIS, **analysis},
    }
    return parse_spec(valid_spec(rollout=rollout))


def tick(result, value=None):
    return [Measurement(result=result, value=value, bound=">= 0.99", message=f"{result} tick", at=now_rfc3339(T0))]


def measured(prev, result, s, seconds, value=None):
    obs = Observed(stable=dep(OLD), canary=dep(NEW, replicas=1), router_weight=None, measurements=tick(result, value))
    return decide(s, NEW, MODEL, obs, prev, T0 + timedelta(seconds=seconds))


def test_analysis_starts_with_the_canary_and_states_its_contract() -> None:
    s = analysed()
    d = run(s=s)
    assert d.status.analysis is not None
    assert d.status.analysis.revision == NEW
    assert d.status.analysis.time_to_rollback_seconds == 20, "interval 10 s x (failureLimit 1 + 1)"
    assert not measurement_due(s, d.status, T0), "no traffic yet, nothing to measure"
    with_traffic = run(s=s, prev=d.status, canary=dep(NEW, replicas=1))
    assert with_traffic.weight == 25
    assert measurement_due(s, with_traffic.status, T0)


def test_an_analysis_step_waits_for_enough_successes_in_a_row() -> None:
    s = analysed()
    d = run(s=s, prev=run(s=s).status, canary=dep(NEW, replicas=1))
    assert d.status.canary.step_index == 1, "at the analysis gate"
    d = measured(d.status, "Successful", s, 10, 0.999)
    assert d.status.canary.step_index == 1
    assert not measurement_due(s, d.status, T0 + timedelta(seconds=15))
    assert measurement_due(s, d.status, T0 + timedelta(seconds=20))
    d = measured(d.status, "Successful", s, 20, 0.999)
    assert d.status.canary.phase == "Promoting"


def test_failures_beyond_the_limit_roll_back_with_the_metric_in_the_reason() -> None:
    s = analysed()
    d = run(s=s, prev=run(s=s).status, canary=dep(NEW, replicas=1))
    d = measured(d.status, "Failed", s, 10, 0.5)
    assert d.status.canary is not None, "one failure is within failureLimit 1"
    assert "AnalysisFailed" in reasons(d)
    d = measured(d.status, "Failed", s, 20, 0.5)
    assert d.status.canary is None
    assert d.status.last_rollback.reason == "AnalysisFailed"
    assert "ok Failed tick (bound >= 0.99)" in d.status.last_rollback.message
    assert d.weight == 0


def test_no_data_holds_the_weight_and_never_promotes() -> None:
    s = analysed(steps=[{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}])
    with_traffic = run(s=s, prev=run(s=s).status, canary=dep(NEW, replicas=1))
    d = measured(with_traffic.status, "NoData", s, 5)
    assert d.status.canary.step_index == 1, "held: the weight does not advance"
    assert d.weight == 25
    for seconds in (15, 25, 35, 45):
        d = measured(d.status, "NoData", s, seconds)
    assert d.status.canary is not None, "hold never rolls back on its own"
    assert d.status.analysis.consecutive_no_data == 5


def test_no_data_with_fail_rolls_back_after_its_limit() -> None:
    s = analysed(noData={"action": "fail", "limit": 1})
    d = run(s=s, prev=run(s=s).status, canary=dep(NEW, replicas=1))
    d = measured(d.status, "NoData", s, 10)
    assert d.status.canary is not None
    d = measured(d.status, "NoData", s, 20)
    assert d.status.last_rollback.reason == "AnalysisNoData"


def test_errors_hold_by_default_and_recover() -> None:
    s = analysed(steps=[{"setWeight": 25}, {"pause": {"duration": "1s"}}])
    d = run(s=s, prev=run(s=s).status, canary=dep(NEW, replicas=1))
    d = measured(d.status, "Error", s, 10)
    assert d.status.canary.phase == "Progressing"
    assert d.status.canary.step_index == 1, "held at the pause although its second has passed"
    assert "AnalysisError" in reasons(d)
    d = measured(d.status, "Successful", s, 20, 0.999)
    assert d.status.canary.phase == "Promoting"


def test_pass_policy_does_not_hold_but_promotion_still_needs_real_data() -> None:
    s = analysed(steps=[{"setWeight": 25}], noData={"action": "pass"})
    d = run(s=s, prev=run(s=s).status, canary=dep(NEW, replicas=1))
    d = measured(d.status, "NoData", s, 10)
    assert d.status.canary.step_index == 1
    assert d.status.canary.phase == "Progressing", "all steps done, but no successful measurement yet"
    d = measured(d.status, "Successful", s, 20, 0.999)
    assert d.status.canary.phase == "Promoting"


def test_a_change_while_scaled_to_zero_rolls_straight_through() -> None:
    d = run(s=spec(replicas=0), stable=dep(OLD, replicas=0))
    assert d.stable_runs_target
    assert d.canary_replicas is None
    assert d.weight == 0
    assert d.status.canary is None
    assert "CanaryStarted" not in reasons(d)


def test_scaling_to_zero_ends_a_canary_in_progress() -> None:
    started = run()
    assert started.status.canary is not None
    d = run(prev=started.status, s=spec(replicas=0), stable=dep(OLD, replicas=0), canary=dep(NEW, replicas=1))
    assert d.stable_runs_target
    assert d.canary_replicas is None
    assert d.status.canary is None
    assert d.status.history[-1].outcome == "Superseded"
    assert d.status.history[-1].reason == "ScaledToZero"
    assert "Superseded" in reasons(d)
