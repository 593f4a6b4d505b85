"""The Argo CD resource actions (promote, promote-full, abort, retry) run in a real Lua interpreter, on the samples
in manifests/argocd, in Argo CD's own action_test.yaml format; the annotation they write is one the operator takes."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_health import ACTIONS, argocd_discover_actions, argocd_run_action
from modeldeploy.core.api import ModelDeploymentStatus
from modeldeploy.core.naming import ACTION_ANNOTATION
from modeldeploy.core.rollout import ACTIONS as OPERATOR_ACTIONS
from modeldeploy.core.rollout import parse_action

TESTS = yaml.safe_load((ACTIONS / "action_test.yaml").read_text())
PATCH = yaml.safe_load((ACTIONS.parent / "argocd-cm-patch.yaml").read_text())


def load(path: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((ACTIONS / path).read_text())
    return obj


@pytest.mark.parametrize("case", TESTS["discoveryTests"], ids=lambda c: Path(c["inputPath"]).stem)
def test_discovery(case: dict[str, Any]) -> None:
    expected = {entry["name"]: entry["disabled"] for entry in case["result"]}
    assert argocd_discover_actions(load(case["inputPath"])) == expected


@pytest.mark.parametrize("case", TESTS["actionTests"], ids=lambda c: c["action"])
def test_action(case: dict[str, Any]) -> None:
    before = load(case["inputPath"])
    after = argocd_run_action(before, case["action"])
    assert after == load(case["expectedOutputPath"])
    # The operator accepts what the action writes, as this action.
    action = parse_action(after["metadata"]["annotations"][ACTION_ANNOTATION])
    assert action.name == case["action"]


def test_every_operator_action_is_offered_and_tested() -> None:
    assert {d.name for d in ACTIONS.iterdir() if d.is_dir()} == set(OPERATOR_ACTIONS)
    assert {c["action"] for c in TESTS["actionTests"]} == set(OPERATOR_ACTIONS)
    for case in TESTS["discoveryTests"]:
        assert {entry["name"] for entry in case["result"]} == set(OPERATOR_ACTIONS)


def test_the_samples_are_valid_statuses() -> None:
    """The fields the discovery reads (status.canary, status.rejectedRevision) are the operator's own."""
    for case in TESTS["discoveryTests"]:
        status = load(case["inputPath"]).get("status")
        if status is not None:
            ModelDeploymentStatus.model_validate(status)


def test_a_new_write_makes_a_new_request() -> None:
    """The id comes from the resourceVersion: the same click twice on one version is one request, a later one is new."""
    obj = load("../testdata/canary-paused.yaml")
    first = argocd_run_action(obj, "promote")["metadata"]["annotations"][ACTION_ANNOTATION]
    assert argocd_run_action(obj, "promote")["metadata"]["annotations"][ACTION_ANNOTATION] == first
    later = {**obj, "metadata": {**obj["metadata"], "resourceVersion": "4712"}}
    assert parse_action(argocd_run_action(later, "promote")["metadata"]["annotations"][ACTION_ANNOTATION]).id != (
        parse_action(first).id
    )


def test_existing_annotations_are_kept() -> None:
    obj = load("../testdata/canary-paused.yaml")
    obj["metadata"]["annotations"] = {"team": "risk", ACTION_ANNOTATION: '{"action": "abort", "id": "old"}'}
    annotations = argocd_run_action(obj, "promote")["metadata"]["annotations"]
    assert annotations["team"] == "risk"
    assert parse_action(annotations[ACTION_ANNOTATION]).name == "promote"


def test_a_broken_discovery_is_caught() -> None:
    broken = (ACTIONS / "discovery.lua").read_text().replace('["disabled"] = not rejected', '["disabled"] = false')
    assert argocd_discover_actions(load("../testdata/ready.yaml"), broken)["retry"] is False
    assert argocd_discover_actions(load("../testdata/ready.yaml"))["retry"] is True


def test_the_argocd_cm_patch_carries_the_same_scripts() -> None:
    actions = yaml.safe_load(PATCH["data"]["resource.customizations.actions.modeldeploy.io_ModelDeployment"])
    assert actions["discovery.lua"] == (ACTIONS / "discovery.lua").read_text()
    definitions = {d["name"]: d["action.lua"] for d in actions["definitions"]}
    assert definitions == {name: (ACTIONS / name / "action.lua").read_text() for name in OPERATOR_ACTIONS}
