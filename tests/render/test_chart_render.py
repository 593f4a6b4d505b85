"""The Helm chart and the kustomize base, rendered and linted by the real helm and kubectl (no cluster).

helm and kubectl come from the local control plane's build (`modeldeploy-dev cluster build`), which the
`binaries` fixture runs or finds in the cache.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart_support import BASE, CHART, SERVICE_ACCOUNT, SYSTEM, operator_container, render
from modeldeploy_dev.testing import Helm, kubectl_offline

HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")

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
    {"apiGroups": ["modeldeploy.io"], "resources": ["analysistemplates"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
]
CRD_RULE = {
    "apiGroups": ["apiextensions.k8s.io"],
    "resources": ["customresourcedefinitions"],
    "verbs": ["get", "list", "watch"],
}
NAMESPACES_RULE = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}
CLUSTER_TEMPLATES_RULE = {"apiGroups": ["modeldeploy.io"], "resources": ["clusteranalysistemplates"], "verbs": ["get"]}


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


AGGREGATE_LABELS = ("rbac.authorization.k8s.io/aggregate-to-view", "rbac.authorization.k8s.io/aggregate-to-edit")


def is_aggregated(doc: dict[str, Any]) -> bool:
    """A ClusterRole for users (folded into view, edit and admin), not for the operator."""
    return any(label in doc["metadata"].get("labels", {}) for label in AGGREGATE_LABELS)


def operator_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Role", "ClusterRole") and not is_aggregated(d)]


def rules_of(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for d in operator_roles(docs) for rule in d["rules"]]


def assert_least_privilege(docs: list[dict[str, Any]]) -> None:
    for rule in rules_of(docs):
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert all("*" not in item for item in rule.get(field, [])), f"wildcard in {rule}"
        for forbidden in ("secrets", "configmaps", "serviceaccounts", "roles", "clusterroles"):
            assert forbidden not in rule["resources"], f"{forbidden} in {rule}"
        if "pods" in rule["resources"]:
            assert rule["verbs"] == ["list"], f"pods are only listed, for their fetch reports: {rule}"
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"]), rule


def test_helm_lint_passes_and_enforces_the_values_schema(helm: Helm, tmp_path: Path) -> None:
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), "--set", "rbac.scope=namespaced", "--set", "watchNamespaces={a,b}")
    helm(
        *("lint", "--strict", str(CHART), "--set", "ha.enabled=true", "--set", "sharding.shards=2"),
        *("--set", "analysisCredentials.secrets.risk={prometheus-token}", "--set", "extraEnv[0].name=HTTPS_PROXY"),
        *("--set", "podSecurityContext.runAsUser=null", "--set", "rbac.aggregateRoles=false"),
    )

    wrong_type = tmp_path / "wrong-type.yaml"
    wrong_type.write_text(yaml.safe_dump({"operator": {"workers": "four"}}))
    result = helm("lint", str(CHART), "-f", str(wrong_type), check=False)
    assert result.returncode != 0
    assert "/operator/workers" in result.stdout + result.stderr, result.stdout

    unknown = tmp_path / "unknown-key.yaml"
    unknown.write_text(yaml.safe_dump({"replicaCount": 2}))
    result = helm("lint", str(CHART), "-f", str(unknown), check=False)
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
        (
            ["ha.enabled=true", "strategy.type=Recreate"],
            "strategy.type=Recreate with ha.enabled would stop every replica",
        ),
    ],
)
def test_helm_refuses_values_it_cannot_honour(helm: Helm, values: list[str], message: str) -> None:
    sets = [arg for value in values for arg in ("--set", value)]
    result = helm("template", "x", str(CHART), *sets, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    # `helm lint` reports a template's `fail` only as [INFO] and exits 0; template and install refuse.
    linted = helm("lint", str(CHART), *sets)
    assert "[INFO] " in linted.stderr
    assert message in linted.stderr


def test_helm_template_cluster_scope(helm: Helm) -> None:
    docs = render(helm)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("ClusterRole", "modeldeploy"),
        ("ClusterRole", "modeldeploy-aggregate-to-edit"),
        ("ClusterRole", "modeldeploy-aggregate-to-view"),
        ("ClusterRoleBinding", "modeldeploy"),
        ("Deployment", "modeldeploy"),
        ("Service", "modeldeploy-metrics"),
        ("ServiceAccount", "modeldeploy"),
    ]
    assert_least_privilege(docs)
    assert find(docs, "ClusterRole", "modeldeploy")[0]["rules"] == [*NAMESPACED_RULES, CRD_RULE, CLUSTER_TEMPLATES_RULE]
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


def test_helm_template_namespaced_scope(helm: Helm) -> None:
    docs = render(helm, "--set", "rbac.scope=namespaced", "--set", "watchNamespaces={team-a,team-b}")
    assert_least_privilege(docs)
    roles = find(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(r["rules"] == NAMESPACED_RULES for r in roles)
    bindings = find(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "modeldeploy"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": SYSTEM}]
    # The only cluster-scoped grant: reading namespaces and CRDs, which Kopf scans, and ClusterAnalysisTemplates.
    (cluster_role,) = [d for d in operator_roles(docs) if d["kind"] == "ClusterRole"]
    assert cluster_role["metadata"]["name"] == "modeldeploy-discovery"
    assert cluster_role["rules"] == [CRD_RULE, NAMESPACES_RULE, CLUSTER_TEMPLATES_RULE]
    (cluster_binding,) = find(docs, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == "modeldeploy-discovery"
    args = operator_container(find(docs, "Deployment")[0])["args"]
    assert args[:5] == ["run", "-n", "team-a", "-n", "team-b"]
    assert "--all-namespaces" not in args


def test_monitors_render_only_when_enabled(helm: Helm) -> None:
    kinds = {d["kind"] for d in render(helm)}
    assert not kinds & {"ServiceMonitor", "PodMonitor"}

    docs = render(helm, "--set", "serviceMonitor.enabled=true", "--set", "modelPodMonitor.enabled=true")
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
        helm,
        *("--set", "modelPodMonitor.enabled=true", "--set", "rbac.scope=namespaced", "--set", "watchNamespaces={a}"),
    )
    assert find(namespaced, "PodMonitor")[0]["spec"]["namespaceSelector"] == {"matchNames": ["a"]}


def test_grafana_dashboard_renders_only_when_enabled(helm: Helm) -> None:
    assert not [d for d in render(helm) if d["kind"] == "ConfigMap"]
    docs = render(helm, "--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.labels.team=ml")
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


def test_kustomize_base_installs_what_the_chart_defaults_install(helm: Helm) -> None:
    chart = {(d["kind"], d["metadata"]["name"]): _without_helm_labels(d) for d in render(helm, "--include-crds")}
    base_docs = [d for d in yaml.safe_load_all(kubectl_offline("kustomize", str(BASE))) if d]
    base = {(d["kind"], d["metadata"]["name"]): d for d in base_docs}
    namespace = base.pop(("Namespace", SYSTEM))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert base.keys() == chart.keys()
    for key, doc in base.items():
        assert doc == chart[key], f"{key} differs between manifests/base and the chart's defaults"
    assert_least_privilege(base_docs)


# -- sharding ---------------------------------------------------------------------------------------------------

SHARD_LABEL = "modeldeploy.io/shard"


def _unsharded_view(deployment: dict[str, Any]) -> dict[str, Any]:
    """A shard's Deployment without what makes it that shard: its name, shard label and shard arguments."""
    doc = json.loads(json.dumps(deployment))
    doc["metadata"]["name"] = "modeldeploy"
    for labels in (
        doc["metadata"]["labels"],
        doc["spec"]["selector"]["matchLabels"],
        doc["spec"]["template"]["metadata"]["labels"],
    ):
        labels.pop(SHARD_LABEL)
    container = operator_container(doc)
    args = container["args"]
    for flag in ("--shards", "--shard"):
        at = args.index(flag)
        del args[at : at + 2]
    if "--peering" in args:
        args[args.index("--peering") + 1] = "modeldeploy"
    return doc


