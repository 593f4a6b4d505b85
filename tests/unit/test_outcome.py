"""The rollout outcome a pipeline gets (core/status/outcome.py): never a status from before the apply."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy.core.status.outcome import EXIT_CODES, progress, verdict


def md(generation: int = 2, observed: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud", "generation": generation},
        "status": {"observedGeneration": observed, **status},
    }


def condition(type_: str, status: str, reason: str, message: str = "", generation: int = 2) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message, "observedGeneration": generation}


def served(revision: str, version: str) -> dict[str, Any]:
    return {"revision": revision, "model": {"name": "m", "version": version, "uri": f"s3://m/{version}"}}


PROMOTED: dict[str, Any] = {
    "targetRevision": "bbb",
    "stable": served("bbb", "2"),
    "conditions": [
        condition("Ready", "True", "RevisionAvailable", "2/2 replicas available"),
        condition("Degraded", "False", "AsExpected"),
    ],
    "history": [{**served("aaa", "1"), "outcome": "Deployed"}, {**served("bbb", "2"), "outcome": "Promoted"}],
}
ROLLED_BACK: dict[str, Any] = {
    "targetRevision": "bbb",
    "rejectedRevision": "bbb",
    "stable": served("aaa", "1"),
    "lastRollback": {**served("bbb", "2"), "reason": "AnalysisFailed", "message": "success-rate 0.5 < 0.95"},
    "conditions": [
        condition("Ready", "False", "RolledBack", "revision bbb was rolled back"),
        condition("Degraded", "True", "RolledBack", "revision bbb was rolled back"),
    ],
}


def test_a_promoted_canary_succeeds_and_says_so() -> None:
    found = verdict(md(**PROMOTED))
    assert found is not None
    assert (found.outcome, found.reason) == ("Succeeded", "revision bbb (version 2) promoted")


def test_nothing_to_roll_out_succeeds_with_what_serves() -> None:
    status = {**PROMOTED, "history": [{**served("bbb", "2"), "outcome": "Deployed"}]}
    found = verdict(md(**status))
    assert found is not None
    assert found.outcome == "Succeeded"
    assert "serving: 2/2 replicas available" in found.reason


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(md(generation=3, observed=2, **PROMOTED), id="status of the previous generation"),
        pytest.param(md(generation=3, observed=2, **ROLLED_BACK), id="rollback of the previous generation"),
        pytest.param(
            md(
                generation=3,
                observed=3,
                **{**PROMOTED, "conditions": [condition("Ready", "True", "RevisionAvailable", generation=2)]},
            ),
            id="Ready not yet computed for this generation",
        ),
        pytest.param(md(**{**PROMOTED, "canary": {"revision": "bbb"}}), id="canary still running"),
        pytest.param(md(**{**PROMOTED, "targetRevision": "ccc"}), id="stable is not the target"),
        pytest.param({"metadata": {"generation": 1}}, id="no status yet"),
        pytest.param(md(**{**ROLLED_BACK, "targetRevision": "ccc"}), id="rollback of another revision"),
    ],
)
def test_no_outcome_while_undecided_or_from_a_stale_status(status: dict[str, Any]) -> None:
    assert verdict(status) is None


def test_an_explicit_generation_outranks_the_objects() -> None:
    # deploy --wait waits for the generation its apply produced, even when the object moved on since.
    assert verdict(md(generation=2, observed=2, **PROMOTED), generation=3) is None
    assert verdict(md(generation=2, observed=2, **PROMOTED), generation=1) is not None


def test_a_rollback_by_analysis_or_by_hand_is_rolled_back() -> None:
    found = verdict(md(**ROLLED_BACK))
    assert found is not None
    assert found.outcome == "RolledBack"
    assert found.reason == "revision bbb (version 2) was rolled back (AnalysisFailed): success-rate 0.5 < 0.95"
    aborted = {**ROLLED_BACK, "lastRollback": {**ROLLED_BACK["lastRollback"], "reason": "Aborted", "message": "x"}}
    found = verdict(md(**aborted))
    assert found is not None
    assert (found.outcome, found.reason) == ("RolledBack", "revision bbb (version 2) was aborted (Aborted): x")


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("InvalidSpec", "InvalidSpec"),
        ("ProgressDeadlineExceeded", "Stalled"),
        ("AnalysisTemplateNotFound", "Stalled"),
        ("ApplyFailed", "Stalled"),
    ],
)
def test_an_invalid_spec_or_a_stall_is_final(reason: str, outcome: str) -> None:
    status: dict[str, Any] = {
        "conditions": [
            condition("Degraded", "True", reason, "spec.model.uri: bad"),
            condition("Ready", "False", reason),
        ]
    }
    found = verdict(md(**status))
    assert found is not None
    assert found.outcome == outcome
    assert "spec.model.uri: bad" in found.reason


def test_exit_codes_and_progress_line() -> None:
    assert EXIT_CODES == {"Succeeded": 0, "RolledBack": 1, "TimedOut": 2, "InvalidSpec": 3, "Stalled": 3}
    assert progress(md(phase="Progressing", conditions=[condition("Ready", "False", "X", "canary at step 1/2")])) == (
        "Progressing: canary at step 1/2"
    )


def test_a_bake_is_not_an_outcome_until_it_passes_and_a_failed_bake_is_a_rollback() -> None:
    baking = {**PROMOTED, "bake": {"revision": "bbb", "phase": "Baking"}}
    assert verdict(md(**baking)) is None
    reverting = {
        **PROMOTED,
        "rejectedRevision": "bbb",
        "bake": {"revision": "bbb", "phase": "Reverting"},
        "lastRollback": {**served("bbb", "2"), "reason": "BakeFailed", "message": "p99 0.4 > 0.2"},
    }
    found = verdict(md(**reverting))
    assert found is not None
    assert (found.outcome, found.reason) == (
        "RolledBack",
        "revision bbb (version 2) was rolled back (BakeFailed): p99 0.4 > 0.2",
    )
