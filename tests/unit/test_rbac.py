"""The chart's and the kustomize base's RBAC grant what every child kind needs, routers' included, and no more.

The rules are read from the sources (the chart's `modeldeploy.namespacedRules` in `_helpers.tpl`, which both the
cluster-wide ClusterRole and the per-namespace Roles include, and the base's ClusterRole), so this runs without
helm. The render tests (`tests/render`) check the rendered chart against the same rules.
"""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.core import children
from modeldeploy.core.routers import ROUTERS, PolicyRule

REPO = Path(__file__).resolve().parents[2]
CHART_TEMPLATES = REPO / "charts" / "modeldeploy" / "templates"
BASE_RBAC = REPO / "manifests" / "base" / "rbac.yaml"
NAMESPACED_RULES = "modeldeploy.namespacedRules"
# Rules that are not about children: the operator's own API and the Events it posts.
NOT_CHILDREN = {("modeldeploy.io", "modeldeployments"), ("", "events")}


def chart_rules() -> list[dict[str, Any]]:
    helpers = (CHART_TEMPLATES / "_helpers.tpl").read_text()
    match = re.search(
        r'\{\{-? define "' + re.escape(NAMESPACED_RULES) + r'" -?\}\}(.*?)\{\{-? end -?\}\}', helpers, re.S
    )
    assert match, f"_helpers.tpl no longer defines {NAMESPACED_RULES}"
    block = match.group(1)
    assert "{{" not in block, f"{NAMESPACED_RULES} became a template; render it with helm here instead"
    rules: list[dict[str, Any]] = yaml.safe_load(block)
    return rules


def base_rules() -> list[dict[str, Any]]:
    [role] = [doc for doc in yaml.safe_load_all(BASE_RBAC.read_text()) if doc and doc["kind"] == "ClusterRole"]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


SOURCES = {"chart": chart_rules, "kustomize base": base_rules}


def granted(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule.get("apiGroups", []) and resource in rule.get("resources", []) and verb in rule.get("verbs", [])
        for rule in rules
    )


def missing(rules: list[dict[str, Any]], needed: PolicyRule) -> list[str]:
    return [
        f"{verb} {group or 'core'}/{resource}"
        for group in needed.api_groups
        for resource in needed.resources
        for verb in needed.verbs
        if not granted(rules, group, resource, verb)
    ]


def who_needs(rule: PolicyRule) -> str:
    routers = [name for name, router in ROUTERS.items() if rule in router.rbac]
    return f"router {' and '.join(routers)}" if routers else "the serving workload"


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("needed", children.CHILD_RULES, ids=lambda rule: "/".join(rule.resources))
def test_every_child_kind_is_granted(source: str, needed: PolicyRule) -> None:
    gaps = missing(SOURCES[source](), needed)
    assert not gaps, f"the {source}'s RBAC misses {', '.join(gaps)}, which {who_needs(needed)} needs"


def test_every_router_resource_is_checked() -> None:
    checked = {(g, r) for rule in children.CHILD_RULES for g in rule.api_groups for r in rule.resources}
    for name, router in ROUTERS.items():
        for resource in router.resources:
            assert (resource.group, resource.plural) in checked, name


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_nothing_is_written_that_is_not_a_registered_child(source: str) -> None:
    """A router removed from the registry takes its grant with it: write access stays least privilege."""
    registered = {(r.group, r.plural) for r in children.CHILD_RESOURCES} | NOT_CHILDREN
    for rule in SOURCES[source]():
        if not {"create", "update", "patch", "delete"} & set(rule["verbs"]):
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                if "/" in resource and resource.split("/")[0] == "modeldeployments":
                    continue  # the status and finalizers subresources of our own API
                assert (group, resource) in registered, f"the {source} grants writes on {group or 'core'}/{resource}"


def test_the_chart_grants_the_namespaced_rules_in_both_scopes() -> None:
    rbac = (CHART_TEMPLATES / "rbac.yaml").read_text()
    cluster, namespaced = rbac.split("{{- else }}", 1)
    assert f'include "{NAMESPACED_RULES}" .' in cluster, "rbac.scope=cluster: the ClusterRole"
    assert f'include "{NAMESPACED_RULES}" $' in namespaced, "rbac.scope=namespaced: each namespace's Role"


def test_the_checks_see_a_missing_rule() -> None:
    rules = chart_rules()
    [route] = [rule for rule in children.CHILD_RULES if rule.resources == ("httproutes",)]
    assert missing(rules, route) == []
    without = [rule for rule in rules if "httproutes" not in rule["resources"]]
    assert missing(without, route) == [f"{verb} gateway.networking.k8s.io/httproutes" for verb in route.verbs]
    no_delete = [{**rule, "verbs": [v for v in rule["verbs"] if v != "delete"]} for rule in rules]
    assert missing(no_delete, route) == ["delete gateway.networking.k8s.io/httproutes"]


# -- the roles aggregated into the built-in view and edit ------------------------------------------------------

AGGREGATE_ROLES = {
    "chart": CHART_TEMPLATES / "aggregate-roles.yaml",
    "kustomize base": REPO / "manifests" / "base" / "aggregate-roles.yaml",
}
# What people bound to `view` call (`kubectl get`, `modeldeploy status` and `history`), and what `edit` adds for the
# controls (`modeldeploy promote|abort|retry|pause|resume` patch an annotation; `undo` patches spec.model).
VIEW_NEEDS = PolicyRule(api_groups=("modeldeploy.io",), resources=("modeldeployments",), verbs=("get", "list", "watch"))
EDIT_NEEDS = PolicyRule(
    api_groups=("modeldeploy.io",), resources=("modeldeployments",), verbs=("get", "patch", "create", "delete")
)


def aggregate_rules(source: str) -> dict[str, list[dict[str, Any]]]:
    """Aggregation label ("view" or "edit") -> rules, from the file without its template lines."""
    text = re.sub(r"\{\{-? */\*.*?\*/ *-?\}\}", "", AGGREGATE_ROLES[source].read_text(), flags=re.S)
    text = "\n".join(line for line in text.splitlines() if "{{" not in line)
    roles: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(text):
        if doc:
            labels = doc["metadata"].get("labels") or {}
            kind = "view" if "rbac.authorization.k8s.io/aggregate-to-view" in labels else "edit"
            roles[kind] = doc["rules"]
    return roles


@pytest.mark.parametrize("source", sorted(AGGREGATE_ROLES))
def test_view_can_read_and_edit_can_control(source: str) -> None:
    roles = aggregate_rules(source)
    assert missing(roles["view"], VIEW_NEEDS) == []
    # Kubernetes folds view's rules into edit too.
    assert missing(roles["view"] + roles["edit"], EDIT_NEEDS) == []
    assert missing(roles["edit"], EDIT_NEEDS) == ["get modeldeploy.io/modeldeployments"], "edit gets reads from view"
    assert all(rule["verbs"] == ["get", "list", "watch"] for rule in roles["view"])
    writes = [r for rules in roles.values() for r in rules if "modeldeployments/status" in r["resources"]]
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in writes), "only the operator writes the status"


def test_the_chart_and_the_base_aggregate_the_same_rules() -> None:
    assert aggregate_rules("chart") == aggregate_rules("kustomize base")


def test_the_aggregate_checks_see_a_missing_verb() -> None:
    edit = aggregate_rules("chart")["edit"]
    without_patch = [{**rule, "verbs": [v for v in rule["verbs"] if v != "patch"]} for rule in edit]
    assert "patch modeldeploy.io/modeldeployments" in missing(without_patch, EDIT_NEEDS)
