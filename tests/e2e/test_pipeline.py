"""`deploy --wait` and the SDK as a pipeline uses them, on the real control plane with a real Prometheus.

Exit codes: 0 promoted, 1 rolled back (analysis or abort), 2 timed out, 3 invalid spec; the SDK gives the same
outcomes. The command's error paths (no CRD, a stopped API server, a user without rights, an operator that does
not answer) are one line each, with no traceback.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.client import Client, InvalidSpecError, RolloutFailedError, RolloutResult
from modeldeploy.core.status.outcome import verdict
from modeldeploy_dev.cluster import ClusterError, LocalCluster
from modeldeploy_dev.dataplane import LoadGenerator, ModelServers, PrometheusServer
from modeldeploy_dev.testing import Cluster, Operator, model_version, modeldeployment, serving_spec, wait_for

pytestmark = pytest.mark.e2e
NAME = "fraud"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
METRICS = [
    {"name": "success-rate", "builtin": "successRate", "window": "10s", "min": 0.95},
    {"name": "p99-latency", "builtin": "latencyP99", "window": "10s", "max": 0.2},
]


def analysed(version: str, prometheus: PrometheusServer) -> dict[str, Any]:
    rollout = {
        "steps": [{"setWeight": 50}, {"analysis": {"measurements": 3}}],
        "canaryReplicas": 1,
        "scaleDownDelaySeconds": 0,
        "analysis": {
            "interval": "2s",
            "failureLimit": 0,
            "prometheus": {"address": prometheus.address},
            "metrics": METRICS,
        },
    }
    traffic = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "public"}]}}
    return serving_spec(model=model_version(version), rollout=rollout, traffic=traffic, replicas=2)


def paused(version: str) -> dict[str, Any]:
    """A canary that waits at a pause without duration until promoted."""
    return serving_spec(
        model=model_version(version), rollout={"steps": [{"setWeight": 25}, {"pause": {}}], "scaleDownDelaySeconds": 0}
    )


def command(kubeconfig: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "modeldeploy", *args, f"--kubeconfig={kubeconfig}"]


def run(kubeconfig: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(kubeconfig, *args), capture_output=True, text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line the command printed, and nothing else on standard error."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"want one line, got:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def write(tmp_path: Path, obj: dict[str, Any]) -> Path:
    path = tmp_path / f"{obj['metadata']['name']}-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(obj))
    return path


@dataclass
class Deploying:
    """`deploy --wait` in progress, through the command or the SDK; the time it finished."""

    finished_at: float | None = None
    code: int | None = None
    stdout: str = ""
    stderr: str = ""
    result: RolloutResult | None = None
    error: BaseException | None = None

    def done(self) -> bool:
        return self.finished_at is not None


def deploy_in_background(
    via: str, cluster: Cluster, manifest: dict[str, Any], tmp_path: Path, timeout: str = "4m"
) -> Deploying:
    state = Deploying()

    def cli() -> None:
        process = subprocess.Popen(
            command(cluster.kubeconfig, "deploy", "-f", str(write(tmp_path, manifest)), "--wait", "--timeout", timeout),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = process.communicate()
        state.finished_at, state.code, state.stdout, state.stderr = time.monotonic(), process.returncode, out, err

    def sdk() -> None:
        try:
            state.result = Client(kubeconfig=str(cluster.kubeconfig)).deploy(manifest, timeout=240)
            state.code = state.result.exit_code
        except BaseException as error:
            state.error = error
        state.finished_at = time.monotonic()

    threading.Thread(target=cli if via == "cli" else sdk, daemon=True).start()
    return state


def route_weights(cluster: Cluster, namespace: str) -> Callable[[], tuple[int, int] | None]:
    def read() -> tuple[int, int] | None:
        route = cluster.get("httproute", NAME, namespace)
        if not route:
            return None
        refs = route["spec"]["rules"][0]["backendRefs"]
        return refs[0]["weight"], refs[1]["weight"] if len(refs) > 1 else 0

    return read


@pytest.mark.parametrize("via", ["cli", "sdk"])
@pytest.mark.parametrize(
    ("faults", "code", "said"),
    [({}, 0, "promoted"), ({"error_rate": 1.0}, 1, "rolled back (AnalysisFailed)")],
    ids=["good", "bad"],
)
def test_deploy_wait_exits_with_the_analysis_outcome(
    cluster: Cluster,
    operator: Operator,
    namespace: str,
    servers: ModelServers,
    prometheus: PrometheusServer,
    tmp_path: Path,
    via: str,
    faults: dict[str, float],
    code: int,
    said: str,
) -> None:
    sdk = Client(namespace=namespace, kubeconfig=str(cluster.kubeconfig))
    first = sdk.deploy(modeldeployment(NAME, namespace, analysed("1", prometheus)), timeout=180, check=True)
    assert first.reason.startswith(f"revision {first.object['status']['stable']['revision']} (version 1) serving")
    servers.start("stable", first.object["status"]["stable"]["revision"], "1")

    deploying = deploy_in_background(
        via, cluster, modeldeployment(NAME, namespace, analysed("2", prometheus)), tmp_path
    )
    canary = wait_for(lambda: (sdk.get(NAME).get("status") or {}).get("canary"), 120, "the canary")
    servers.start("canary", canary["revision"], "2", **faults)
    visible_at: float | None = None
    with LoadGenerator(servers, route_weights(cluster, namespace)):

        def finished() -> bool:
            nonlocal visible_at
            if visible_at is None and verdict(sdk.get(NAME)) is not None:  # the apply of v2 was observed before
                visible_at = time.monotonic()
            return deploying.done()

        wait_for(finished, 240, f"deploy --wait ({via}) to finish")
    assert deploying.error is None, repr(deploying.error)
    assert deploying.code == code, deploying.stdout
    reason = deploying.stdout if via == "cli" else str(deploying.result)
    assert said in reason
    if via == "cli":
        assert f"{namespace}/{NAME} Progressing: canary revision {canary['revision']}" in deploying.stderr, (
            "plain progress lines when not on a terminal"
        )
    assert f"revision {canary['revision']} (version 2)" in reason
    if via == "cli" and visible_at is not None:
        assert deploying.finished_at is not None
        # The figure in the README: how long after the outcome is visible in the API the command exits.
        print(f"\ndeploy --wait exited {deploying.finished_at - visible_at:.2f}s after the outcome was visible")


def test_timeout_abort_and_status_timeout(cluster: Cluster, operator: Operator, namespace: str, tmp_path: Path) -> None:
    kubeconfig = cluster.kubeconfig
    sdk = Client(namespace=namespace, kubeconfig=str(kubeconfig))
    sdk.deploy(modeldeployment(NAME, namespace, paused("1")), timeout=180, check=True)

    # Nothing to roll out: the same spec again exits 0 at once, from the status of this generation.
    same = run(
        kubeconfig,
        "-n",
        namespace,
        "deploy",
        "-f",
        str(write(tmp_path, modeldeployment(NAME, namespace, paused("1")))),
        "--wait",
    )
    assert same.returncode == 0, same.stderr
    assert "Succeeded: revision" in same.stdout

    # A canary that waits for a promotion times out: exit 2, and the reason says where it waits.
    v2 = write(tmp_path, modeldeployment(NAME, namespace, paused("2")))
    timed_out = run(kubeconfig, "-n", namespace, "deploy", "-f", str(v2), "--wait", "--timeout", "15s")
    assert timed_out.returncode == 2, timed_out.stdout + timed_out.stderr
    assert "TimedOut: timed out after 15s: Paused:" in timed_out.stdout
    assert "paused until promoted" in timed_out.stdout
    assert "Traceback" not in timed_out.stderr
    assert sdk.wait(NAME, timeout=2).outcome == "TimedOut"
    waiting = run(kubeconfig, "status", NAME, "-n", namespace, "--timeout", "3s")
    assert waiting.returncode == 2

    # An abort rolls it back: the SDK's wait raises with the outcome, `status --timeout` exits 1.
    raised: list[BaseException] = []

    def wait_checked() -> None:
        try:
            sdk.wait(NAME, timeout=120, check=True)
        except BaseException as error:
            raised.append(error)

    waiter = threading.Thread(target=wait_checked)
    waiter.start()
    assert "aborted" in run(kubeconfig, "abort", NAME, "-n", namespace).stdout
    waiter.join(150)
    assert len(raised) == 1
    assert isinstance(raised[0], RolloutFailedError)
    assert raised[0].result.outcome == "RolledBack"
    assert raised[0].exit_code == 1
    after = run(kubeconfig, "status", NAME, "-n", namespace, "--timeout", "30s")
    assert after.returncode == 1
    assert "was aborted (Aborted)" in after.stdout


def test_an_invalid_spec_exits_3(cluster: Cluster, operator: Operator, namespace: str, tmp_path: Path) -> None:
    kubeconfig = cluster.kubeconfig
    # Refused at admission by a CEL rule.
    refused = modeldeployment(NAME, namespace, serving_spec(model={**model_version("1"), "uri": "ftp://m/1"}))
    result = run(kubeconfig, "deploy", "-f", str(write(tmp_path, refused)), "--wait")
    assert result.returncode == 3
    assert "model.uri must start with one of s3://" in one_line_error(result)
    with pytest.raises(InvalidSpecError, match=r"model\.uri must start with one of"):
        Client(kubeconfig=str(kubeconfig)).deploy(refused, timeout=30)

    # Accepted by the API server, reported by the operator as InvalidSpec.
    spec = {"model": {"name": "fraud-scorer", "version": "7", "uri": "s3://m/7", "format": "xgboost"}}
    reported = run(kubeconfig, "deploy", "-f", str(write(tmp_path, modeldeployment("xgb", namespace, spec))), "--wait")
    assert reported.returncode == 3, reported.stdout + reported.stderr
    assert "InvalidSpec: invalid spec:" in reported.stdout
    assert "format 'xgboost' is not served" in reported.stdout
    sdk_result = Client(namespace=namespace, kubeconfig=str(kubeconfig)).wait("xgb", timeout=30)
    assert (sdk_result.outcome, sdk_result.exit_code) == ("InvalidSpec", 3)


def test_a_user_with_only_view_rights_gets_one_line(
    cluster: Cluster, operator: Operator, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("create", "serviceaccount", "viewer", "-n", namespace)
    cluster.kubectl(
        "create", "rolebinding", "viewer", "--clusterrole=view", f"--serviceaccount={namespace}:viewer", "-n", namespace
    )
    viewer = f"system:serviceaccount:{namespace}:viewer"
    manifest = write(tmp_path, modeldeployment(NAME, namespace, paused("1")))
    result = run(cluster.kubeconfig, "--as", viewer, "deploy", "-f", str(manifest), "--wait")
    assert result.returncode == 4
    line = one_line_error(result)
    assert line.startswith("error: forbidden: ")
    assert viewer in line
    listed = run(cluster.kubeconfig, "list", "--as", viewer, "-n", namespace)
    # Reading may be allowed (when the CRD's roles aggregate to view) or forbidden: either way, no traceback.
    assert listed.returncode in (0, 4)
    if listed.returncode:
        assert one_line_error(listed).startswith("error: forbidden: ")

    # The Role the examples give a pipeline step is enough to deploy, wait and look.
    rbac = list(yaml.safe_load_all((EXAMPLES / "argo" / "model-shipper-rbac.yaml").read_text()))
    for obj in rbac:
        obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects") or []:
            subject["namespace"] = namespace
    assert cluster.apply(rbac).returncode == 0
    shipper = f"system:serviceaccount:{namespace}:model-shipper"
    shipped = run(cluster.kubeconfig, "--as", shipper, "-n", namespace, "deploy", "-f", str(manifest), "--wait")
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    shown = run(cluster.kubeconfig, "--as", shipper, "-n", namespace, "status", NAME)
    assert shown.returncode == 0, shown.stderr
    assert "pods" in shown.stdout
    assert "recent events" in shown.stdout


def test_no_crd_no_operator_and_a_stopped_api_server(binaries: Path, tmp_path: Path) -> None:
    """A pristine cluster of its own: first without the CRD, then with it but without an operator, then stopped."""
    local = LocalCluster.temporary(nodes=1)
    try:
        local.start()
    except ClusterError as error:
        pytest.fail(f"the local control plane could not start: {error}", pytrace=False)
    try:
        pristine = Cluster.of(local)
        kubeconfig = pristine.kubeconfig
        for args in (["list", "-A"], ["status", NAME], ["-n", "default", "promote", NAME]):
            result = run(kubeconfig, *args)
            assert result.returncode == 4, result.stderr
            assert "the ModelDeployment CRD (modeldeployments.modeldeploy.io/v1alpha1) is not installed" in (
                one_line_error(result)
            )

        pristine.install_crds()
        manifest = write(tmp_path, modeldeployment(NAME, "default", paused("1")))
        waited = run(kubeconfig, "deploy", "-f", str(manifest), "--wait", "--timeout", "5s")
        assert waited.returncode == 2
        assert "the operator has not observed generation 1 (is it running?)" in waited.stdout
        unanswered = run(kubeconfig, "promote", NAME, "--wait", "2")
        assert unanswered.returncode == 2
        assert "the operator has not answered within 2s" in one_line_error(unanswered)
        missing = run(kubeconfig, "status", "nothing-here")
        assert missing.returncode == 4
        assert one_line_error(missing) == "error: ModelDeployment default/nothing-here: not found"
        # The credentials inline: the cluster's own files go with it.
        kept = tmp_path / "stopped.kubeconfig"
        kept.write_text(pristine.kubectl("config", "view", "--raw", "--flatten").stdout)
    finally:
        local.stop()
    started = time.monotonic()
    stopped = run(kept, "list", timeout=60)
    assert stopped.returncode == 4
    assert "cannot reach the API server at https://" in one_line_error(stopped)
    print(f"\nan unreachable API server is reported after {time.monotonic() - started:.1f}s")
