from datetime import UTC, datetime, timedelta

import pytest

from modeldeploy.core.api import ModelDeploymentStatus, parse_spec
from modeldeploy.core.status import DeploymentState, Observation, compute_status, set_condition, status_patch
from specs import valid_spec

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
SPEC = parse_spec(valid_spec())  # 3 replicas


def deployment(
    revision="rev1",
    replicas=3,
    updated=3,
    available=3,
    ready=3,
    gen=2,
    observed=2,
    is_available=True,
    stalled=None,
    spec_replicas=3,
):
    return DeploymentState(
        generation=gen,
        observed_generation=observed,
        revision=revision,
        spec_replicas=spec_replicas,
        replicas=replicas,
        updated_replicas=updated,
        ready_replicas=ready,
        available_replicas=available,
        available=is_available,
        deadline_exceeded_message=stalled,
    )


def run(dep, previous=None, revision="rev1", generation=4, failure=None, now=T0, spec=SPEC):
    obs = Observation(
        generation=generation,
        spec=None if failure else spec,
        revision=None if failure else revision,
        deployment=dep,
        failure_reason=failure[0] if failure else None,
        failure_message=failure[1] if failure else None,
    )
    previous = previous or ModelDeploymentStatus()
    return compute_status(previous, previous, obs, now)


def conditions(status):
    return {c.type: (c.status, c.reason) for c in status.conditions if c.type not in ("Paused", "Stalled")}


def test_set_condition_moves_transition_time_only_on_status_change() -> None:
    first = set_condition([], "Ready", "False", "A", "m1", 1, T0)
    same = set_condition(first, "Ready", "False", "B", "m2", 2, T0 + timedelta(minutes=1))
    assert same[0].last_transition_time == "2026-11-23T12:00:00Z"
    assert (same[0].reason, same[0].message, same[0].observed_generation) == ("B", "m2", 2)
    flipped = set_condition(same, "Ready", "True", "C", "", 3, T0 + timedelta(minutes=2))
    assert flipped[0].last_transition_time == "2026-11-23T12:02:00Z"
    other = set_condition(flipped, "Degraded", "False", "AsExpected", "", 3, T0)
    assert [c.type for c in other] == ["Ready", "Degraded"]


@pytest.mark.parametrize(
    ("name", "dep", "phase", "ready", "progressing", "degraded"),
    [
        (
            "no deployment yet",
            None,
            "Progressing",
            ("False", "RolloutInProgress"),
            ("True", "RolloutInProgress"),
            ("False", "AsExpected"),
        ),
        (
            "rolled out",
            deployment(),
            "Ready",
            ("True", "RevisionAvailable"),
            ("False", "RolloutComplete"),
            ("False", "AsExpected"),
        ),
        (
            "controller has not seen the new spec",
            deployment(observed=1),
            "Progressing",
            ("False", "RolloutInProgress"),
            ("True", "RolloutInProgress"),
            ("False", "AsExpected"),
        ),
        (
            "old revision still running",
            deployment(revision="rev0"),
            "Progressing",
            ("False", "RolloutInProgress"),
            ("True", "RolloutInProgress"),
            ("False", "AsExpected"),
        ),
        (
            "surge pods still around",
            deployment(replicas=4),
            "Progressing",
            ("False", "RolloutInProgress"),
            ("True", "RolloutInProgress"),
            ("False", "AsExpected"),
        ),
        (
            "not all available",
            deployment(available=2),
            "Progressing",
            ("False", "RolloutInProgress"),
            ("True", "RolloutInProgress"),
            ("False", "AsExpected"),
        ),
        (
            "deployment not Available",
            deployment(is_available=False),
            "Progressing",
            ("False", "RolloutInProgress"),
            ("True", "RolloutInProgress"),
            ("False", "AsExpected"),
        ),
        (
            "replica count not applied yet",
            deployment(spec_replicas=2, replicas=2, updated=2, available=2),
            "Progressing",
            ("False", "RolloutInProgress"),
            ("True", "RolloutInProgress"),
            ("False", "AsExpected"),
        ),
        (
            "stalled",
            deployment(available=1, stalled="ReplicaSet has timed out progressing."),
            "Degraded",
            ("False", "ProgressDeadlineExceeded"),
            ("False", "ProgressDeadlineExceeded"),
            ("True", "ProgressDeadlineExceeded"),
        ),
    ],
)
def test_conditions_follow_the_deployment(name, dep, phase, ready, progressing, degraded) -> None:
    status, _ = run(dep)
    assert status.phase == phase, name
    assert conditions(status) == {"Ready": ready, "Progressing": progressing, "Degraded": degraded}, name
    assert status.observed_generation == 4
    assert all(c.observed_generation == 4 for c in status.conditions)
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == degraded, "Stalled mirrors Degraded for kstatus"