def test_helm_template_sharded(helm: Helm) -> None:
    """sharding.shards=3: a Deployment per shard, each `--shards 3 --shard i`, with disjoint selectors; the RBAC,
    ServiceAccount and Service are those of one unsharded operator."""
    unsharded = render(helm)
    docs = render(helm, "--set", "sharding.shards=3")
    deployments = find(docs, "Deployment")
    assert [d["metadata"]["name"] for d in deployments] == [f"modeldeploy-shard-{i}" for i in range(3)]
    (single,) = find(unsharded, "Deployment")
    for index, deployment in enumerate(deployments):
        args = operator_container(deployment)["args"]
        assert args[args.index("--shards") + 1] == "3"
        assert args[args.index("--shard") + 1] == str(index)
        assert "--peering" not in args
        assert deployment["spec"]["selector"]["matchLabels"][SHARD_LABEL] == str(index)
        assert deployment["spec"]["template"]["metadata"]["labels"][SHARD_LABEL] == str(index)
        # Apart from what makes it a shard, each is the unsharded Deployment: one replica, Recreate, same pod.
        assert _unsharded_view(deployment) == single
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments]
    for i, deployment in enumerate(deployments):
        selector = deployment["spec"]["selector"]["matchLabels"].items()
        assert [selector <= labels.items() for labels in pod_labels] == [j == i for j in range(3)], "overlap"
    # The metrics Service (and so a ServiceMonitor) reaches every shard's pod.
    service = find(docs, "Service")[0]
    assert all(service["spec"]["selector"].items() <= labels.items() for labels in pod_labels)

    def others(rendered: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(d, sort_keys=True) for d in rendered if d["kind"] != "Deployment")

    assert others(docs) == others(unsharded), "sharding changes nothing but the Deployments"
    assert_least_privilege(docs)


