"""Installing the operator with Helm and kustomize, on a real control plane, with least-privilege RBAC.

Each install test starts its own pristine local cluster (never the session one, where another operator may
run). It installs the chart or the kustomize base, takes a token for the installed ServiceAccount and runs
the operator locally with exactly the installed Deployment's arguments and that token: a ModelDeployment
becoming Ready, with Events, proves the RBAC is enough, and `kubectl auth can-i` proves what it forbids.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart_support import BASE, CHART, RELEASE, SERVICE_ACCOUNT, SYSTEM, operator_container
from modeldeploy.core.sharding import shard_of
from modeldeploy_dev.cluster import ClusterError, LocalCluster
from modeldeploy_dev.testing import (
    SERVING_RUNTIME,
    Cluster,
    Helm,
    Operator,
    condition,
    example_spec,
    modeldeployment,
    ready_at,
    serving_spec,
    wait_for,
)

pytestmark = pytest.mark.e2e

AS_OPERATOR = f"--as=system:serviceaccount:{SYSTEM}:{SERVICE_ACCOUNT}"
# What the operator's log says when the API server refuses it something, in Kopf's words and in ours.
PERMISSION_PROBLEMS = ("forbidden", "not enough permissions", "applyfailed", " 403")


# -- a pristine cluster per install, and the operator run with the installed ServiceAccount's token ---------


def stand_in_crd(group: str, kind: str, plural: str) -> dict[str, Any]:
    """A schemaless CRD for a kind the operator manages but this bare cluster does not serve."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        # *.k8s.io groups need this annotation; "unapproved, ..." is the accepted value for non-upstream copies.
        "metadata": {
            "name": f"{plural}.{group}",
            "annotations": {"api-approved.kubernetes.io": "unapproved, test stand-in"},
        },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


@pytest.fixture
def fresh_cluster(binaries: Path) -> Iterator[Cluster]:
    """A pristine cluster that also serves HTTPRoute and VirtualService, as one with Gateway API and Istio would.

    Then the operator really watches and lists them with the installed permissions, and `kubectl auth can-i`
    can resolve them (for a kind the server does not serve, it checks a group-less resource and says no).
    """
    local = LocalCluster.temporary()
    try:
        local.start()
    except ClusterError as error:
        pytest.fail(f"the local control plane could not start: {error}", pytrace=False)
    try:
        cluster = Cluster.of(local)
        stand_ins = [
            stand_in_crd("gateway.networking.k8s.io", "HTTPRoute", "httproutes"),
            stand_in_crd("networking.istio.io", "VirtualService", "virtualservices"),
        ]
        applied = cluster.apply(stand_ins)
        assert applied.returncode == 0, applied.stderr
        for crd in stand_ins:
            cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}", "--timeout=60s")
        yield cluster
    finally:
        local.stop()


def create_namespace(cluster: Cluster, name: str) -> str:
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    return name


def token_kubeconfig(cluster: Cluster, path: Path) -> Path:
    """A kubeconfig that authenticates as the installed ServiceAccount and nothing else."""
    token = cluster.kubectl("create", "token", SERVICE_ACCOUNT, "-n", SYSTEM, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": admin["clusters"][0]["name"], "user": SERVICE_ACCOUNT}}
        ],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    as_operator = Cluster(path, path, None, cluster.kubectl_path)
    whoami = as_operator.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert whoami.stdout == f"system:serviceaccount:{SYSTEM}:{SERVICE_ACCOUNT}"
    return path


def wait_installed(cluster: Cluster, replicas: int = 1, name: str = "modeldeploy") -> dict[str, Any]:
    """The CRD is served and the operator's Deployment is Available (KWOK makes its pods Ready)."""
    cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.io", "--timeout=60s")
    deployment: dict[str, Any] = wait_for(
        lambda: (
            (d := cluster.get("deployment", name, SYSTEM))
            and condition(d, "Available").get("status") == "True"
            and d["status"].get("readyReplicas") == replicas
            and d
        ),
        120,
        f"the operator's Deployment {name} to become Available",
    )
    return deployment


