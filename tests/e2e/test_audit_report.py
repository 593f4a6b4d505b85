"""The audit report of a real rollout: the operator, a real Prometheus, real model servers and real traffic, a
manual promote past a pause, a rollback on a failed analysis, then `modeldeploy report` made after the fact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from modeldeploy_dev.dataplane import LoadGenerator, ModelServers, PrometheusServer
from modeldeploy_dev.testing import Cluster, Operator, model_version, modeldeployment, serving_spec, wait_for

pytestmark = pytest.mark.e2e
NAME = "fraud"
METRICS = [
    {"name": "success-rate", "builtin": "successRate", "window": "10s", "min": 0.95},
    {"name": "p99-latency", "builtin": "latencyP99", "window": "10s", "relative": {"maxRatio": 10}, "max": 0.2},
    # Drift compares the predictions of each track within its window: 30 s holds 200 at the load generator's rate.
    {"name": "drift", "builtin": "predictionDrift", "window": "30s", "max": 0.25, "minSamples": 200},
]


def spec(version: str, prometheus: PrometheusServer) -> dict[str, Any]:
    rollout = {
        # A pause that a person ends with `modeldeploy promote`; the analysis measures from the gate after it.
        "steps": [{"setWeight": 50}, {"pause": {}}, {"analysis": {"measurements": 3}}],
        "canaryReplicas": 1,
        "scaleDownDelaySeconds": 0,
        "analysis": {
            "interval": "2s",
            "failureLimit": 0,
            "startingStep": 2,
            "prometheus": {"address": prometheus.address},
            "metrics": METRICS,
        },
    }
    traffic = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "public"}]}}
    return serving_spec(model=model_version(version), rollout=rollout, traffic=traffic, replicas=2)


def md(cluster: Cluster, namespace: str) -> dict[str, Any]:
    found = cluster.get("mdep", NAME, namespace)
    assert found is not None
    return found


def route_weights(cluster: Cluster, namespace: str) -> Any:
    def read() -> tuple[int, int] | None:
        route = cluster.get("httproute", NAME, namespace)
        if not route:
            return None
        refs = route["spec"]["rules"][0]["backendRefs"]
        return refs[0]["weight"], refs[1]["weight"] if len(refs) > 1 else 0

    return read


def report(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy", "report", *args, f"--kubeconfig={cluster.kubeconfig}"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_report_of_a_rolled_back_canary(
    cluster: Cluster,
    operator: Operator,
    namespace: str,
    servers: ModelServers,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    assert cluster.apply(modeldeployment(NAME, namespace, spec("1", prometheus))).returncode == 0
    stable = wait_for(lambda: (m := md(cluster, namespace))["status"].get("stable") and m, what="v1 stable")
    servers.start("stable", stable["status"]["stable"]["revision"], "1")
    assert cluster.apply(modeldeployment(NAME, namespace, spec("2", prometheus))).returncode == 0
    started = wait_for(lambda: (m := md(cluster, namespace))["status"].get("canary") and m, what="canary")
    revision = started["status"]["canary"]["revision"]
    servers.start("canary", revision, "2", error_rate=0.5)
    with LoadGenerator(servers, route_weights(cluster, namespace)):
        wait_for(lambda: (m := md(cluster, namespace))["status"]["canary"]["phase"] == "Paused" and m, 120, "the pause")
        # Enough of the canary in Prometheus for every metric to have a value before the analysis starts (drift
        # needs 200 predictions a track).
        predictions = f'sum(modelserver_prediction_count{{modeldeploy_io_revision="{revision}"}}) >= 250'
        wait_for(lambda: prometheus.query(predictions), 90, "the canary's predictions in Prometheus")
        answer = cluster.modeldeploy("promote", NAME, "-n", namespace)
        assert "skipped step 2/3" in answer
        rolled = wait_for(
            lambda: (m := md(cluster, namespace))["status"].get("lastRollback") and m, 120, "rollback on success-rate"
        )
    assert rolled["status"]["lastRollback"]["reason"] == "AnalysisFailed"
    user = json.loads(cluster.kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]["username"]
    assert rolled["status"]["lastAction"]["by"] == user, "status records who asked for the promote"

    # After the fact: the canary's model server is gone, Prometheus still has its series.
    servers.stop("canary")
    output = tmp_path / "audit" / "report.html"
    output.parent.mkdir()
    made = report(cluster, NAME, "-n", namespace, "-o", str(output))
    assert made.returncode == 0, made.stderr
    page = output.read_text()
    print(f"\nreport written to {output}", file=sys.stderr)

    # Each metric, with its bound (escaped), its plot embedded and a PNG beside the page.
    for metric, bound in (
        ("success-rate", "&gt;= 0.95"),
        ("p99-latency", "&lt;= 0.2 and &lt;= 10 x stable"),
        ("drift", "&lt;= 0.25"),
    ):
        assert f"<h3>{metric}: <code>{bound}</code></h3>" in page, metric
    assert page.count('src="data:image/png;base64,') == 3
    assert "could not be read" not in page
    assert "no value" not in page, "every metric has values in the window"
    # Decision points and the timeline: start, weight, the manual promote and who asked, the failure, the rollback.
    decisions = page.split('id="decisions"')[1].split('id="timeline"')[0]
    for reason in ("CanaryStarted", "WeightChanged", "ActionHandled", "AnalysisFailed", "RolledBack"):
        assert reason in decisions, reason
    timeline = page.split('id="timeline"')[1]
    assert f"promote by {user}: skipped step 2/3" in timeline
    assert "Canary weight 0% -&gt; 50%" in timeline
    assert "Measured: Failed" in timeline
    assert "RolloutCompleted" not in timeline, "v1's own rollout is not part of this one"
    # Lineage and outcome.
    lineage = page.split('id="lineage"')[1].split('id="metrics"')[0]
    model = rolled["status"]["lastRollback"]["model"]
    for value in ("fraud-scorer", "2", model["uri"], model["image"]):
        assert f"<code>{value}</code>" in lineage
    outcome = page.split('id="outcome"')[1].split('id="lineage"')[0]
    assert "RolledBack (AnalysisFailed)" in outcome
    assert "success-rate" in outcome

    plots = sorted(output.parent.glob("report-*.png"))
    assert [p.name for p in plots] == ["report-drift.png", "report-p99-latency.png", "report-success-rate.png"]
    for plot in plots:
        assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert plot.stat().st_size > 20_000, f"{plot.name} looks empty"
        with Image.open(plot) as image:
            assert image.size == (1100, 440)
            # Not a blank page: the canary (orange) and stable (blue) lines are both drawn.
            colours = {rgb for _, rgb in image.convert("RGB").getcolors(maxcolors=1 << 20) or []}
        if plot.name == "report-success-rate.png":
            assert (0xEF, 0x6C, 0x00) in colours, "the canary's line"
            assert (0x15, 0x65, 0xC0) in colours, "the stable line"

    # Bad input: clear one-line errors and nothing written.
    bad_name = report(cluster, "nope", "-n", namespace, "-o", str(tmp_path / "x.html"))
    assert bad_name.returncode == 1
    assert f"ModelDeployment {namespace}/nope not found" in bad_name.stderr
    bad_revision = report(cluster, NAME, "-n", namespace, "--revision", "0000", "-o", str(tmp_path / "x.html"))
    assert bad_revision.returncode == 1
    assert "no rollout of revision 0000" in bad_revision.stderr
    assert revision in bad_revision.stderr, "the error names the revisions there are"
    bad_extension = report(cluster, NAME, "-n", namespace, "-o", str(tmp_path / "x.pdf"))
    assert bad_extension.returncode == 1
    assert "unknown output extension '.pdf'" in bad_extension.stderr
    assert not list(tmp_path.glob("x*"))

    # Prometheus unreachable: the page is still written, with the timeline and a note that says so.
    offline = tmp_path / "offline.html"
    unreachable = report(cluster, NAME, "-n", namespace, "-o", str(offline), "--prometheus-url", "http://127.0.0.1:9")
    assert unreachable.returncode == 0, unreachable.stderr
    assert "Metrics could not be read" in unreachable.stderr
    text = offline.read_text()
    assert "Metrics could not be read: Prometheus at http://127.0.0.1:9 unreachable" in text
    assert "RolledBack" in text.split('id="timeline"')[1]