def test_helm_template_sharded_with_ha_peers_each_shard_separately(helm: Helm) -> None:
    docs = render(helm, "--set", "sharding.shards=2", "--set", "ha.enabled=true", "--set", "ha.replicas=3")
    peerings = find(docs, "ClusterKopfPeering")
    assert [p["metadata"]["name"] for p in peerings] == ["modeldeploy-shard-0", "modeldeploy-shard-1"]
    for index, deployment in enumerate(find(docs, "Deployment")):
        assert deployment["spec"]["replicas"] == 3
        args = operator_container(deployment)["args"]
        assert args[args.index("--peering") + 1] == f"modeldeploy-shard-{index}"
        assert args[args.index("--shard") + 1] == str(index)


def test_helm_template_sharded_in_namespaced_scope(helm: Helm) -> None:
    docs = render(helm, "--set", "sharding.shards=2", "--set", "rbac.scope=namespaced", "--set", "watchNamespaces={a}")
    for index, deployment in enumerate(find(docs, "Deployment")):
        args = operator_container(deployment)["args"]
        assert args[:3] == ["run", "-n", "a"]
        assert args[args.index("--shard") + 1] == str(index)
    assert sorted(r["metadata"]["namespace"] for r in find(docs, "Role")) == ["a"]


@pytest.mark.parametrize("shards", ["0", "65", "two"])
def test_the_schema_refuses_an_impossible_number_of_shards(helm: Helm, shards: str) -> None:
    result = helm("template", "x", str(CHART), "--set", f"sharding.shards={shards}", check=False)
    assert result.returncode != 0
    assert "/sharding/shards" in result.stderr, result.stderr


# -- HA upgrades and disruptions ---------------------------------------------------------------------------------


def test_one_replica_recreates_and_has_no_disruption_budget(helm: Helm) -> None:
    docs = render(helm)
    assert find(docs, "Deployment")[0]["spec"]["strategy"] == {"type": "Recreate"}
    assert not find(docs, "PodDisruptionBudget"), "a budget for one replica would block every node drain"


@pytest.mark.parametrize("shards", [1, 3])
def test_ha_rolls_one_replica_at_a_time_and_keeps_one_through_drains(helm: Helm, shards: int) -> None:
    docs = render(helm, "--set", "ha.enabled=true", "--set", "ha.replicas=3", "--set", f"sharding.shards={shards}")
    deployments = find(docs, "Deployment")
    budgets = find(docs, "PodDisruptionBudget")
    assert [b["metadata"]["name"] for b in budgets] == [d["metadata"]["name"] for d in deployments]
    for deployment, budget in zip(deployments, budgets, strict=True):
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }, "an upgrade starts a new replica before it stops an old one"
        assert budget["spec"]["minAvailable"] == 1
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        # The budget covers exactly this Deployment's pods: its own shard's, no other's.
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]
        pod_labels = [d["spec"]["template"]["metadata"]["labels"].items() for d in deployments]
        selector = budget["spec"]["selector"]["matchLabels"].items()
        assert [selector <= labels for labels in pod_labels] == [d is deployment for d in deployments]


def test_ha_budget_and_strategy_can_be_changed(helm: Helm) -> None:
    docs = render(helm, "--set", "ha.enabled=true", "--set", "ha.podDisruptionBudget.enabled=false")
    assert not find(docs, "PodDisruptionBudget")
    docs = render(
        helm,
        *("--set", "ha.enabled=true", "--set", "ha.podDisruptionBudget.minAvailable=50%"),
        *("--set", "strategy.type=RollingUpdate", "--set", "strategy.rollingUpdate.maxUnavailable=1"),
    )
    assert find(docs, "PodDisruptionBudget")[0]["spec"]["minAvailable"] == "50%"
    assert find(docs, "Deployment")[0]["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1},
    }


# -- roles for users -------------------------------------------------------------------------------------------

READ = ["get", "list", "watch"]


