"""The bake after a promotion and the critical bounds, in the rollout state machine and the analysis core."""

from datetime import UTC, datetime, timedelta

import pytest

from modeldeploy.core.analysis import Raw, bake_analysis, critical_analysis, critical_breaches, queries
from modeldeploy.core.api import (
    AnalysisStatus,
    CanaryStatus,
    Measurement,
    ModelDeploymentStatus,
    RevisionStatus,
    ServedModel,
    parse_spec,
)
from modeldeploy.core.naming import TRACK_LABEL, Owner
from modeldeploy.core.render import pod_template, render
from modeldeploy.core.rollout import CriticalBreach, Decision, Observed, bake_measurement_due, critical_revision, decide
from modeldeploy.core.status import DeploymentState, Observation, compute_status, now_rfc3339
from modeldeploy.views import bake_line
from specs import valid_spec

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
OLD, NEW, NEWER = "old0000000", "new0000000", "newer00000"
OLD_MODEL = ServedModel(name="fraud-scorer", version="7", uri="s3://m/7")
MODEL = ServedModel(name="fraud-scorer", version="8", uri="s3://m/8")
BAKE_SECONDS = 600
METRICS = [
    {"name": "ok", "builtin": "successRate", "min": 0.99, "critical": {"min": 0.5}},
    {"name": "p99", "builtin": "latencyP99", "relative": {"maxRatio": 2}},
]


def spec(bake=True, steps=None, warm=None):
    rollout = {
        "steps": [{"setWeight": 25}, {"pause": {"duration": "60s"}}, {"setWeight": 50}, {"pause": {}}]
        if steps is None
        else steps,
        "progressDeadlineSeconds": 120,
        "scaleDownDelaySeconds": 30,
        "analysis": {"interval": "10s", "prometheus": {"address": "http://prom:9090"}, "metrics": METRICS},
    }
    if bake:
        rollout["bakeSeconds"] = BAKE_SECONDS
    if warm is not None:
        rollout["bakeWarmReplicas"] = warm
    traffic = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "public"}]}}
    return parse_spec(valid_spec(rollout=rollout, traffic=traffic, replicas=3))


def dep(revision, replicas=3, available=None):
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
        deadline_exceeded_message=None,
    )


def canary_status(phase="Promoting", step_index=4, weight=50):
    return CanaryStatus(
        revision=NEW,
        model=MODEL,
        phase=phase,
        step_index=step_index,
        step_count=4,
        step_started_at=now_rfc3339(T0),
        started_at=now_rfc3339(T0),
        desired_weight=weight,
        weight=weight,
        actual_weight=weight,
        replicas=2,
        ready_replicas=2,
    )


PROMOTING = ModelDeploymentStatus(
    stable=RevisionStatus(revision=OLD, model=OLD_MODEL),
    canary=canary_status(),
    analysis=AnalysisStatus(revision=NEW, time_to_rollback_seconds=10, failures=0, last_result="Successful"),
)


def run(
    prev,
    stable,
    seconds=0,
    s=None,
    warm=None,
    measurements=None,
    breach=None,
    target=NEW,
    canary=None,
    breach_revision=NEW,
):
    obs = Observed(
        stable=stable,
        canary=canary,
        router_weight=None,
        measurements=measurements,
        previous=warm,
        critical_breach=CriticalBreach(breach_revision, breach) if breach else None,
    )
    return decide(s or spec(), target, MODEL, obs, prev, T0 + timedelta(seconds=seconds))


def reasons(decision: Decision) -> list[str]:
    return [e.reason for e in decision.events]


def tick(result, value):
    return [
        Measurement(result=result, value=value, bound=">= 0.99", message=f"{value} < 0.99", at=now_rfc3339(T0)),
    ]


def baking(s=None, warm=None):
    """Promoted at T0 + 100 s: the bake has started (with one warm pod, ready unless `warm` says otherwise)."""
    return run(PROMOTING, dep(NEW), 100, s=s, warm=warm or dep(OLD, replicas=1), canary=dep(NEW, replicas=2))


def restarted(status: ModelDeploymentStatus) -> ModelDeploymentStatus:
    """What a restarted operator reads back: the status as stored by the API server."""
    return ModelDeploymentStatus.model_validate(status.model_dump(by_alias=True, exclude_none=True))


