"""The GitOps model-promotion example (examples/gitops-model-promotion): its ModelDeployments are valid, and its
workflow's own script, run with the real `yq` on a copy of the layout, changes exactly the model's version and URI,
and refuses what it must. actionlint checks the workflow with every other one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.core.validation import validate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gitops-model-promotion"
WORKFLOW = EXAMPLE / ".github" / "workflows" / "promote-model.yaml"


@pytest.fixture(scope="module")
def yq() -> Path:
    """mikefarah's yq, which GitHub's runners ship, built from Go modules and cached (hack/go-tool.sh)."""
    built = subprocess.run(
        ["bash", str(ROOT / "hack" / "go-tool.sh"), "yq"], capture_output=True, text=True, timeout=900, check=False
    )
    if built.returncode != 0:
        pytest.fail(f"yq could not be built, so the example's script cannot run: {built.stderr}", pytrace=False)
    return Path(built.stdout.strip())


def bump_script() -> str:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (step,) = [s for s in workflow["jobs"]["promote"]["steps"] if s.get("id") == "bump"]
    script: str = step["run"]
    return script


def run_bump(yq: Path, repo: Path, **inputs: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """The workflow's step in a copy of the example, with its inputs as the workflow passes them (environment)."""
    outputs = repo / "github-output"
    outputs.write_text("")
    env = {
        "PATH": f"{yq.parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(outputs),
        **{key: inputs.get(key.lower(), "") for key in ("ENVIRONMENT", "NAME", "VERSION", "URI")},
    }
    # GitHub runs a `run:` step with `bash -e {0}`.
    result = subprocess.run(
        ["bash", "-e", "-c", bump_script()], cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    found = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    return result, found


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(EXAMPLE, copy)
    return copy


def load(path: Path) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(path.read_text())
    return obj


def test_the_example_modeldeployments_are_valid() -> None:
    files = sorted((EXAMPLE / "deploy").glob("*/*.yaml"))
    assert [f.relative_to(EXAMPLE / "deploy").as_posix() for f in files] == [
        "production/fraud-scorer.yaml",
        "staging/fraud-scorer.yaml",
    ]
    for path in files:
        obj = load(path)
        assert (obj["apiVersion"], obj["kind"]) == ("modeldeploy.io/v1alpha1", "ModelDeployment")
        assert path.stem == obj["metadata"]["name"], "the workflow finds a ModelDeployment by its file name"
        validate(obj["metadata"]["name"], obj["spec"])


def test_the_workflow_changes_the_version_and_uri_and_nothing_else(yq: Path, repo: Path) -> None:
    target = repo / "deploy" / "staging" / "fraud-scorer.yaml"
    before = target.read_text()
    untouched = (repo / "deploy" / "production" / "fraud-scorer.yaml").read_text()
    result, outputs = run_bump(yq, repo, environment="staging", name="fraud-scorer", version="8")
    assert result.returncode == 0, result.stdout + result.stderr
    after = load(target)
    assert after["spec"]["model"]["version"] == "8"
    assert after["spec"]["model"]["uri"] == "s3://models/fraud-scorer/8"
    changed = [(a, b) for a, b in zip(before.splitlines(), target.read_text().splitlines(), strict=True) if a != b]
    assert changed == [
        (
            '    version: "7" # changed by .github/workflows/promote-model.yaml',
            '    version: "8" # changed by .github/workflows/promote-model.yaml',
        ),
        ("    uri: s3://models/fraud-scorer/7", "    uri: s3://models/fraud-scorer/8"),
    ], "comments and formatting stay; only the version and the URI change"
    assert (repo / "deploy" / "production" / "fraud-scorer.yaml").read_text() == untouched
    validate("fraud-scorer", after["spec"])
    assert outputs == {
        "file": "deploy/staging/fraud-scorer.yaml",
        "old": "7",
        "branch": "promote/staging/fraud-scorer-8",
        "title": "Promote fraud-scorer to model version 8 in staging",
    }


def test_an_explicit_uri_is_used_as_given(yq: Path, repo: Path) -> None:
    uri = "mlflow-artifacts:/12/abc/artifacts/model"
    result, _ = run_bump(yq, repo, environment="production", name="fraud-scorer", version="2026.11.30-rc1", uri=uri)
    assert result.returncode == 0, result.stdout + result.stderr
    model = load(repo / "deploy" / "production" / "fraud-scorer.yaml")["spec"]["model"]
    assert (model["version"], model["uri"]) == ("2026.11.30-rc1", uri)


@pytest.mark.parametrize(
    ("inputs", "error"),
    [
        (
            {"environment": "../../etc", "name": "fraud-scorer", "version": "8"},
            "environment must be staging or production",
        ),
        (
            {"environment": "staging", "name": "../production/fraud-scorer", "version": "8"},
            "is not a ModelDeployment name",
        ),
        ({"environment": "staging", "name": "fraud-scorer", "version": "8; rm -rf /"}, "is not a model version"),
        ({"environment": "staging", "name": "churn", "version": "8"}, "deploy/staging/churn.yaml does not exist"),
        ({"environment": "staging", "name": "fraud-scorer", "version": "7"}, "already serves version 7"),
    ],
)
def test_the_workflow_refuses_bad_inputs(yq: Path, repo: Path, inputs: dict[str, str], error: str) -> None:
    before = {p: p.read_text() for p in (repo / "deploy").glob("*/*.yaml")}
    result, outputs = run_bump(yq, repo, **inputs)
    assert result.returncode != 0
    assert "::error::" in result.stdout
    assert error in result.stdout, result.stdout
    assert outputs == {}
    assert {p: p.read_text() for p in before} == before, "nothing is changed"


def test_a_uri_without_the_version_needs_the_new_uri(yq: Path, repo: Path) -> None:
    target = repo / "deploy" / "staging" / "fraud-scorer.yaml"
    target.write_text(target.read_text().replace("s3://models/fraud-scorer/7", "models:/fraud-scorer@champion"))
    result, _ = run_bump(yq, repo, environment="staging", name="fraud-scorer", version="8")
    assert result.returncode != 0
    assert "does not end in /7: pass the new uri" in result.stdout


def test_actionlint_passes_on_every_workflow() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "actionlint.sh")], capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    workflows = [*(ROOT / ".github" / "workflows").glob("*.yaml"), *ROOT.glob("examples/*/.github/workflows/*.yaml")]
    assert WORKFLOW in workflows
    assert f"actionlint: {len(workflows)} workflows pass" in result.stdout