def operator_as_installed(
    cluster: Cluster, deployment: dict[str, Any], kubeconfig: Path, log_path: Path, *extra_args: str
) -> Operator:
    """`modeldeploy` with the installed container's arguments (on free local ports) and credentials."""
    container = operator_container(deployment)
    assert container["command"] == ["modeldeploy"]
    return Operator(cluster, log_path, args=[*container["args"], *extra_args], kubeconfig=kubeconfig)


def serve_the_example(cluster: Cluster, namespace: str) -> str:
    """manifests/examples/fraud-scorer.yaml with a runtime that serves under KWOK: Ready=True and Events."""
    name = "fraud-scorer"
    applied = cluster.apply(modeldeployment(name, namespace, example_spec(runtime=SERVING_RUNTIME)))
    assert applied.returncode == 0, applied.stderr
    wait_for(lambda: cluster.ready(name, namespace), 120, f"{namespace}/{name} Ready=True")
    wait_for(lambda: cluster.event_reasons(name, namespace), 60, f"Events on {namespace}/{name}")
    assert cluster.get("deployment", name, namespace) is not None
    assert cluster.get("service", name, namespace) is not None
    return name


def assert_no_permission_problems(log_path: Path) -> None:
    lines = log_path.read_text(errors="replace").splitlines()
    problems = [line for line in lines if any(p in line.lower() for p in PERMISSION_PROBLEMS)]
    assert problems == [], "\n".join(problems[:20])


