"""The pipeline examples in examples/: the Airflow task's callable runs against the SDK, the Argo Workflow and
the Kubeflow pipeline are well-formed (see tests/e2e/test_pipeline.py for the SDK on a real cluster)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from modeldeploy.client import RolloutFailedError, RolloutResult

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeClient:
    applied: list[dict[str, Any]] = []
    outcome = "Succeeded"

    def __init__(self, namespace: str | None = None, kubeconfig: str | None = None) -> None:
        self.namespace = namespace

    def deploy(self, manifest: dict[str, Any], timeout: float, check: bool) -> RolloutResult:
        FakeClient.applied.append(manifest)
        meta = manifest["metadata"]
        result = RolloutResult(meta["name"], meta["namespace"], FakeClient.outcome, "why", 12.34)  # type: ignore[arg-type]
        return result.check() if check else result


@pytest.fixture
def airflow_task(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = load(EXAMPLES / "airflow" / "modeldeploy_task.py")
    monkeypatch.setattr(module, "Client", FakeClient)
    FakeClient.applied, FakeClient.outcome = [], "Succeeded"
    return module


MANIFEST = {
    "apiVersion": "modeldeploy.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud-scorer", "namespace": "risk"},
    "spec": {"model": {"name": "fraud-scorer", "version": "7", "uri": "s3://m/7"}},
}


def test_the_airflow_task_deploys_the_version_and_returns_the_outcome(airflow_task: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(MANIFEST))
    summary = airflow_task.deploy_model(str(tmp_path / "md.yaml"), version="8")
    assert FakeClient.applied[0]["spec"]["model"]["version"] == "8"
    assert summary == {
        "name": "fraud-scorer",
        "namespace": "risk",
        "outcome": "Succeeded",
        "reason": "why",
        "seconds": 12.3,
    }


def test_the_airflow_task_fails_on_a_rollback(airflow_task: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(MANIFEST))
    FakeClient.outcome = "RolledBack"
    with pytest.raises(RolloutFailedError, match="RolledBack: why"):
        airflow_task.deploy_model(str(tmp_path / "md.yaml"))


def test_the_argo_workflow_runs_deploy_wait_on_a_modeldeployment() -> None:
    workflow = yaml.safe_load((EXAMPLES / "argo" / "deploy-model-workflow.yaml").read_text())
    template = next(t for t in workflow["spec"]["templates"] if t["name"] == "deploy-model")
    assert template["container"]["command"] == ["modeldeploy"]
    assert template["container"]["args"][:4] == ["deploy", "-f", template["inputs"]["artifacts"][0]["path"], "--wait"]
    manifest = yaml.safe_load(template["inputs"]["artifacts"][0]["raw"]["data"])
    assert manifest["kind"] == "ModelDeployment"
    assert manifest["spec"]["model"]["version"] == "{{inputs.parameters.version}}"


PIPELINE_TOOLS = Path(__file__).resolve().parents[2] / ".venv-pipelines" / "bin" / "python"


def check_with_pipeline_tools(*paths: Path) -> dict[str, Any]:
    """hack/check_pipeline_examples.py in .venv-pipelines (hack/install-deps.sh makes it): kfp and hera."""
    assert PIPELINE_TOOLS.exists(), "the pipeline tools are missing: run bash hack/install-deps.sh --python-only"
    script = Path(__file__).resolve().parents[2] / "hack" / "check_pipeline_examples.py"
    result = subprocess.run(
        [str(PIPELINE_TOOLS), str(script), *map(str, paths)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_argo_workflow_fits_the_workflow_schema_and_the_kfp_pipeline_compiles(tmp_path: Path) -> None:
    checked = check_with_pipeline_tools()
    assert checked["argo_errors"] == []
    compiled = checked["kfp"]
    assert compiled["pipelineInfo"]["name"] == "ship-fraud-scorer"
    (executor,) = compiled["deploymentSpec"]["executors"].values()
    container = executor["container"]
    assert container["image"].startswith("ghcr.io/modeldeploy/modeldeploy:")
    assert container["command"][:2] == ["python", "-c"]
    assert "Client().deploy(manifest" in container["command"][2]
    assert container["args"][1] == "{{$.inputs.parameters['model_version']}}"

    # The schema check has teeth: a misspelt field and a wrong type are both refused.
    workflow = yaml.safe_load((EXAMPLES / "argo" / "deploy-model-workflow.yaml").read_text())
    template = workflow["spec"]["templates"][1]
    template["contaner"] = template.pop("container")
    template["activeDeadlineSeconds"] = []
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(workflow))
    errors = check_with_pipeline_tools(tmp_path / "bad.yaml")["argo_errors"]
    assert len(errors) >= 1