def test_a_promotion_that_a_bake_follows_keeps_the_previous_revision_warm_from_its_start() -> None:
    d = run(PROMOTING, dep(NEW, available=1), 50, s=spec(warm=2), canary=dep(NEW, replicas=2))
    assert d.status.canary.phase == "Promoting"
    assert d.previous_replicas == 2, "the warm pods exist before the stable track rolls away from the old revision"
    assert run(PROMOTING, dep(NEW, available=1), 50, s=spec(bake=False)).previous_replicas is None


def test_the_bake_starts_at_promotion_with_its_window_and_fresh_counts() -> None:
    d = baking()
    assert reasons(d) == ["Promoted", "BakeStarted"]
    bake = d.status.bake
    assert bake is not None
    assert (bake.phase, bake.revision, bake.previous.revision) == ("Baking", NEW, OLD)
    assert bake.ends_at == now_rfc3339(T0 + timedelta(seconds=100 + BAKE_SECONDS))
    assert (bake.warm_replicas, bake.ready_warm_replicas) == (1, 1)
    assert (d.stable_runs_target, d.weight, d.previous_replicas, d.route_to_previous) == (True, 0, 1, False)
    assert d.status.analysis.last_result is None
    assert d.status.analysis.next_measurement_at is None
    assert bake_measurement_due(spec(), d.status, T0 + timedelta(seconds=100)), "the new stable is measured at once"


def test_without_a_bake_a_promotion_ends_as_before() -> None:
    d = run(PROMOTING, dep(NEW), 100, s=spec(bake=False))
    assert reasons(d) == ["Promoted"]
    assert (d.status.bake, d.previous_replicas) == (None, None)


def test_a_good_bake_ends_with_the_warm_pods_gone() -> None:
    d = baking()
    d = run(d.status, dep(NEW), 200, warm=dep(OLD, replicas=1), measurements=tick("Successful", 0.999))
    assert d.status.bake is not None
    assert reasons(d) == []
    assert d.requeue_after == pytest.approx(10.0), "the next tick"
    done = run(d.status, dep(NEW), 100 + BAKE_SECONDS, warm=dep(OLD, replicas=1))
    assert reasons(done) == ["BakePassed"]
    assert (done.status.bake, done.previous_replicas, done.weight, done.stable_runs_target) == (None, None, 0, True)
    assert done.status.rejected_revision is None


def test_a_breach_in_the_bake_moves_traffic_to_the_warm_revision_at_once() -> None:
    d = baking()
    failed = run(d.status, dep(NEW), 200, warm=dep(OLD, replicas=1), measurements=tick("Failed", 0.42))
    assert reasons(failed)[-2:] == ["BakeFailed", "RolledBack"]
    rollback = failed.status.last_rollback
    assert (rollback.reason, rollback.revision) == ("BakeFailed", NEW)
    assert "ok" in rollback.message
    assert "0.42" in rollback.message
    assert ">= 0.99" in rollback.message
    assert (failed.status.history[-1].outcome, failed.status.history[-1].reason) == ("RolledBack", "BakeFailed")
    assert failed.status.rejected_revision == NEW
    assert failed.status.bake.phase == "Reverting"
    assert (failed.route_to_previous, failed.weight, failed.stable_runs_previous) == (True, 100, True)
    assert failed.previous_replicas == 3, "reverting, the warm revision is scaled to the stable track's size"


def test_the_revert_never_routes_to_warm_pods_that_are_not_ready() -> None:
    d = baking(warm=dep(OLD, replicas=1, available=0))
    failed = run(d.status, dep(NEW), 200, warm=dep(OLD, replicas=1, available=0), measurements=tick("Failed", 0.4))
    assert failed.status.bake.phase == "Reverting"
    assert (failed.weight, failed.stable_runs_previous) == (0, True), "the stable track still rolls back"
    ready = run(failed.status, dep(NEW), 210, warm=dep(OLD, replicas=3, available=1))
    assert ready.weight == 100


def test_the_revert_ends_with_the_previous_revision_stable_and_the_warm_pods_drained() -> None:
    d = baking()
    failed = run(d.status, dep(NEW), 200, warm=dep(OLD), measurements=tick("Failed", 0.4))
    rolling = run(failed.status, dep(OLD, available=1), 210, warm=dep(OLD))
    assert (rolling.weight, rolling.stable_runs_previous) == (100, True)
    back = run(rolling.status, dep(OLD), 220, warm=dep(OLD))
    assert reasons(back) == ["Reverted"]
    assert back.status.stable.revision == OLD
    assert (back.weight, back.route_to_previous, back.previous_replicas) == (0, True, 3), "drains for 30 s"
    gone = run(back.status, dep(OLD), 251, warm=dep(OLD))
    assert (gone.status.bake, gone.previous_replicas, gone.stable_runs_target) == (None, None, False)
    again = run(gone.status, dep(OLD), 300)
    assert again.status.canary is None, "the rolled-back revision is not tried again"