def can_i(cluster: Cluster, *args: str) -> bool:
    result = cluster.kubectl("auth", "can-i", *args, AS_OPERATOR, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {answer!r} {result.stderr}"
    return answer == "yes"


def assert_permissions(cluster: Cluster, allowed: list[tuple[str, ...]], denied: list[tuple[str, ...]]) -> None:
    wrong = [("allowed", a) for a in allowed if not can_i(cluster, *a)]
    wrong += [("denied", d) for d in denied if can_i(cluster, *d)]
    assert wrong == [], f"the ServiceAccount's permissions are not as expected (should be, check): {wrong}"


def everywhere_denied(namespace: str) -> list[tuple[str, ...]]:
    """What the operator must never be able to do, whatever the install mode."""
    return [
        ("list", "secrets", "-A"),
        ("get", "secrets", "-n", namespace),
        ("get", "secrets", "-n", SYSTEM),
        ("create", "pods", "-n", namespace),
        ("get", "pods", "-n", namespace),
        ("delete", "pods", "-n", namespace),
        ("get", "configmaps", "-n", namespace),
        ("delete", "namespaces"),
        ("create", "namespaces"),
        ("create", "modeldeployments.modeldeploy.io", "-n", namespace),
        ("delete", "modeldeployments.modeldeploy.io", "-n", namespace),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("create", "roles.rbac.authorization.k8s.io", "-n", namespace),
        ("create", "serviceaccounts", "--subresource=token", "-n", SYSTEM),
        ("deletecollection", "deployments.apps", "-n", namespace),
        ("patch", "kopfpeerings.kopf.dev", "-n", namespace),
        ("create", "leases.coordination.k8s.io", "-n", SYSTEM),
        ("patch", "nodes"),
    ]


def gone(cluster: Cluster, kind: str, name: str) -> bool:
    return cluster.kubectl("get", kind, name, check=False).returncode != 0


def served(namespace: str) -> list[tuple[str, ...]]:
    """What the operator must be able to do in a namespace it serves."""
    return [
        ("get", "modeldeployments.modeldeploy.io", "-n", namespace),
        ("patch", "modeldeployments.modeldeploy.io", "--subresource=status", "-n", namespace),
        ("update", "modeldeployments.modeldeploy.io", "--subresource=finalizers", "-n", namespace),
        ("create", "deployments.apps", "-n", namespace),
        ("delete", "services", "-n", namespace),
        ("create", "horizontalpodautoscalers.autoscaling", "-n", namespace),
        ("create", "ingresses.networking.k8s.io", "-n", namespace),
        ("create", "httproutes.gateway.networking.k8s.io", "-n", namespace),
        ("create", "virtualservices.networking.istio.io", "-n", namespace),
        ("create", "events", "-n", namespace),
        ("get", "analysistemplates.modeldeploy.io", "-n", namespace),
        ("get", "clusteranalysistemplates.modeldeploy.io"),
        ("list", "pods", "-n", namespace),
    ]


def exercise_autoscaling(cluster: Cluster, namespace: str) -> None:
    """An HPA is created, then deleted when autoscaling is turned off: create, list and delete work."""
    spec = example_spec(runtime=SERVING_RUNTIME)
    spec.pop("replicas")
    spec["autoscaling"] = {"minReplicas": 1, "maxReplicas": 2}
    assert cluster.apply(modeldeployment("scaler", namespace, spec)).returncode == 0
    wait_for(lambda: cluster.get("hpa", "scaler", namespace), 60, "the HPA to be created")
    patch = [{"op": "remove", "path": "/spec/autoscaling"}, {"op": "add", "path": "/spec/replicas", "value": 1}]
    cluster.kubectl("patch", "mdep", "scaler", "-n", namespace, "--type=json", "-p", json.dumps(patch))
    wait_for(lambda: cluster.get("hpa", "scaler", namespace) is None, 60, "the HPA to be deleted")


# -- installs ------------------------------------------------------------------------------------------------


def test_helm_install_cluster_scope(fresh_cluster: Cluster, helm: Helm, tmp_path: Path) -> None:
    cluster = fresh_cluster
    create_namespace(cluster, SYSTEM)
    helm(
        *("install", RELEASE, str(CHART), "-n", SYSTEM, "--wait", "--timeout", "120s"),
        kubeconfig=cluster.kubeconfig,
    )
    try:
        deployment = wait_installed(cluster)
        namespace = create_namespace(cluster, f"models-{uuid.uuid4().hex[:6]}")
        kubeconfig = token_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
        with operator_as_installed(cluster, deployment, kubeconfig, tmp_path / "operator.log") as operator:
            serve_the_example(cluster, namespace)
            exercise_autoscaling(cluster, namespace)
        assert_no_permission_problems(operator.log_path)
        assert_permissions(
            cluster,
            allowed=[
                *served(namespace),
                ("watch", "modeldeployments.modeldeploy.io", "-A"),
                ("watch", "deployments.apps", "-A"),
                ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
            ],
            # Kopf lists namespaces only when it serves some of them, not in cluster-wide mode.
            denied=[*everywhere_denied(namespace), ("list", "namespaces")],
        )
    finally:
        helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", kubeconfig=cluster.kubeconfig)
    for kind, name in (("clusterrole", "modeldeploy"), ("clusterrolebinding", "modeldeploy")):
        assert cluster.kubectl("get", kind, name, check=False).returncode != 0, f"{kind} {name} was left behind"
    assert cluster.get("serviceaccount", SERVICE_ACCOUNT, SYSTEM) is None
    assert cluster.get("deployment", "modeldeploy", SYSTEM) is None
    assert not can_i(cluster, "patch", "modeldeployments.modeldeploy.io", "--subresource=status", "-A")
    # Helm never deletes what it installed from crds/: the ModelDeployments survive an uninstall.
    assert cluster.kubectl("get", "crd", "modeldeployments.modeldeploy.io", check=False).returncode == 0


def test_helm_install_namespaced_scope(fresh_cluster: Cluster, helm: Helm, tmp_path: Path) -> None:
    cluster = fresh_cluster
    create_namespace(cluster, SYSTEM)
    served_namespaces = [create_namespace(cluster, f"team-{t}-{uuid.uuid4().hex[:6]}") for t in "ab"]
    other = create_namespace(cluster, f"team-c-{uuid.uuid4().hex[:6]}")
    helm(
        *("install", RELEASE, str(CHART), "-n", SYSTEM, "--wait", "--timeout", "120s"),
        *("--set", "rbac.scope=namespaced", "--set", f"watchNamespaces={{{','.join(served_namespaces)}}}"),
        kubeconfig=cluster.kubeconfig,
    )
    try:
        deployment = wait_installed(cluster)
        args = operator_container(deployment)["args"]
        assert args[:5] == ["run", "-n", served_namespaces[0], "-n", served_namespaces[1]]
        kubeconfig = token_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
        # A ModelDeployment in a namespace it does not serve is left alone.
        assert cluster.apply(modeldeployment("ignored", other, example_spec())).returncode == 0
        with operator_as_installed(cluster, deployment, kubeconfig, tmp_path / "operator.log") as operator:
            for namespace in served_namespaces:
                serve_the_example(cluster, namespace)
        assert_no_permission_problems(operator.log_path)
        ignored = cluster.get("mdep", "ignored", other)
        assert ignored is not None
        assert not ignored.get("status"), ignored
        assert cluster.get("deployment", "ignored", other) is None
        assert_permissions(
            cluster,
            allowed=[
                *served(served_namespaces[0]),
                *served(served_namespaces[1]),
                ("list", "namespaces"),
                ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
            ],
            denied=[
                *everywhere_denied(served_namespaces[0]),
                *everywhere_denied(other),
                ("list", "modeldeployments.modeldeploy.io", "-A"),
                ("watch", "deployments.apps", "-A"),
                ("get", "modeldeployments.modeldeploy.io", "-n", other),
                ("patch", "modeldeployments.modeldeploy.io", "--subresource=status", "-n", other),
                ("create", "deployments.apps", "-n", other),
                ("create", "events", "-n", other),
                ("create", "deployments.apps", "-n", SYSTEM),
            ],
        )
    finally:
        helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", kubeconfig=cluster.kubeconfig)
    for namespace in served_namespaces:
        assert cluster.kubectl("get", "role,rolebinding", "-n", namespace, "-o", "name").stdout.strip() == ""
    for kind in ("clusterrole", "clusterrolebinding"):
        assert cluster.kubectl("get", kind, "modeldeploy-discovery", check=False).returncode != 0


def test_kustomize_base_install(fresh_cluster: Cluster, tmp_path: Path) -> None:
    cluster = fresh_cluster
    cluster.kubectl("apply", "--server-side", "-k", str(BASE))
    try:
        deployment = wait_installed(cluster)
        assert cluster.require("namespace", SYSTEM, SYSTEM)["metadata"]["labels"][
            "pod-security.kubernetes.io/enforce"
        ] == ("restricted")
        namespace = create_namespace(cluster, f"models-{uuid.uuid4().hex[:6]}")
        kubeconfig = token_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
        with operator_as_installed(cluster, deployment, kubeconfig, tmp_path / "operator.log") as operator:
            serve_the_example(cluster, namespace)
        assert_no_permission_problems(operator.log_path)
        assert_permissions(
            cluster,
            allowed=[*served(namespace), ("watch", "modeldeployments.modeldeploy.io", "-A")],
            denied=[*everywhere_denied(namespace), ("list", "namespaces")],
        )
    finally:
        cluster.kubectl("delete", "-k", str(BASE), "--wait=false")
    for kind, name in (
        ("clusterrole", "modeldeploy"),
        ("clusterrolebinding", "modeldeploy"),
        ("crd", "modeldeployments.modeldeploy.io"),
        ("namespace", SYSTEM),
    ):
        wait_for(
            partial(gone, cluster, kind, name),
            120,
            f"{kind} {name} to be deleted",
        )


def test_ha_replicas_elect_one_operator_and_fail_over(fresh_cluster: Cluster, helm: Helm, tmp_path: Path) -> None:
    """Two replicas with the chart's HA arguments: the higher priority works, the other takes over when it goes."""
    cluster = fresh_cluster
    create_namespace(cluster, SYSTEM)
    helm(
        *("install", RELEASE, str(CHART), "-n", SYSTEM, "--set", "ha.enabled=true", "--wait", "--timeout", "120s"),
        kubeconfig=cluster.kubeconfig,
    )
    replicas: dict[str, Operator] = {}
    try:
        deployment = wait_installed(cluster, replicas=2)
        args = list(operator_container(deployment)["args"])
        assert args[args.index("--peering") + 1] == RELEASE
        assert cluster.kubectl("get", "clusterkopfpeering", RELEASE, check=False).returncode == 0
        namespace = create_namespace(cluster, f"models-{uuid.uuid4().hex[:6]}")
        kubeconfig = token_kubeconfig(cluster, tmp_path / "operator.kubeconfig")

        def peers() -> int:
            peering = json.loads(cluster.kubectl("get", "clusterkopfpeering", RELEASE, "-o", "json").stdout)
            return len(peering.get("status") or {})

        # The active replica first, so that the standby meets it at once: two fresh peers that start together
        # may both work for a moment before they see each other.
        for count, (role, priority) in enumerate((("active", "200"), ("standby", "100")), start=1):
            replicas[role] = operator_as_installed(
                cluster,
                deployment,
                kubeconfig,
                tmp_path / f"{role}.log",
                "--priority",
                priority,
                "--log-format",
                "text",
            )
            replicas[role].start()
            wait_for(partial(lambda n: peers() >= n, count), 60, f"the {role} replica's keep-alive")
        active, standby = replicas["active"], replicas["standby"]
        serve_the_example(cluster, namespace)
        assert "Applied Deployment" in active.log()
        assert "Applied Deployment" not in standby.log(), "only the active replica works"
        # A standby answers its probe: the chart's HA rolling update waits for a new replica to be Ready (while the
        # old one still works) before it stops an old one.
        with urllib.request.urlopen(f"http://127.0.0.1:{standby.liveness_port}/healthz", timeout=10) as probe:
            assert probe.status == 200

        active.stop()
        wait_for(lambda: "Resuming operations" in standby.log(), 60, "the standby to take over")
        second = create_namespace(cluster, f"models-{uuid.uuid4().hex[:6]}")
        serve_the_example(cluster, second)
        assert "Applied Deployment" in standby.log()
        assert_no_permission_problems(standby.log_path)
    finally:
        for replica in replicas.values():
            replica.stop()
        helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", kubeconfig=cluster.kubeconfig)


# -- sharding --------------------------------------------------------------------------------------------------

OPERATOR_ACCOUNT = f"system:serviceaccount:{SYSTEM}:{SERVICE_ACCOUNT}"
SHARDED_OBJECTS = 20


def with_shard(args: list[str], index: int, count: int) -> list[str]:
    """Installed arguments with `--shards count --shard index` instead of the shard's own."""
    args = list(args)
    for flag, value in (("--shards", count), ("--shard", index)):
        args[args.index(flag) + 1] = str(value)
    return args


def ready_uids(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Name -> uid of the ModelDeployments in `namespace` that are Ready at their current generation."""
    listing = json.loads(cluster.kubectl("get", "mdep", "-n", namespace, "-o", "json").stdout)["items"]
    return {md["metadata"]["name"]: md["metadata"]["uid"] for md in listing if ready_at(md)}


def writers(cluster: Cluster, since: int, namespace: str) -> dict[str, set[str]]:
    """ModelDeployment name -> the shards ("i/n", from the operator's user agent) that wrote it or its children,
    from the audit log. Events are created with generateName, so they have no name: they are under ""."""
    assert cluster.audit_log is not None
    found: dict[str, set[str]] = {}
    for line in cluster.audit_log.read_text().splitlines()[since:]:
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (event["stage"], event["user"]["username"], ref.get("namespace")) != (
            "ResponseComplete",
            OPERATOR_ACCOUNT,
            namespace,
        ):
            continue
        agent = event.get("userAgent", "")
        shard = re.search(r"shard/(\d+)-of-(\d+)", agent)
        owner = re.match(r"model-\d+", ref.get("name") or "")
        found.setdefault(owner[0] if owner else "", set()).add(f"{shard[1]}/{shard[2]}" if shard else agent)
    return found


def test_helm_install_sharded_serves_each_object_from_exactly_one_shard(
    fresh_cluster: Cluster, helm: Helm, tmp_path: Path
) -> None:
    """Two shards with the chart's arguments and credentials, then three (a change of N): every object becomes
    Ready, and every write to it and its children comes from the one shard its uid hashes to (the audit log,
    by user agent); each shard counts only its own objects. The new shards of N=3 pick every object up."""
    cluster = fresh_cluster
    create_namespace(cluster, SYSTEM)
    helm(
        *("install", RELEASE, str(CHART), "-n", SYSTEM, "--set", "sharding.shards=2", "--wait", "--timeout", "120s"),
        kubeconfig=cluster.kubeconfig,
    )
    operators: list[Operator] = []

    def run_shards(count: int) -> None:
        for running in operators:
            running.stop()
        operators.clear()
        for index in range(count):
            args = with_shard(installed[0], index, count)
            log_path = tmp_path / f"shard-{index}-of-{count}.log"
            operators.append(Operator(cluster, log_path, args=args, kubeconfig=kubeconfig))
            operators[-1].start()

    def served_by_one_shard(count: int, since: int) -> None:
        uids = wait_for(
            lambda: len(ready := ready_uids(cluster, namespace)) == SHARDED_OBJECTS and ready,
            180,
            f"all {SHARDED_OBJECTS} ModelDeployments Ready with {count} shards",
        )
        expected = {name: shard_of(uid, count) for name, uid in uids.items()}
        # Each shard reports its own objects, and only those, as Ready.
        wait_for(
            lambda: (
                [op.metrics().get('modeldeploy_objects{phase="Ready"}') for op in operators]
                == [float(list(expected.values()).count(i)) for i in range(count)]
            ),
            60,
            "each shard to count its own objects Ready",
        )
        seen = writers(cluster, since, namespace)
        unnamed = seen.pop("", set())
        assert seen == {name: {f"{shard}/{count}"} for name, shard in expected.items()}
        assert unnamed <= {f"{i}/{count}" for i in range(count)}, unnamed
        assert len(set(expected.values())) > 1, "the objects did not spread over the shards"
        for index, running in enumerate(operators):
            assert f"Serving shard {index}/{count}" in running.log()
            assert running.metrics().get(f'modeldeploy_shard{{shard="{index}",shards="{count}"}}') == 1
            assert_no_permission_problems(running.log_path)

    try:
        deployments = [wait_installed(cluster, name=f"{RELEASE}-shard-{i}") for i in range(2)]
        installed = [list(operator_container(d)["args"]) for d in deployments]
        assert installed[1] == with_shard(installed[0], 1, 2)
        assert installed[0][installed[0].index("--shards") + 1 :][:3] == ["2", "--shard", "0"]
        namespace = create_namespace(cluster, f"models-{uuid.uuid4().hex[:6]}")
        kubeconfig = token_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
        names = [f"model-{i:02d}" for i in range(SHARDED_OBJECTS)]

        run_shards(2)
        mark = cluster.audit_lines()
        applied = cluster.apply([modeldeployment(n, namespace, serving_spec(replicas=1)) for n in names])
        assert applied.returncode == 0, applied.stderr
        served_by_one_shard(2, mark)

        # N changes: every new shard lists every object on start and takes its share; a spec change is served.
        run_shards(3)
        mark = cluster.audit_lines()
        applied = cluster.apply([modeldeployment(n, namespace, serving_spec(replicas=2)) for n in names])
        assert applied.returncode == 0, applied.stderr
        served_by_one_shard(3, mark)
    finally:
        for running in operators:
            running.stop()
        helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", kubeconfig=cluster.kubeconfig)


# -- the chart's day-2 options: HA disruptions, roles for users, credentials, a private CA, the CRD upgrade ----------


def can_i_as(cluster: Cluster, user: str, *args: str) -> bool:
    """`kubectl auth can-i` for `user`, impersonated by the local control plane's admin."""
    result = cluster.kubectl("auth", "can-i", *args, f"--as={user}", check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)} --as={user}: {answer!r} {result.stderr}"
    return answer == "yes"


def test_helm_install_day2_options(fresh_cluster: Cluster, helm: Helm, tmp_path: Path) -> None:
    """HA with its PodDisruptionBudget and rolling update, the aggregated view and edit roles (for people bound only
    to the built-in `view` and `edit`), the opt-in Role for a named credential Secret, and a private CA mounted with
    extraVolumes: installed for real, under the restricted Pod Security profile."""
    cluster = fresh_cluster
    create_namespace(cluster, SYSTEM)
    namespace = create_namespace(cluster, f"models-{uuid.uuid4().hex[:6]}")
    cluster.kubectl("create", "configmap", "private-ca", "-n", SYSTEM, "--from-literal=ca.crt=not-a-real-ca")
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "ha": {"enabled": True},
                "analysisCredentials": {"secrets": {namespace: ["prometheus-token"]}},
                "extraEnv": [{"name": "SSL_CERT_FILE", "value": "/etc/modeldeploy/ca/ca.crt"}],
                "extraVolumes": [{"name": "private-ca", "configMap": {"name": "private-ca"}}],
                "extraVolumeMounts": [{"name": "private-ca", "mountPath": "/etc/modeldeploy/ca", "readOnly": True}],
                "podSecurityContext": {"fsGroup": 65532},
            }
        )
    )
    helm(
        *("install", RELEASE, str(CHART), "-n", SYSTEM, "-f", str(values), "--wait", "--timeout", "120s"),
        kubeconfig=cluster.kubeconfig,
    )
    try:
        deployment = wait_installed(cluster, replicas=2)
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["fsGroup"] == 65532
        assert {"name": "SSL_CERT_FILE", "value": "/etc/modeldeploy/ca/ca.crt"} in pod["containers"][0]["env"]
        # The disruption controller counts both replicas healthy and allows evicting one of them, not both.
        budget = wait_for(
            lambda: (
                (b := cluster.get("poddisruptionbudget", RELEASE, SYSTEM))
                and (b.get("status") or {}).get("currentHealthy") == 2
                and b
            ),
            120,
            "the PodDisruptionBudget to count both replicas",
        )
        assert budget["status"]["disruptionsAllowed"] == 1
        assert budget["status"]["expectedPods"] == 2

        # People bound only to the built-in roles, in one namespace.
        cluster.kubectl("create", "rolebinding", "editors", "--clusterrole=edit", "--user=alice", "-n", namespace)
        cluster.kubectl("create", "rolebinding", "viewers", "--clusterrole=view", "--user=bob", "-n", namespace)
        md = "modeldeployments.modeldeploy.io"
        # The clusterrole-aggregation controller folds the chart's roles into view, edit and admin.
        wait_for(lambda: can_i_as(cluster, "bob", "list", md, "-n", namespace), 60, "view to aggregate our role")
        wait_for(lambda: can_i_as(cluster, "alice", "patch", md, "-n", namespace), 60, "edit to aggregate our role")
        expected = {
            ("alice", "get", md): True,
            ("alice", "patch", md): True,  # promote, abort, retry, pause, resume: annotations
            ("alice", "create", md): True,
            ("alice", "delete", md): True,
            ("alice", "create", "analysistemplates.modeldeploy.io"): True,
            ("alice", "patch", md, "--subresource=status"): False,
            ("bob", "get", md): True,
            ("bob", "watch", md): True,
            ("bob", "get", md, "--subresource=status"): True,
            ("bob", "list", "analysistemplates.modeldeploy.io"): True,
            ("bob", "patch", md): False,
            ("bob", "create", md): False,
            ("bob", "delete", md): False,
        }
        found = {case: can_i_as(cluster, case[0], *case[1:], "-n", namespace) for case in expected}
        assert found == expected
        # Outside the namespace they are bound in, neither may do anything with ModelDeployments.
        assert not can_i_as(cluster, "alice", "get", md, "-n", SYSTEM)
        assert not can_i_as(cluster, "bob", "get", md, "-n", SYSTEM)

        # And for real: the editor's control annotation is accepted, the viewer's refused.
        assert cluster.apply(modeldeployment("scorer", namespace, example_spec())).returncode == 0
        promote = ("annotate", "mdep", "scorer", "-n", namespace, 'modeldeploy.io/action={"action":"promote","id":"1"}')
        assert cluster.kubectl(*promote, "--as=alice", check=False).returncode == 0
        refused = cluster.kubectl(*promote, "--overwrite", "--as=bob", check=False)
        assert refused.returncode != 0
        assert "forbidden" in refused.stderr.lower()

        # The operator may get the one named Secret in that namespace, and no other Secret anywhere.
        assert can_i(cluster, "get", "secret/prometheus-token", "-n", namespace)
        assert not can_i(cluster, "get", "secret/other", "-n", namespace)
        assert not can_i(cluster, "list", "secrets", "-n", namespace)
        assert not can_i(cluster, "get", "secret/prometheus-token", "-n", SYSTEM)
    finally:
        helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", kubeconfig=cluster.kubeconfig)
    assert cluster.get("poddisruptionbudget", RELEASE, SYSTEM) is None
    assert cluster.get("role", f"{RELEASE}-analysis-credentials", namespace) is None
    assert gone(cluster, "clusterrole", f"{RELEASE}-aggregate-to-edit")
    wait_for(
        lambda: not can_i_as(cluster, "alice", "patch", "modeldeployments.modeldeploy.io", "-n", namespace),
        60,
        "edit to lose the chart's rules after the uninstall",
    )


