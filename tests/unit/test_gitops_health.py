"""The Argo CD health script and kstatus, on the sample statuses in manifests/argocd."""

from pathlib import Path

import pytest
import yaml

from gitops_health import HEALTH_LUA, argocd_health, kstatus

ARGOCD = HEALTH_LUA.parent
CASES = yaml.safe_load((ARGOCD / "health_test.yaml").read_text())["tests"]
KSTATUS = {"Healthy": "Current", "Progressing": "InProgress", "Suspended": "InProgress", "Degraded": "Failed"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: Path(c["inputPath"]).stem)
def test_argocd_health_script(case: dict) -> None:
    obj = yaml.safe_load((ARGOCD / case["inputPath"]).read_text())
    assert argocd_health(obj) == case["healthStatus"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: Path(c["inputPath"]).stem)
def test_kstatus_agrees_with_argocd(case: dict) -> None:
    obj = yaml.safe_load((ARGOCD / case["inputPath"]).read_text())
    if "status" not in obj:
        # kstatus reads a custom resource without any status as Current: nothing the operator can change
        # until its first status write, which follows the object's creation at once.
        assert kstatus(obj) == "Current"
        return
    assert kstatus(obj) == KSTATUS[case["healthStatus"]["status"]]


def test_every_argocd_status_is_covered() -> None:
    assert {c["healthStatus"]["status"] for c in CASES} == {"Healthy", "Progressing", "Suspended", "Degraded"}


def test_the_argocd_cm_patch_carries_the_same_script() -> None:
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert patch["data"]["resource.customizations.health.modeldeploy.io_ModelDeployment"] == HEALTH_LUA.read_text()


def test_a_broken_script_is_caught() -> None:
    broken = HEALTH_LUA.read_text().replace('hs.status = "Suspended"', 'hs.status = "Healthy"')
    obj = yaml.safe_load((ARGOCD / "testdata" / "canary-paused.yaml").read_text())
    assert argocd_health(obj, broken)["status"] == "Healthy"
    assert argocd_health(obj)["status"] == "Suspended"