@pytest.mark.parametrize("scope", [[], ["--set", "rbac.scope=namespaced", "--set", "watchNamespaces={a}"]])
def test_aggregate_roles_let_view_read_and_edit_control(helm: Helm, scope: list[str]) -> None:
    docs = render(helm, *scope)
    view = find(docs, "ClusterRole", "modeldeploy-aggregate-to-view")[0]
    edit = find(docs, "ClusterRole", "modeldeploy-aggregate-to-edit")[0]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in view["metadata"]["labels"]
    for group, resource, verb in [
        ("modeldeploy.io", "modeldeployments", "list"),
        ("modeldeploy.io", "modeldeployments/status", "get"),
        ("modeldeploy.io", "analysistemplates", "watch"),
        ("modeldeploy.io", "clusteranalysistemplates", "get"),
    ]:
        assert granted(view["rules"], group, resource, verb), (resource, verb)
    assert all(rule["verbs"] == READ for rule in view["rules"]), "view only reads"
    # The controls are annotations: patch. Edit never writes the status, which only the operator writes.
    for resource, verb in [
        ("modeldeployments", "patch"),
        ("modeldeployments", "create"),
        ("analysistemplates", "delete"),
    ]:
        assert granted(edit["rules"], "modeldeploy.io", resource, verb), (resource, verb)
    assert not any("modeldeployments/status" in rule["resources"] for rule in edit["rules"])
    assert not any("clusteranalysistemplates" in rule["resources"] for rule in edit["rules"])
    for rule in view["rules"] + edit["rules"]:
        assert rule["apiGroups"] == ["modeldeploy.io"]
        assert not any("*" in item for field in ("resources", "verbs") for item in rule[field])
    assert not find(render(helm, *scope, "--set", "rbac.aggregateRoles=false"), "ClusterRole", edit["metadata"]["name"])


def granted(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


def test_analysis_credentials_are_read_only_by_name_and_only_when_asked(helm: Helm) -> None:
    assert not [r for r in rules_of(render(helm)) if {"secrets", "configmaps"} & set(r["resources"])]
    docs = render(
        helm,
        *("--set", "analysisCredentials.secrets.risk={prometheus-token,amp-keys}"),
        *("--set", "analysisCredentials.configMaps.risk={prometheus-ca}"),
        *("--set", "analysisCredentials.configMaps.fraud={prometheus-ca}"),
    )
    roles = {r["metadata"]["namespace"]: r for r in find(docs, "Role", "modeldeploy-analysis-credentials")}
    assert roles["risk"]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["prometheus-token", "amp-keys"],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["prometheus-ca"], "verbs": ["get"]},
    ]
    assert roles["fraud"]["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["prometheus-ca"], "verbs": ["get"]}
    ]
    bindings = {b["metadata"]["namespace"]: b for b in find(docs, "RoleBinding", "modeldeploy-analysis-credentials")}
    assert bindings.keys() == roles.keys()
    for binding in bindings.values():
        assert binding["roleRef"]["name"] == "modeldeploy-analysis-credentials"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": SYSTEM}]
    # Every grant on a Secret anywhere in the chart names the Secret.
    for rule in rules_of(docs):
        if "secrets" in rule["resources"]:
            assert rule["resourceNames"], rule
            assert rule["verbs"] == ["get"], rule


# -- the pod: environment, volumes, security contexts ----------------------------------------------------------


def test_extra_env_and_volumes_mount_a_private_ca(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "ca.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "extraEnv": [{"name": "SSL_CERT_FILE", "value": "/etc/modeldeploy/ca/ca.crt"}],
                "extraVolumes": [{"name": "private-ca", "configMap": {"name": "private-ca"}}],
                "extraVolumeMounts": [{"name": "private-ca", "mountPath": "/etc/modeldeploy/ca", "readOnly": True}],
            }
        )
    )
    deployment = find(render(helm, "-f", str(values)), "Deployment")[0]
    container = operator_container(deployment)
    assert container["env"] == [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "SSL_CERT_FILE", "value": "/etc/modeldeploy/ca/ca.crt"},
    ]
    assert container["volumeMounts"][1:] == [
        {"name": "private-ca", "mountPath": "/etc/modeldeploy/ca", "readOnly": True}
    ]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert [v["name"] for v in volumes] == ["tmp", "private-ca"]
    assert volumes[1]["configMap"] == {"name": "private-ca"}


def test_security_contexts_without_fixed_ids_for_openshift(helm: Helm) -> None:
    unset = ("runAsUser=null", "runAsGroup=null")
    sets = [
        arg
        for ctx in ("podSecurityContext", "containerSecurityContext")
        for u in unset
        for arg in ("--set", f"{ctx}.{u}")
    ]
    deployment = find(render(helm, *sets), "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    container = operator_container(deployment)["securityContext"]
    assert pod == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert container == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    custom = find(render(helm, "--set", "podSecurityContext.fsGroup=2000"), "Deployment")[0]
    assert custom["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 2000
    assert custom["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65532