CRD_UPGRADE = "helm show crds {chart} | kubectl apply --server-side --force-conflicts -f -"


def test_crd_upgrade_with_the_documented_command(fresh_cluster: Cluster, helm: Helm, tmp_path: Path) -> None:
    """`helm upgrade` leaves the CRD as it was (Helm never upgrades crds/); the README's command updates it to the new
    chart's, and the ModelDeployments stored under the old one stay."""
    cluster = fresh_cluster
    create_namespace(cluster, SYSTEM)
    namespace = create_namespace(cluster, f"models-{uuid.uuid4().hex[:6]}")
    assert CRD_UPGRADE.format(chart="charts/modeldeploy") in (CHART.parents[1] / "README.md").read_text()
    crd_name = "modeldeployments.modeldeploy.io"
    # The chart as released before: its CRD lacks a printer column the new chart's has.
    old_chart = tmp_path / "old" / "modeldeploy"
    shutil.copytree(CHART, old_chart)
    crd_file = old_chart / "crds" / "modeldeploy.io_modeldeployments.yaml"
    old_crd = yaml.safe_load(crd_file.read_text())
    columns = old_crd["spec"]["versions"][0]["additionalPrinterColumns"]
    dropped = columns.pop()
    crd_file.write_text(yaml.safe_dump(old_crd))

    def live_columns() -> list[str]:
        crd = json.loads(cluster.kubectl("get", "crd", crd_name, "-o", "json").stdout)
        return [c["name"] for c in crd["spec"]["versions"][0].get("additionalPrinterColumns", [])]

    helm("install", RELEASE, str(old_chart), "-n", SYSTEM, "--wait", "--timeout", "120s", kubeconfig=cluster.kubeconfig)
    try:
        wait_installed(cluster)
        assert dropped["name"] not in live_columns()
        assert cluster.apply(modeldeployment("kept", namespace, example_spec())).returncode == 0

        helm("upgrade", RELEASE, str(CHART), "-n", SYSTEM, "--wait", "--timeout", "120s", kubeconfig=cluster.kubeconfig)
        assert dropped["name"] not in live_columns(), "helm upgrade changed the CRD; the README says it does not"

        # The documented command, as a shell pipeline with this cluster's helm and kubectl.
        command = CRD_UPGRADE.format(chart=CHART)
        env = {**os.environ, "PATH": f"{Path(cluster.kubectl_path).parent}{os.pathsep}{os.environ['PATH']}"}
        env["KUBECONFIG"] = str(cluster.kubeconfig)
        env.update({f"HELM_{d.upper()}_HOME": str(helm.home / d) for d in ("config", "cache", "data")})
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd_name} serverside-applied" in result.stdout
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd_name}", "--timeout=60s")
        assert live_columns() == [
            c["name"]
            for c in yaml.safe_load((CHART / "crds" / crd_file.name).read_text())["spec"]["versions"][0][
                "additionalPrinterColumns"
            ]
        ]
        assert cluster.get("mdep", "kept", namespace) is not None
    finally:
        helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", kubeconfig=cluster.kubeconfig)