def test_a_restart_inside_the_window_keeps_it() -> None:
    d = baking()
    d = run(d.status, dep(NEW), 200, warm=dep(OLD, replicas=1), measurements=tick("Successful", 0.999))
    resumed = run(restarted(d.status), dep(NEW), 205, warm=dep(OLD, replicas=1))
    assert resumed.status.bake == d.status.bake
    assert resumed.status.bake.ends_at == now_rfc3339(T0 + timedelta(seconds=100 + BAKE_SECONDS))
    assert resumed.requeue_after == pytest.approx(5.0), "the next tick, as before the restart"
    late = run(restarted(d.status), dep(NEW), 100 + BAKE_SECONDS, warm=dep(OLD, replicas=1))
    assert reasons(late) == ["BakePassed"], "the window ends when it would have without the restart"
    assert reasons(resumed) == []
    assert resumed.previous_replicas == 1
    failed = run(restarted(d.status), dep(NEW), 400, warm=dep(OLD, replicas=1), measurements=tick("Failed", 0.3))
    reverting = run(restarted(failed.status), dep(NEW), 401, warm=dep(OLD, replicas=1))
    assert reverting.status.bake.phase == "Reverting"
    assert reverting.weight == 100
    assert reasons(reverting) == [], "the rollback is recorded once"


def test_a_critical_breach_in_the_bake_fails_it_without_waiting_for_a_tick() -> None:
    d = baking()
    failed = run(d.status, dep(NEW), 105, warm=dep(OLD, replicas=1), breach="ok 0.2 < 0.5 (critical bound >= 0.5)")
    assert failed.status.last_rollback.reason == "BakeFailed"
    assert "critical bound" in failed.status.last_rollback.message
    assert failed.weight == 100


def test_a_new_spec_ends_the_bake_and_starts_a_canary_against_the_new_stable() -> None:
    d = baking()
    d = run(d.status, dep(NEW), 200, warm=dep(OLD, replicas=1), target=NEWER)
    assert reasons(d)[:2] == ["BakeEnded", "CanaryStarted"]
    assert (d.status.bake, d.previous_replicas) == (None, None)
    assert d.status.canary.revision == NEWER


@pytest.mark.parametrize(
    ("phase", "step_index", "weight"),
    [("Progressing", 0, 25), ("Progressing", 1, 25), ("Progressing", 2, 50), ("Paused", 3, 50)],
)
def test_a_critical_breach_rolls_back_at_any_step(phase, step_index, weight) -> None:
    prev = ModelDeploymentStatus(
        stable=RevisionStatus(revision=OLD, model=OLD_MODEL),
        canary=canary_status(phase, step_index, weight),
        analysis=AnalysisStatus(revision=NEW, time_to_rollback_seconds=10),
    )
    assert critical_revision(spec(), prev) == NEW
    d = run(prev, dep(OLD), 1, canary=dep(NEW, replicas=2), breach="ok 0.1 < 0.5 (critical bound >= 0.5)")
    assert reasons(d) == ["RolledBack"]
    assert (d.status.last_rollback.reason, d.weight, d.status.canary) == ("CriticalBreach", 0, None)
    assert "0.1 < 0.5" in d.status.last_rollback.message


def test_critical_bounds_are_checked_only_with_traffic_or_during_a_bake() -> None:
    no_traffic = ModelDeploymentStatus(canary=canary_status("Progressing", 0, 0))
    assert critical_revision(spec(), no_traffic) is None
    assert critical_revision(spec(), PROMOTING) is None
    assert critical_revision(spec(), baking().status) == NEW
    assert critical_revision(spec(), ModelDeploymentStatus()) is None


