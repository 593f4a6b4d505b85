"""Installing the operator with Helm and kustomize, on a real control plane, with least-privilege RBAC.

Each install test starts its own pristine local cluster (never the session one, where another operator may
run). It installs the chart or the kustomize base, takes a token for the installed ServiceAccount and runs
the operator locally with exactly the installed Deployment's arguments and that token: a ModelDeployment
becoming Ready, with Events, proves the RBAC is enough, and `kubectl auth can-i` proves what it forbids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster_support import Cluster, condition, modeldeployment, wait_for
from modeldeploy.devcluster.cluster import ClusterError, LocalCluster, bin_dir, build, free_port
from specs import EXAMPLE, SERVING_RUNTIME

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"
BASE = ROOT / "manifests" / "base"
SYSTEM = "modeldeploy-system"
RELEASE = "modeldeploy"
SERVICE_ACCOUNT = "modeldeploy"  # the chart names it after the release; the kustomize base uses the same name
AS_OPERATOR = f"--as=system:serviceaccount:{SYSTEM}:{SERVICE_ACCOUNT}"
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")
# What the operator's log says when the API server refuses it something, in Kopf's words and in ours.
PERMISSION_PROBLEMS = ("forbidden", "not enough permissions", "applyfailed", " 403")

# Exactly the rules the operator needs inside a namespace it serves (see templates/_helpers.tpl).
WRITE = ["get", "list", "watch", "create", "patch", "update", "delete"]
NAMESPACED_RULES = [
    {"apiGroups": ["modeldeploy.io"], "resources": ["modeldeployments"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["modeldeploy.io"], "resources": ["modeldeployments/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": ["modeldeploy.io"], "resources": ["modeldeployments/finalizers"], "verbs": ["update"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": WRITE},
    {"apiGroups": [""], "resources": ["services"], "verbs": WRITE},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": WRITE},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": WRITE},
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": WRITE},
    {"apiGroups": ["networking.istio.io"], "resources": ["virtualservices"], "verbs": WRITE},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]
CRD_RULE = {
    "apiGroups": ["apiextensions.k8s.io"],
    "resources": ["customresourcedefinitions"],
    "verbs": ["get", "list", "watch"],
}
NAMESPACES_RULE = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}


# -- tools -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binaries() -> Path:
    try:
        return build(echo=lambda line: print(line, file=sys.stderr))
    except ClusterError as error:
        pytest.fail(f"helm and kubectl could not be built, so the install tests cannot run: {error}", pytrace=False)


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm's config, cache and data in a temporary directory, not the user's."""
    home = tmp_path_factory.mktemp("helm")
    return {
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def helm(
    helm_home: dict[str, str], *args: str, kubeconfig: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [str(bin_dir() / "helm"), *args]
    if kubeconfig is not None:
        command.append(f"--kubeconfig={kubeconfig}")
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, **helm_home}, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """kubectl without a cluster (`kubectl kustomize`)."""
    result = subprocess.run([str(bin_dir() / "kubectl"), *args], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result


def render(helm_home: dict[str, str], *args: str) -> list[dict[str, Any]]:
    out = helm(helm_home, "template", RELEASE, str(CHART), "--namespace", SYSTEM, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def rules_of(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for d in docs if d["kind"] in ("Role", "ClusterRole") for rule in d["rules"]]


def assert_least_privilege(docs: list[dict[str, Any]]) -> None:
    for rule in rules_of(docs):
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert all("*" not in item for item in rule.get(field, [])), f"wildcard in {rule}"
        for forbidden in ("secrets", "pods", "configmaps", "serviceaccounts", "roles", "clusterroles"):
            assert forbidden not in rule["resources"], f"{forbidden} in {rule}"
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"]), rule


def operator_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


# -- the chart and the base, rendered (no cluster) ----------------------------------------------------------


def test_helm_lint_passes_and_enforces_the_values_schema(
    binaries: Path, helm_home: dict[str, str], tmp_path: Path
) -> None:
    helm(helm_home, "lint", "--strict", str(CHART))
    helm(helm_home, "lint", "--strict", str(CHART), "--set", "rbac.scope=namespaced", "--set", "watchNamespaces={a,b}")

    wrong_type = tmp_path / "wrong-type.yaml"
    wrong_type.write_text(yaml.safe_dump({"operator": {"workers": "four"}}))
    result = helm(helm_home, "lint", str(CHART), "-f", str(wrong_type), check=False)
    assert result.returncode != 0
    assert "/operator/workers" in result.stdout + result.stderr, result.stdout

    unknown = tmp_path / "unknown-key.yaml"
    unknown.write_text(yaml.safe_dump({"replicaCount": 2}))
    result = helm(helm_home, "lint", str(CHART), "-f", str(unknown), check=False)
    assert result.returncode != 0
    assert "additional properties 'replicaCount' not allowed" in result.stdout + result.stderr, result.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            ["ha.enabled=true", "rbac.scope=namespaced", "watchNamespaces={a}"],
            "ha.enabled=true needs rbac.scope=cluster",
        ),
        (["rbac.scope=namespaced"], "rbac.scope=namespaced needs at least one namespace in watchNamespaces"),
        (["watchNamespaces={a}"], "watchNamespaces is only used with rbac.scope=namespaced"),
        (["serviceAccount.create=false"], "serviceAccount.name is required when serviceAccount.create is false"),
    ],
)
def test_helm_refuses_values_it_cannot_honour(
    binaries: Path, helm_home: dict[str, str], values: list[str], message: str
) -> None:
    sets = [arg for value in values for arg in ("--set", value)]
    result = helm(helm_home, "template", "x", str(CHART), *sets, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    # `helm lint` reports a template's `fail` only as [INFO] and exits 0; template and install refuse.
    linted = helm(helm_home, "lint", str(CHART), *sets)
    assert "[INFO] " in linted.stderr
    assert message in linted.stderr


def test_helm_template_cluster_scope(binaries: Path, helm_home: dict[str, str]) -> None:
    docs = render(helm_home)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("ClusterRole", "modeldeploy"),
        ("ClusterRoleBinding", "modeldeploy"),
        ("Deployment", "modeldeploy"),
        ("Service", "modeldeploy-metrics"),
        ("ServiceAccount", "modeldeploy"),
    ]
    assert_least_privilege(docs)
    assert find(docs, "ClusterRole")[0]["rules"] == [*NAMESPACED_RULES, CRD_RULE]
    binding = find(docs, "ClusterRoleBinding")[0]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "modeldeploy"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": SYSTEM}]

    deployment = find(docs, "Deployment")[0]
    container = operator_container(deployment)
    assert container["command"] == ["modeldeploy"]
    assert container["args"] == [
        "run",
        "--all-namespaces",
        "--metrics-port",
        "9090",
        "--liveness-port",
        "8080",
        "--workers",
        "4",
        "--log-format",
        "json",
    ]
    assert container["image"] == "ghcr.io/modeldeploy/modeldeploy:0.1.0"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert (security["runAsNonRoot"], security["runAsUser"]) == (True, 65532)
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9090, "health": 8080}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels.get("app.kubernetes.io/managed-by") != "modeldeploy", "the model PodMonitor would select it"
    service = find(docs, "Service")[0]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= labels.items()


