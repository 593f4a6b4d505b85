"""The `modeldeploy` command for people and CI: global flags anywhere, exit codes, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from modeldeploy import __version__, cli, client
from modeldeploy.client import RolloutResult
from modeldeploy.errors import ClusterUnreachableError, CRDNotInstalledError, ForbiddenError, NoAnswerError

MANIFEST = """\
apiVersion: modeldeploy.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud}
spec: {model: {name: m, version: "2", uri: "s3://m/2"}}
"""


class FakeClient:
    """Stands in for client.Client; records how it was built and what it was asked."""

    made: list[FakeClient] = []
    outcome: str = "Succeeded"
    error: Exception | None = None

    def __init__(self, namespace: str | None, context: str | None, kubeconfig: str | None, as_user: str | None):
        self.namespace = namespace or "default"
        self.target = (namespace, context, kubeconfig, as_user)
        self.calls: list[tuple[Any, ...]] = []
        FakeClient.made.append(self)

    def _maybe_fail(self) -> None:
        if FakeClient.error is not None:
            raise FakeClient.error

    def apply(self, manifest: dict[str, Any], force_conflicts: bool) -> dict[str, Any]:
        self._maybe_fail()
        self.calls.append(("apply", manifest["metadata"]["name"]))
        return {"metadata": {"name": manifest["metadata"]["name"], "namespace": self.namespace, "generation": 5}}

    def wait(self, name: str, namespace: str, timeout: float, generation: int | None, **_: Any) -> RolloutResult:
        self.calls.append(("wait", name, namespace, timeout, generation))
        return RolloutResult(name, namespace, FakeClient.outcome, "because", 1.0)  # type: ignore[arg-type]

    def get(self, name: str) -> dict[str, Any]:
        self._maybe_fail()
        return {"metadata": {"name": name, "namespace": self.namespace}, "status": {"history": []}}

    def promote(self, name: str, full: bool, wait: float) -> str:
        self._maybe_fail()
        return "skipped step 1/4"


@pytest.fixture(autouse=True)
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.setattr(client, "Client", FakeClient)
    FakeClient.made, FakeClient.outcome, FakeClient.error = [], "Succeeded", None
    return FakeClient


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["modeldeploy", *args])
    return cli.run_cli()


def test_version(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(monkeypatch, "--version") == 0
    assert capsys.readouterr().out.strip() == f"modeldeploy {__version__}"


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "risk", "--context", "prod", "--kubeconfig", "/k", "--as", "bob", "history", "fraud"],
        ["history", "fraud", "-n", "risk", "--context", "prod", "--kubeconfig", "/k", "--as", "bob"],
        ["-n", "other", "--context", "prod", "history", "fraud", "-n", "risk", "--kubeconfig", "/k", "--as", "bob"],
    ],
    ids=["before", "after", "after-wins"],
)
def test_kubectl_style_flags_before_or_after_the_subcommand(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    assert run(monkeypatch, *args) == 0
    assert FakeClient.made[-1].target == ("risk", "prod", "/k", "bob")


@pytest.mark.parametrize(
    ("outcome", "code"),
    [("Succeeded", 0), ("RolledBack", 1), ("TimedOut", 2), ("InvalidSpec", 3), ("Stalled", 3)],
)
def test_deploy_wait_exits_with_the_outcome(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, outcome: str, code: int
) -> None:
    (tmp_path / "md.yaml").write_text(MANIFEST)
    FakeClient.outcome = outcome
    assert (
        run(monkeypatch, "-n", "risk", "deploy", "-f", str(tmp_path / "md.yaml"), "--wait", "--timeout", "2m") == code
    )
    made = FakeClient.made[-1]
    assert made.calls == [("apply", "fraud"), ("wait", "fraud", "risk", pytest.approx(120, abs=1), 5)]
    assert capsys.readouterr().out.strip() == f"risk/fraud: {outcome}: because (1.0s)"


def test_deploy_without_wait_only_applies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "md.yaml").write_text(MANIFEST)
    FakeClient.outcome = "RolledBack"
    assert run(monkeypatch, "deploy", "-f", str(tmp_path / "md.yaml")) == 0
    assert FakeClient.made[-1].calls == [("apply", "fraud")]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["list", "-o", "xml"], 4, "error: unknown output format 'xml'; use wide or json or yaml"),
        (["history", "fraud", "-o", "wide"], 4, "error: unknown output format 'wide'; use json or yaml"),
        (["deploy", "-f", "/nonexistent.yaml"], 3, "error: cannot read /nonexistent.yaml"),
        (["status", "fraud", "--timeout", "soon"], 4, "error: --timeout 'soon' is not a duration"),
    ],
)
def test_bad_input_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    assert run(monkeypatch, *args) == code
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_a_usage_error_never_looks_like_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(monkeypatch, "deploy", "--no-such-flag") == 4


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ClusterUnreachableError("cannot reach the API server at https://127.0.0.1:1: connection refused"), 4),
        (CRDNotInstalledError("the ModelDeployment CRD is not installed"), 4),
        (ForbiddenError('forbidden: User "viewer" cannot patch resource'), 4),
        (NoAnswerError("promote default/fraud: requested, but the operator has not answered within 1s"), 2),
    ],
)
def test_cluster_errors_are_one_line_with_an_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception, code: int
) -> None:
    FakeClient.error = error
    assert run(monkeypatch, "promote", "fraud", "--wait", "1") == code
    assert capsys.readouterr().err == f"error: {error}\n"


def test_parse_timeout() -> None:
    assert [cli.parse_timeout(t) for t in ("90", "90s", "30m", "1h30m", "2.5")] == [90, 90, 1800, 5400, 2.5]
