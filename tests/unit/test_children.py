"""The registry of child kinds, and everything derived from it: the adapter, the Kopf watches, the reconcile."""

from typing import get_args

import kopf
import pytest
from kopf._cogs.structs.references import Resource as KopfResource

from modeldeploy import handlers, reconcile
from modeldeploy.adapters import kube
from modeldeploy.core import children
from modeldeploy.core.api import parse_spec
from modeldeploy.core.api.traffic import RouterName
from modeldeploy.core.naming import Owner
from modeldeploy.core.render import pod_template, render
from modeldeploy.core.routers import ROUTERS, Resource, Router
from specs import valid_spec

OWNER = Owner(name="fraud-scorer", namespace="risk", uid="uid-1")
TRAFFIC = {
    "replicas": {},
    "gatewayAPI": {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
    "istio": {"router": "istio"},
    "nginx": {"router": "nginx", "nginx": {"host": "fraud.example.com"}},
}


def test_every_router_name_the_api_accepts_has_a_router_and_an_example_spec() -> None:
    assert sorted(ROUTERS) == sorted(get_args(RouterName)) == sorted(TRAFFIC)
    assert all(isinstance(router, Router) for router in ROUTERS.values())


def test_the_registry_is_the_workload_plus_every_routers_resources() -> None:
    assert children.WORKLOAD_RESOURCES == (children.DEPLOYMENT, children.SERVICE, children.HORIZONTAL_POD_AUTOSCALER)
    routed = {resource for router in ROUTERS.values() for resource in router.resources}
    assert set(children.CHILD_RESOURCES) == {*children.WORKLOAD_RESOURCES, *routed}
    assert len(children.CHILD_RESOURCES) == len(set(children.CHILD_RESOURCES)) == len(children.BY_KIND)
    assert children.SERVICE.api_version == "v1", "the core group has no group prefix"
    assert children.DEPLOYMENT.api_version == "apps/v1"


@pytest.mark.parametrize("name", sorted(TRAFFIC))
def test_every_child_rendered_is_a_registered_kind_at_its_registered_version(name: RouterName) -> None:
    spec = parse_spec(valid_spec(replicas=None, autoscaling={"maxReplicas": 4}, traffic=TRAFFIC[name]))
    assert spec.traffic.router == name
    template = pod_template(OWNER, spec)
    for weight in (0, 30):
        rendered = render(OWNER, spec, template, template, 1, weight)
        for obj in rendered:
            assert obj["apiVersion"] == children.BY_KIND[obj["kind"]].api_version, obj["kind"]
        own = {obj["kind"] for obj in ROUTERS[name].render(OWNER, spec, weight)}
        assert own == {resource.kind for resource in ROUTERS[name].resources}, "a router declares what it writes"
        assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= {obj["kind"] for obj in rendered}


def test_routers_writing_names_the_routers_that_own_a_kind() -> None:
    assert children.routers_writing("HTTPRoute") == ["gatewayAPI"]
    assert children.routers_writing("Ingress") == ["nginx"]
    assert children.routers_writing("Deployment") == []


def test_the_adapter_serves_exactly_the_registered_kinds() -> None:
    assert kube.RESOURCES == children.BY_KIND
    assert kube.SERVICE == "Service"


def test_the_reconcile_lists_every_registered_kind() -> None:
    assert tuple(resource.kind for resource in children.CHILD_RESOURCES) == reconcile.CHILD_KINDS
    assert reconcile.CHILD_KINDS[:3] == ("Deployment", "Service", "HorizontalPodAutoscaler")


def test_kopf_watches_every_registered_kind_through_the_label_selector() -> None:
    assert tuple((r.group, r.version, r.plural) for r in children.CHILD_RESOURCES) == handlers.CHILD_RESOURCES
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    for r in children.CHILD_RESOURCES:
        resource = KopfResource(group=r.group, version=r.version, plural=r.plural, namespaced=True)
        assert list(settings.watching.label_selectors.collect(resource)) == ["app.kubernetes.io/managed-by=modeldeploy"]
    watchers = [h for h in kopf.get_default_registry()._watching.get_all_handlers() if h.id.startswith("child-")]
    assert len(watchers) == len(children.CHILD_RESOURCES)
    assert all(h.selector is not None for h in watchers), "each child watcher has its label selector"
    for r in children.CHILD_RESOURCES:
        resource = KopfResource(group=r.group, version=r.version, plural=r.plural, namespaced=True)
        assert [h.id for h in watchers if h.selector is not None and h.selector.check(resource)] == [
            f"child-{r.plural}"
        ]


def test_a_resource_without_a_group_is_in_the_core_group() -> None:
    assert Resource("", "v1", "services", "Service").api_version == "v1"
    assert Resource("apps", "v1", "deployments", "Deployment").api_version == "apps/v1"