def test_helm_template_namespaced_scope(binaries: Path, helm_home: dict[str, str]) -> None:
    docs = render(helm_home, "--set", "rbac.scope=namespaced", "--set", "watchNamespaces={team-a,team-b}")
    assert_least_privilege(docs)
    roles = find(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(r["rules"] == NAMESPACED_RULES for r in roles)
    bindings = find(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "modeldeploy"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": SYSTEM}]
    # The only cluster-scoped grant: reading namespaces and CRDs, which Kopf scans.
    (cluster_role,) = find(docs, "ClusterRole")
    assert cluster_role["metadata"]["name"] == "modeldeploy-discovery"
    assert cluster_role["rules"] == [CRD_RULE, NAMESPACES_RULE]
    (cluster_binding,) = find(docs, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == "modeldeploy-discovery"
    args = operator_container(find(docs, "Deployment")[0])["args"]
    assert args[:5] == ["run", "-n", "team-a", "-n", "team-b"]
    assert "--all-namespaces" not in args


def test_monitors_render_only_when_enabled(binaries: Path, helm_home: dict[str, str]) -> None:
    kinds = {d["kind"] for d in render(helm_home)}
    assert not kinds & {"ServiceMonitor", "PodMonitor"}

    docs = render(helm_home, "--set", "serviceMonitor.enabled=true", "--set", "modelPodMonitor.enabled=true")
    (monitor,) = find(docs, "ServiceMonitor")
    service = find(docs, "Service")[0]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    (pods,) = find(docs, "PodMonitor")
    assert pods["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "modeldeploy"}}
    assert pods["spec"]["podTargetLabels"] == ["modeldeploy.io/track", "modeldeploy.io/revision"]
    assert pods["spec"]["podMetricsEndpoints"][0]["port"] == "http"
    assert pods["spec"]["namespaceSelector"] == {"any": True}
    operator_pod = find(docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert not pods["spec"]["selector"]["matchLabels"].items() <= operator_pod.items()

    namespaced = render(
        helm_home,
        *("--set", "modelPodMonitor.enabled=true", "--set", "rbac.scope=namespaced", "--set", "watchNamespaces={a}"),
    )
    assert find(namespaced, "PodMonitor")[0]["spec"]["namespaceSelector"] == {"matchNames": ["a"]}


def test_grafana_dashboard_renders_only_when_enabled(binaries: Path, helm_home: dict[str, str]) -> None:
    assert not [d for d in render(helm_home) if d["kind"] == "ConfigMap"]
    docs = render(helm_home, "--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.labels.team=ml")
    (config_map,) = find(docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["labels"]["team"] == "ml"
    dashboard = json.loads(config_map["data"]["modeldeploy.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "modeldeploy.json").read_text())


def _without_helm_labels(doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    for meta in (doc["metadata"], doc.get("spec", {}).get("template", {}).get("metadata", {})):
        for label in HELM_ONLY_LABELS:
            meta.get("labels", {}).pop(label, None)
    return doc


def test_kustomize_base_installs_what_the_chart_defaults_install(binaries: Path, helm_home: dict[str, str]) -> None:
    chart = {(d["kind"], d["metadata"]["name"]): _without_helm_labels(d) for d in render(helm_home, "--include-crds")}
    base_docs = [d for d in yaml.safe_load_all(kubectl("kustomize", str(BASE)).stdout) if d]
    base = {(d["kind"], d["metadata"]["name"]): d for d in base_docs}
    namespace = base.pop(("Namespace", SYSTEM))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert base.keys() == chart.keys()
    for key, doc in base.items():
        assert doc == chart[key], f"{key} differs between manifests/base and the chart's defaults"
    assert_least_privilege(base_docs)


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
        cluster = Cluster(local.kubeconfig, local.operator_kubeconfig, local.audit_log, str(bin_dir() / "kubectl"))
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


def wait_installed(cluster: Cluster, replicas: int = 1) -> dict[str, Any]:
    """The CRD is served and the operator's Deployment is Available (KWOK makes its pods Ready)."""
    cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.io", "--timeout=60s")
    deployment: dict[str, Any] = wait_for(
        lambda: (
            (d := cluster.get("deployment", "modeldeploy", SYSTEM))
            and condition(d, "Available").get("status") == "True"
            and d["status"].get("readyReplicas") == replicas
            and d
        ),
        120,
        "the operator's Deployment to become Available",
    )
    return deployment


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def operator_as_installed(deployment: dict[str, Any], kubeconfig: Path, log_path: Path) -> Iterator[Path]:
    """Runs `modeldeploy` with the installed container's arguments (on free local ports) and credentials."""
    container = operator_container(deployment)
    assert container["command"] == ["modeldeploy"]
    args = list(container["args"])
    liveness = free_port()
    for flag, port in (("--metrics-port", free_port()), ("--liveness-port", liveness)):
        args[args.index(flag) + 1] = str(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = str(kubeconfig)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "modeldeploy", *args], stdout=log, stderr=subprocess.STDOUT, env=env
        )

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the operator exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        return _healthy(liveness)

    try:
        wait_for(up, 60, f"the operator's liveness probe (log: {log_path})")
        yield log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ready_at_generation(cluster: Cluster, name: str, namespace: str) -> dict[str, Any] | None:
    md = cluster.get("mdep", name, namespace)
    if not md:
        return None
    ready = condition(md, "Ready")
    generation = md["metadata"]["generation"]
    if md.get("status", {}).get("observedGeneration") == generation and ready.get("status") == "True":
        return md
    return None


def serve_the_example(cluster: Cluster, namespace: str) -> str:
    """manifests/examples/fraud-scorer.yaml with a runtime that serves under KWOK: Ready=True and Events."""
    example = yaml.safe_load(EXAMPLE.read_text())
    name: str = example["metadata"]["name"]
    md = modeldeployment(name, namespace, {**example["spec"], "runtime": SERVING_RUNTIME})
    applied = cluster.apply(md)
    assert applied.returncode == 0, applied.stderr
    wait_for(lambda: ready_at_generation(cluster, name, namespace), 120, f"{namespace}/{name} Ready=True")
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
        ("list", "pods", "-n", namespace),
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
    ]


def exercise_autoscaling(cluster: Cluster, namespace: str) -> None:
    """An HPA is created, then deleted when autoscaling is turned off: create, list and delete work."""
    spec = {**yaml.safe_load(EXAMPLE.read_text())["spec"], "runtime": SERVING_RUNTIME}
    spec.pop("replicas")
    spec["autoscaling"] = {"minReplicas": 1, "maxReplicas": 2}
    assert cluster.apply(modeldeployment("scaler", namespace, spec)).returncode == 0
    wait_for(lambda: cluster.get("hpa", "scaler", namespace), 60, "the HPA to be created")
    patch = [{"op": "remove", "path": "/spec/autoscaling"}, {"op": "add", "path": "/spec/replicas", "value": 1}]
    cluster.kubectl("patch", "mdep", "scaler", "-n", namespace, "--type=json", "-p", json.dumps(patch))
    wait_for(lambda: cluster.get("hpa", "scaler", namespace) is None, 60, "the HPA to be deleted")


# -- installs ------------------------------------------------------------------------------------------------


def test_helm_install_cluster_scope(fresh_cluster: Cluster, helm_home: dict[str, str], tmp_path: Path) -> None:
    cluster = fresh_cluster
    create_namespace(cluster, SYSTEM)
    helm(
        helm_home,
        *("install", RELEASE, str(CHART), "-n", SYSTEM, "--wait", "--timeout", "120s"),
        kubeconfig=cluster.kubeconfig,
    )
    try:
        deployment = wait_installed(cluster)
        namespace = create_namespace(cluster, f"models-{uuid.uuid4().hex[:6]}")
        kubeconfig = token_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
        with operator_as_installed(deployment, kubeconfig, tmp_path / "operator.log") as log:
            serve_the_example(cluster, namespace)
            exercise_autoscaling(cluster, namespace)
        assert_no_permission_problems(log)
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
        helm(helm_home, "uninstall", RELEASE, "-n", SYSTEM, "--wait", kubeconfig=cluster.kubeconfig)
    for kind, name in (("clusterrole", "modeldeploy"), ("clusterrolebinding", "modeldeploy")):
        assert cluster.kubectl("get", kind, name, check=False).returncode != 0, f"{kind} {name} was left behind"
    assert cluster.get("serviceaccount", SERVICE_ACCOUNT, SYSTEM) is None
    assert cluster.get("deployment", "modeldeploy", SYSTEM) is None
    assert not can_i(cluster, "patch", "modeldeployments.modeldeploy.io", "--subresource=status", "-A")
    # Helm never deletes what it installed from crds/: the ModelDeployments survive an uninstall.
    assert cluster.kubectl("get", "crd", "modeldeployments.modeldeploy.io", check=False).returncode == 0


def test_helm_install_namespaced_scope(fresh_cluster: Cluster, helm_home: dict[str, str], tmp_path: Path) -> None:
    cluster = fresh_cluster
    create_namespace(cluster, SYSTEM)
    served_namespaces = [create_namespace(cluster, f"team-{t}-{uuid.uuid4().hex[:6]}") for t in "ab"]
    other = create_namespace(cluster, f"team-c-{uuid.uuid4().hex[:6]}")
    helm(
        helm_home,
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
        assert (
            cluster.apply(modeldeployment("ignored", other, {**yaml.safe_load(EXAMPLE.read_text())["spec"]})).returncode
            == 0
        )
        with operator_as_installed(deployment, kubeconfig, tmp_path / "operator.log") as log:
            for namespace in served_namespaces:
                serve_the_example(cluster, namespace)
        assert_no_permission_problems(log)
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
        helm(helm_home, "uninstall", RELEASE, "-n", SYSTEM, "--wait", kubeconfig=cluster.kubeconfig)
    for namespace in served_namespaces:
        assert cluster.kubectl("get", "role,rolebinding", "-n", namespace, "-o", "name").stdout.strip() == ""
    for kind in ("clusterrole", "clusterrolebinding"):
        assert cluster.kubectl("get", kind, "modeldeploy-discovery", check=False).returncode != 0


def test_kustomize_base_install(fresh_cluster: Cluster, tmp_path: Path) -> None:
    cluster = fresh_cluster
    cluster.kubectl("apply", "--server-side", "-k", str(BASE))
    try:
        deployment = wait_installed(cluster)
        assert cluster.get("namespace", SYSTEM, SYSTEM)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
            "restricted"
        )
        namespace = create_namespace(cluster, f"models-{uuid.uuid4().hex[:6]}")
        kubeconfig = token_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
        with operator_as_installed(deployment, kubeconfig, tmp_path / "operator.log") as log:
            serve_the_example(cluster, namespace)
        assert_no_permission_problems(log)
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
            lambda k=kind, n=name: cluster.kubectl("get", k, n, check=False).returncode != 0,
            120,
            f"{kind} {name} to be deleted",
        )


def test_ha_replicas_elect_one_operator_and_fail_over(
    fresh_cluster: Cluster, helm_home: dict[str, str], tmp_path: Path
) -> None:
    """Two replicas with the chart's HA arguments: the higher priority works, the other takes over when it goes."""
    cluster = fresh_cluster
    create_namespace(cluster, SYSTEM)
    helm(
        helm_home,
        *("install", RELEASE, str(CHART), "-n", SYSTEM, "--set", "ha.enabled=true", "--wait", "--timeout", "120s"),
        kubeconfig=cluster.kubeconfig,
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        deployment = wait_installed(cluster, replicas=2)
        args = list(operator_container(deployment)["args"])
        assert args[args.index("--peering") + 1] == RELEASE
        assert cluster.kubectl("get", "clusterkopfpeering", RELEASE, check=False).returncode == 0
        namespace = create_namespace(cluster, f"models-{uuid.uuid4().hex[:6]}")
        kubeconfig = token_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env["KUBECONFIG"] = str(kubeconfig)
        logs = {}

        def peers() -> int:
            peering = json.loads(cluster.kubectl("get", "clusterkopfpeering", RELEASE, "-o", "json").stdout)
            return len(peering.get("status") or {})

        # The active replica first, so that the standby meets it at once: two fresh peers that start together
        # may both work for a moment before they see each other.
        for count, (role, priority) in enumerate((("active", "200"), ("standby", "100")), start=1):
            replica_args = list(args)
            for flag in ("--metrics-port", "--liveness-port"):
                replica_args[replica_args.index(flag) + 1] = str(free_port())
            logs[role] = tmp_path / f"{role}.log"
            with logs[role].open("ab") as log:
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "modeldeploy",
                            *replica_args,
                            "--priority",
                            priority,
                            "--log-format",
                            "text",
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
            wait_for(lambda n=count: peers() >= n, 60, f"the {role} replica's keep-alive")
        serve_the_example(cluster, namespace)
        assert "Applied Deployment" in logs["active"].read_text()
        assert "Applied Deployment" not in logs["standby"].read_text(), "only the active replica works"

        processes[0].terminate()
        processes[0].wait(timeout=30)
        wait_for(lambda: "Resuming operations" in logs["standby"].read_text(), 60, "the standby to take over")
        second = create_namespace(cluster, f"models-{uuid.uuid4().hex[:6]}")
        serve_the_example(cluster, second)
        assert "Applied Deployment" in logs["standby"].read_text()
        assert_no_permission_problems(logs["standby"])
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        helm(helm_home, "uninstall", RELEASE, "-n", SYSTEM, "--wait", kubeconfig=cluster.kubeconfig)
