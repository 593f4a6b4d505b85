"""The foundation's behaviour on a real API server, controllers and (fake) kubelets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy_dev.testing import (
    REPO,
    SERVING_RUNTIME,
    Cluster,
    Operator,
    condition,
    model_version,
    modeldeployment,
    serving_spec,
    view_rows,
    wait_for,
)
from specs import bad_specs

pytestmark = pytest.mark.e2e


def test_apply_rolls_out_and_reports_ready(cluster: Cluster, operator: Operator, namespace: str) -> None:
    assert cluster.apply(modeldeployment("fraud", namespace, serving_spec())).returncode == 0
    deployment = wait_for(
        lambda: (
            (d := cluster.get("deployment", "fraud", namespace))
            and condition(d, "Available").get("status") == "True"
            and d["status"].get("availableReplicas") == 3
            and d
        ),
        what="the Deployment to become Available with 3 pods",
    )
    md = wait_for(lambda: cluster.ready("fraud", namespace), what="Ready=True")
    status = md["status"]
    assert status["phase"] == "Ready"
    assert status["stable"]["model"] == {
        "name": "fraud-scorer",
        "version": "7",
        "uri": "s3://models/fraud-scorer/7",
        "image": SERVING_RUNTIME["image"],
    }
    assert status["stable"]["revision"] == deployment["metadata"]["labels"]["modeldeploy.io/revision"]
    assert (status["replicas"], status["readyReplicas"]) == (3, 3)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Progressing": "False",
        "Degraded": "False",
        "Paused": "False",
        "Stalled": "False",
    }
    service = cluster.get("service", "fraud", namespace)
    assert service is not None
    for child in (deployment, service):
        assert child["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
    printed = cluster.printed("mdep", "fraud", namespace)
    assert list(printed) == ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "READY", "AGE"]
    assert [printed[c] for c in ("NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "READY")] == [
        "fraud",
        "Ready",
        "7",
        "",
        "",
        "True",
    ]
    assert wait_for(
        lambda: {"RolloutStarted", "RolloutCompleted"} <= set(cluster.event_reasons("fraud", namespace)), what="Events"
    )


def test_spec_change_rolls_out_a_new_revision(cluster: Cluster, operator: Operator, namespace: str) -> None:
    cluster.apply(modeldeployment("fraud", namespace, serving_spec()))
    first = wait_for(lambda: cluster.ready("fraud", namespace), what="first revision Ready")
    spec = serving_spec(model={**serving_spec()["model"], "version": "8", "uri": "s3://models/fraud-scorer/8"})
    cluster.apply(modeldeployment("fraud", namespace, spec))
    second = wait_for(
        lambda: (md := cluster.ready("fraud", namespace)) and md["metadata"]["generation"] == 2 and md,
        what="second revision Ready",
    )
    assert second["status"]["stable"]["model"]["version"] == "8"
    assert second["status"]["stable"]["revision"] != first["status"]["stable"]["revision"]
    assert second["status"]["targetRevision"] == second["status"]["stable"]["revision"]
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "jsonpath={.items[*].metadata.labels}").stdout
    assert first["status"]["stable"]["revision"] not in pods
    assert condition(second, "Degraded")["lastTransitionTime"] == condition(first, "Degraded")["lastTransitionTime"]
    assert "RolloutStarted" in cluster.event_reasons("fraud", namespace)


def test_scale_up_and_down_to_zero(cluster: Cluster, operator: Operator, namespace: str) -> None:
    cluster.apply(modeldeployment("fraud", namespace, serving_spec(replicas=2)))
    wait_for(lambda: cluster.ready("fraud", namespace), what="Ready at 2 replicas")
    revision = cluster.require("mdep", "fraud", namespace)["status"]["stable"]["revision"]
    cluster.apply(modeldeployment("fraud", namespace, serving_spec(replicas=5)))
    md = wait_for(
        lambda: (m := cluster.ready("fraud", namespace)) and m["status"]["readyReplicas"] == 5 and m,
        what="5 ready replicas",
    )
    assert md["status"]["stable"]["revision"] == revision, "scaling is not a new revision"
    cluster.apply(modeldeployment("fraud", namespace, serving_spec(replicas=0)))
    md = wait_for(
        lambda: (m := cluster.get("mdep", "fraud", namespace)) and m["status"].get("phase") == "ScaledToZero" and m,
        what="ScaledToZero",
    )
    assert md["status"]["replicas"] == 0
    # A new model while scaled to zero rolls straight through: no canary, whose pods would get all the traffic.
    rollout = {"steps": [{"setWeight": 50}, {"pause": {}}]}
    cluster.apply(
        modeldeployment("fraud", namespace, serving_spec(replicas=0, model=model_version("8"), rollout=rollout))
    )
    md = wait_for(
        lambda: (
            (m := cluster.get("mdep", "fraud", namespace))
            and m["status"].get("phase") == "ScaledToZero"
            and m["status"]["stable"]["model"]["version"] == "8"
            and m
        ),
        what="version 8 stable at zero",
    )
    assert "canary" not in md["status"]
    assert cluster.get("deployment", "fraud-canary", namespace) is None
    assert "CanaryStarted" not in cluster.event_reasons("fraud", namespace)


def test_autoscaling_owns_an_hpa_that_goes_away_with_it(cluster: Cluster, operator: Operator, namespace: str) -> None:
    cluster.apply(
        modeldeployment(
            "fraud", namespace, serving_spec(replicas=None, autoscaling={"minReplicas": 2, "maxReplicas": 4})
        )
    )
    hpa = wait_for(lambda: cluster.get("hpa", "fraud", namespace), what="the HPA")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    cluster.apply(modeldeployment("fraud", namespace, serving_spec(replicas=1)))
    wait_for(lambda: cluster.get("hpa", "fraud", namespace) is None, what="the HPA to be deleted")
    wait_for(
        lambda: (d := cluster.get("deployment", "fraud", namespace)) and d["spec"]["replicas"] == 1,
        what="fixed replicas again",
    )


def test_delete_garbage_collects_children(cluster: Cluster, operator: Operator, namespace: str) -> None:
    cluster.apply(modeldeployment("fraud", namespace, serving_spec()))
    wait_for(lambda: cluster.ready("fraud", namespace), what="Ready")
    cluster.kubectl("delete", "mdep", "fraud", "-n", namespace)
    wait_for(
        lambda: (
            cluster.get("deployment", "fraud", namespace) is None and cluster.get("service", "fraud", namespace) is None
        ),
        what="children to be garbage-collected",
    )
    wait_for(
        lambda: not cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.strip(), what="pods to go"
    )


def test_deleted_child_is_recreated(cluster: Cluster, operator: Operator, namespace: str) -> None:
    cluster.apply(modeldeployment("fraud", namespace, serving_spec()))
    wait_for(lambda: cluster.ready("fraud", namespace), what="Ready")
    old_uid = cluster.require("service", "fraud", namespace)["metadata"]["uid"]
    cluster.kubectl("delete", "service", "fraud", "-n", namespace)
    wait_for(
        lambda: (s := cluster.get("service", "fraud", namespace)) and s["metadata"]["uid"] != old_uid,
        what="the Service to come back",
    )
    # ... and says so, so that whoever deleted it learns who put it back.
    wait_for(lambda: "ChildRecreated" in cluster.event_reasons("fraud", namespace), what="a ChildRecreated Event")


def test_edited_child_is_set_back(cluster: Cluster, operator: Operator, namespace: str) -> None:
    cluster.apply(modeldeployment("fraud", namespace, serving_spec()))
    wait_for(lambda: cluster.ready("fraud", namespace), what="Ready")
    cluster.kubectl("scale", "deployment", "fraud", "--replicas=1", "-n", namespace)
    cluster.kubectl("set", "env", "deployment/fraud", "-n", namespace, "MODEL_VERSION=tampered")
    restored = wait_for(
        lambda: (
            (d := cluster.get("deployment", "fraud", namespace))
            and d["spec"]["replicas"] == 3
            and {"name": "MODEL_VERSION", "value": "7"} in d["spec"]["template"]["spec"]["containers"][0]["env"]
            and d
        ),
        what="the operator to set the Deployment back",
    )
    assert (
        restored["metadata"]["labels"]["modeldeploy.io/revision"]
        == cluster.require("mdep", "fraud", namespace)["status"]["targetRevision"]
    )
    repaired = wait_for(
        lambda: [
            e["message"]
            for e in json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
            if e["reason"] == "ChildRepaired"
        ],
        what="a ChildRepaired Event",
    )
    assert all(m.startswith("Restored Deployment fraud: it was changed by someone else (") for m in repaired)
    assert any("spec.replicas 1 → 3" in m or "MODEL_VERSION" in m or ".value " in m for m in repaired), repaired


def test_foreign_object_with_our_name_is_left_alone(cluster: Cluster, operator: Operator, namespace: str) -> None:
    cluster.kubectl("create", "service", "clusterip", "fraud", "--tcp=80:80", "-n", namespace)
    before = cluster.require("service", "fraud", namespace)
    cluster.apply(modeldeployment("fraud", namespace, serving_spec()))
    md = wait_for(
        lambda: (
            (m := cluster.get("mdep", "fraud", namespace))
            and condition(m, "Degraded").get("reason") == "NameConflict"
            and m
        ),
        what="NameConflict",
    )
    assert "Service" in condition(md, "Degraded")["message"]
    after = cluster.require("service", "fraud", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


@pytest.mark.parametrize("case", bad_specs("schema", "cel"), ids=lambda c: c["id"])
def test_api_server_rejects_malformed_specs(cluster: Cluster, namespace: str, case: dict[str, Any]) -> None:
    result = cluster.apply(modeldeployment(case.get("name", "bad"), namespace, case["spec"]))
    assert result.returncode != 0, f"{case['id']} was admitted"
    assert case["api_error"] in result.stderr
    assert cluster.kubectl("get", "mdep", "-n", namespace, "-o", "name").stdout.strip() == ""


@pytest.mark.parametrize("case", bad_specs("operator"), ids=lambda c: c["id"])
def test_operator_reports_what_admission_cannot_know(
    cluster: Cluster, operator: Operator, namespace: str, case: dict[str, Any]
) -> None:
    cluster.apply(modeldeployment("fraud", namespace, serving_spec()))
    wait_for(lambda: cluster.ready("fraud", namespace), what="a good revision first")
    assert cluster.apply(modeldeployment("fraud", namespace, case["spec"])).returncode == 0
    md = wait_for(
        lambda: (
            (m := cluster.get("mdep", "fraud", namespace))
            and m["status"]["observedGeneration"] == 2
            and condition(m, "Degraded").get("status") == "True"
            and m
        ),
        what="Degraded",
    )
    degraded = condition(md, "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert case["field"] in degraded["message"]
    assert case["error"] in degraded["message"]
    assert md["status"]["phase"] == "Degraded"
    assert md["status"]["stable"]["model"]["version"] == "7", "the last good revision keeps serving"
    deployment = cluster.require("deployment", "fraud", namespace)
    assert deployment["metadata"]["generation"] == 1, "nothing was applied"
    assert "SpecRejected" in wait_for(lambda: cluster.event_reasons("fraud", namespace), what="events")


def test_operator_restart_writes_nothing_to_unchanged_objects(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    cluster.apply(
        [
            modeldeployment("fixed", namespace, serving_spec()),
            modeldeployment("scaled", namespace, serving_spec(replicas=None, autoscaling={"maxReplicas": 3})),
        ]
    )
    for name in ("fixed", "scaled"):
        wait_for(partial(cluster.ready, name, namespace), what=f"{name} Ready")

    kinds = "mdep,deployment,service,hpa"
    before = cluster.resource_versions(namespace, kinds)
    mark = operator.restart()
    assert cluster.resource_versions(namespace, kinds) == before
    if cluster.audit_log is not None:
        writes = [
            (w["verb"], w["objectRef"].get("resource"), w["objectRef"].get("name"))
            for w in cluster.operator_writes(mark)
        ]
        assert writes == [], f"the restarted operator wrote: {writes}"


EXAMPLES = sorted((REPO / "manifests" / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: str(path.relative_to(REPO / "manifests" / "examples")))
def test_every_example_is_applied_and_served(
    cluster: Cluster, operator: Operator, namespace: str, example: Path
) -> None:
    """Applied for real: admitted, rendered by the operator, and its pod spec accepted by the API server (under the
    restricted Pod Security profile). A registry example without its registry says so instead."""
    cluster.kubectl("apply", "-n", namespace, "-f", str(example))
    md = yaml.safe_load(example.read_text())
    name = md["metadata"]["name"]
    if md["spec"]["model"]["uri"].startswith("models:/"):
        unresolved = wait_for(
            lambda: condition(cluster.get("modeldeployment", name, namespace), "ModelResolved"),
            timeout=60,
            what=f"{example.name}: ModelResolved",
        )
        # Its Secret is not there: the condition names it (it would next say the tracking server is unreachable).
        assert (unresolved["status"], unresolved["reason"]) == ("False", "SecretUnreadable")
        assert md["spec"]["model"]["registry"]["mlflow"]["secretName"] in unresolved["message"]
        return
    deployment = wait_for(
        lambda: cluster.get("deployment", name, namespace),
        timeout=60,
        what=f"{example.name}: the operator's Deployment",
    )
    pod = deployment["spec"]["template"]["spec"]
    placement = md["spec"].get("pod", {})
    for field in ("nodeSelector", "serviceAccountName", "priorityClassName"):
        assert pod.get(field) == placement.get(field), field
    fetches = "initContainers" in pod
    assert fetches == (not md["spec"]["model"]["uri"].startswith(("builtin://", "pvc://"))), example.name
    ready = condition(cluster.get("modeldeployment", name, namespace), "Ready")
    assert ready.get("reason") != "InvalidSpec", ready


def test_the_readmes_minimal_example_is_an_example_file() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## A minimal ModelDeployment", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    minimal = (REPO / "manifests" / "examples" / "minimal.yaml").read_text()
    assert yaml.safe_load(block) == yaml.safe_load(minimal)


def test_kubectl_finds_and_runs_the_plugin(cluster: Cluster, operator: Operator, namespace: str) -> None:
    cluster.apply(modeldeployment("fraud", namespace, serving_spec()))
    wait_for(lambda: cluster.ready("fraud", namespace), what="Ready")
    # kubectl hands a plugin only the words after its name; the plugin finds the cluster through KUBECONFIG.
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "KUBECONFIG": str(cluster.kubeconfig),
        "COLUMNS": "200",
    }

    def kubectl(*args: str) -> str:
        result = subprocess.run(
            [cluster.kubectl_path, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
        return result.stdout

    listing = subprocess.run([cluster.kubectl_path, "plugin", "list"], capture_output=True, text=True, env=env)
    assert "kubectl-modeldeploy" in listing.stdout, "kubectl discovers the plugin (warnings about shadows are fine)"
    status = json.loads(kubectl("modeldeploy", "status", "fraud", "-n", namespace, "-o", "json"))
    assert status["phase"] == "Ready"
    history = yaml.safe_load(kubectl("modeldeploy", "history", "fraud", "-n", namespace, "-o", "yaml"))
    assert [entry["outcome"] for entry in history] == ["Deployed"]
    view = kubectl("modeldeploy", "status", "fraud", "-n", namespace)
    assert f"ModelDeployment {namespace}/fraud" in view
    rows = view_rows(view)
    assert rows["model version"] == ["7", "-"], "stable serves version 7, no canary"
    assert rows["pods ready"] == ["3/3", "-"]
    assert rows["Ready"][:2] == ["True", "RevisionAvailable"]
