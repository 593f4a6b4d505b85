"""The `nginx` router: a main Ingress to stable and a canary Ingress carrying ingress-nginx's canary-weight."""

import copy

import pytest

from modeldeploy.core.api import parse_spec
from modeldeploy.core.naming import Owner
from modeldeploy.core.routers import ROUTERS
from modeldeploy.core.routers.nginx import INGRESS, NGINX_CANARY, NGINX_CANARY_WEIGHT, NginxRouter
from specs import valid_spec

OWNER = Owner(name="fraud-scorer", namespace="risk", uid="uid-1")
ROUTER = NginxRouter()
SPEC = parse_spec(valid_spec(traffic={"router": "nginx", "nginx": {"host": "fraud.example.com"}}))


def test_it_is_registered_and_owns_ingresses() -> None:
    assert isinstance(ROUTERS["nginx"], NginxRouter)
    assert ROUTER.resources == (INGRESS,)
    assert (INGRESS.api_version, INGRESS.plural) == ("networking.k8s.io/v1", "ingresses")
    assert [(rule.api_groups, rule.resources) for rule in ROUTER.rbac] == [(("networking.k8s.io",), ("ingresses",))]
    assert ROUTER.weight_from_pods is False


def test_the_main_service_selects_only_the_stable_track() -> None:
    assert ROUTER.service_selector(OWNER) == {
        "app.kubernetes.io/instance": "fraud-scorer",
        "modeldeploy.io/track": "stable",
    }


@pytest.mark.parametrize("weight", range(101))
def test_the_weight_it_writes_is_the_weight_it_reads_back(weight: int) -> None:
    assert ROUTER.read_weight(OWNER, ROUTER.render(OWNER, SPEC, weight)) == weight


def test_a_main_ingress_to_stable_and_a_canary_ingress_to_the_canary() -> None:
    main, canary = ROUTER.render(OWNER, SPEC, 10)
    for ingress in (main, canary):
        assert (ingress["apiVersion"], ingress["kind"]) == ("networking.k8s.io/v1", "Ingress")
        assert ingress["spec"]["ingressClassName"] == "nginx"
        [rule] = ingress["spec"]["rules"]
        assert rule["host"] == "fraud.example.com"
        assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/", "Prefix")]
    assert main["metadata"]["name"] == "fraud-scorer"
    assert "annotations" not in main["metadata"]
    assert main["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {
        "name": "fraud-scorer",
        "port": {"number": SPEC.service.port},
    }
    assert canary["metadata"]["name"] == "fraud-scorer-canary"
    assert canary["metadata"]["annotations"] == {NGINX_CANARY: "true", NGINX_CANARY_WEIGHT: "10"}
    assert canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "fraud-scorer-canary"


def test_class_and_path_come_from_the_settings() -> None:
    spec = parse_spec(
        valid_spec(
            traffic={"router": "nginx", "nginx": {"host": "a.example.com", "ingressClassName": "edge", "path": "/v1"}}
        )
    )
    for ingress in ROUTER.render(OWNER, spec, 0):
        assert ingress["spec"]["ingressClassName"] == "edge"
        assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/v1"


def test_no_canary_ingress_or_no_weight_annotation_means_no_weight() -> None:
    main, canary = ROUTER.render(OWNER, SPEC, 40)
    assert ROUTER.read_weight(OWNER, []) is None
    assert ROUTER.read_weight(OWNER, [main]) is None, "the main Ingress carries no weight"
    bare = copy.deepcopy(canary)
    del bare["metadata"]["annotations"]
    assert ROUTER.read_weight(OWNER, [main, bare]) is None


@pytest.mark.parametrize(("weight", "fixed", "pods"), [(0, None, 1), (10, None, 1), (50, None, 2), (50, 5, 5)])
def test_a_pod_is_warmed_first_and_a_fixed_count_wins(weight: int, fixed: int | None, pods: int) -> None:
    assert ROUTER.canary_pods(4, weight, fixed) == pods


def test_with_no_canary_only_the_main_ingress_exists() -> None:
    [main] = ROUTER.render(OWNER, SPEC, None)
    assert main["metadata"]["name"] == "fraud-scorer"
    assert ROUTER.read_weight(OWNER, [main]) is None
    assert ROUTER.routes_to_canary_service