def test_a_critical_bound_is_the_metric_held_to_its_looser_bound() -> None:
    analysis = spec().rollout.analysis
    critical = critical_analysis(analysis)
    assert critical is not None
    assert [m.name for m in critical.metrics] == ["ok"]
    planned = queries(critical, "modelserver", "ns", "fraud", NEW, OLD)
    at = now_rfc3339(T0)
    assert critical_breaches(planned, [Raw(canary=0.9)], at) is None, "below min but above the critical bound"
    assert critical_breaches(planned, [Raw(canary=None)], at) is None, "no data is no breach"
    assert critical_breaches(planned, [Raw(canary=None, error="timeout")], at) is None
    breach = critical_breaches(planned, [Raw(canary=0.3)], at)
    assert breach is not None
    assert "ok" in breach
    assert "0.3" in breach
    assert ">= 0.5" in breach
    assert critical_analysis(spec().rollout.analysis.model_copy(update={"metrics": analysis.metrics[1:]})) is None


def test_a_bake_measures_absolute_bounds_only() -> None:
    measured = bake_analysis(spec().rollout.analysis)
    assert [m.name for m in measured.metrics] == ["ok"], "a relative bound has no track to compare with"
    assert all(m.relative is None for m in measured.metrics)


def test_the_warm_revision_is_written_first_and_a_revert_routes_the_canary_share_to_it() -> None:
    owner = Owner(name="fraud-scorer", namespace="risk", uid="uid-1")
    s = spec()
    old = pod_template(
        owner, s.model_copy(update={"replicas": 3, "model": s.model.model_copy(update={"version": "7"})})
    )
    new = pod_template(owner, s)
    baking_objects = render(owner, s, new, None, 0, 0, previous=old, previous_replicas=1)
    first = baking_objects[0]
    assert (first["kind"], first["metadata"]["name"], first["spec"]["replicas"]) == (
        "Deployment",
        "fraud-scorer-previous",
        1,
    )
    assert first["spec"]["template"]["metadata"]["labels"][TRACK_LABEL] == "previous"
    assert "fraud-scorer-canary" not in {o["metadata"]["name"] for o in baking_objects}, "no traffic to it while baking"
    reverting = render(owner, s, old, None, 0, 100, previous=old, previous_replicas=3, route_to_previous=True)
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in reverting}
    assert by_name[("Service", "fraud-scorer-canary")]["spec"]["selector"][TRACK_LABEL] == "previous"
    route = by_name[("HTTPRoute", "fraud-scorer")]
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [0, 100]


def test_the_status_tells_the_bake_and_when_it_ends_and_the_cli_shows_the_time_left() -> None:
    d = baking()
    s = spec()
    obs = Observation(generation=2, spec=s, revision=NEW, deployment=dep(NEW))
    shown, _ = compute_status(d.status, d.status, obs, T0 + timedelta(seconds=100))
    baking_condition = next(c for c in shown.conditions if c.type == "Baking")
    assert (baking_condition.status, baking_condition.reason) == ("True", "BakeInProgress")
    assert d.status.bake.ends_at in baking_condition.message
    assert shown.phase == "Ready", "the promoted revision serves"
    line = bake_line(shown.model_dump(by_alias=True, exclude_none=True)["bake"], T0 + timedelta(seconds=400))
    assert f"{100 + BAKE_SECONDS - 400}s left" in line
    failed = run(d.status, dep(NEW), 200, warm=dep(OLD, replicas=1), measurements=tick("Failed", 0.4))
    reverting, _ = compute_status(shown, failed.status, obs, T0 + timedelta(seconds=200))
    assert [(c.status, c.reason) for c in reverting.conditions if c.type == "Baking"] == [("False", "BakeFailed")]
    assert reverting.phase == "Degraded"
    done = run(d.status, dep(NEW), 100 + BAKE_SECONDS, warm=dep(OLD, replicas=1))
    ended, _ = compute_status(shown, done.status, obs, T0 + timedelta(seconds=100 + BAKE_SECONDS))
    assert all(c.type != "Baking" for c in ended.conditions)


def test_a_breach_of_a_superseded_canary_never_rolls_back_the_one_that_replaced_it() -> None:
    prev = ModelDeploymentStatus(
        stable=RevisionStatus(revision=OLD, model=OLD_MODEL),
        canary=canary_status("Progressing", 1, 25),
        analysis=AnalysisStatus(revision=NEW, time_to_rollback_seconds=10),
    )
    d = run(prev, dep(OLD), 1, target=NEWER, breach="ok 0.1 < 0.5 (critical bound >= 0.5)", breach_revision=NEW)
    assert reasons(d) == ["Superseded", "CanaryStarted"]
    assert d.status.canary.revision == NEWER
    assert d.status.last_rollback is None