def test_stable_moves_only_when_the_new_revision_is_rolled_out() -> None:
    first, _ = run(deployment())
    assert first.stable is not None
    assert (first.stable.revision, first.stable.model.version) == ("rev1", "7")
    spec8 = parse_spec(valid_spec(model={**valid_spec()["model"], "version": "8", "uri": "s3://m/8"}))
    rolling, events = run(deployment(revision="rev2", updated=1), previous=first, revision="rev2", spec=spec8)
    assert rolling.stable == first.stable
    assert rolling.target_revision == "rev2"
    assert [e.reason for e in events] == ["RolloutStarted"]
    assert "still serving revision rev1" in next(c.message for c in rolling.conditions if c.type == "Ready")
    done, events = run(deployment(revision="rev2"), previous=rolling, revision="rev2", spec=spec8)
    assert done.stable is not None
    assert (done.stable.revision, done.stable.model.uri) == ("rev2", "s3://m/8")
    assert [e.reason for e in events] == ["RolloutCompleted"]


def test_scaled_to_zero_is_ready_with_its_own_phase() -> None:
    spec = parse_spec(valid_spec(replicas=0))
    status, _ = run(deployment(replicas=0, updated=0, available=0, ready=0, spec_replicas=0), spec=spec)
    assert status.phase == "ScaledToZero"
    assert conditions(status)["Ready"] == ("True", "ScaledToZero")


def test_invalid_spec_keeps_the_stable_revision_and_warns_once() -> None:
    good, _ = run(deployment())
    bad, events = run(deployment(), previous=good, failure=("InvalidSpec", "spec.model.format: no"))
    assert bad.phase == "Degraded"
    assert bad.stable == good.stable
    assert conditions(bad)["Degraded"] == ("True", "InvalidSpec")
    assert [(e.type, e.reason) for e in events] == [("Warning", "SpecRejected")]
    again, events = run(deployment(), previous=bad, failure=("InvalidSpec", "spec.model.format: no"))
    assert events == []
    assert status_patch(bad.model_dump(by_alias=True, exclude_none=True, mode="json"), again) is None
    _fixed, events = run(deployment(), previous=bad)
    assert [e.reason for e in events] == ["Recovered"]


def test_no_patch_when_nothing_changed_and_a_later_reconcile_keeps_transition_times() -> None:
    status, _ = run(deployment())
    stored = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    later, events = run(deployment(), previous=status, now=T0 + timedelta(hours=1))
    assert events == []
    assert status_patch(stored, later) is None


def test_patch_carries_only_changes_and_removes_what_is_gone() -> None:
    status, _ = run(deployment())
    stored = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert status_patch({**stored, "legacy": 1}, status) == {"legacy": None}
    nested = {**stored, "stable": {**stored["stable"], "stale": "x"}}
    assert status_patch(nested, status) == {"stable": {"stale": None}}
    assert status_patch({}, status) == stored


def test_deployment_state_reads_a_real_object() -> None:
    state = DeploymentState.from_object(
        {
            "metadata": {"generation": 3},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"modeldeploy.io/revision": "abc"}}}},
            "status": {
                "observedGeneration": 3,
                "replicas": 2,
                "updatedReplicas": 2,
                "readyReplicas": 2,
                "availableReplicas": 2,
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": "timed out",
                    },
                ],
            },
        }
    )
    assert state.rolled_out("abc", 2)
    assert not state.rolled_out("abc", 3)
    assert state.deadline_exceeded_message == "timed out"
