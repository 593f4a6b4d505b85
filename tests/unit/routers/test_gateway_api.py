"""The `gatewayAPI` router: one HTTPRoute with weighted backendRefs to the stable and canary Services."""

import copy

import pytest

from modeldeploy.core.api import parse_spec
from modeldeploy.core.naming import Owner
from modeldeploy.core.routers import ROUTERS
from modeldeploy.core.routers.gateway_api import HTTPROUTE, GatewayApiRouter
from specs import valid_spec

OWNER = Owner(name="fraud-scorer", namespace="risk", uid="uid-1")
ROUTER = GatewayApiRouter()
SPEC = parse_spec(
    valid_spec(
        traffic={
            "router": "gatewayAPI",
            "gatewayAPI": {
                "parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "https"}],
                "hostnames": ["fraud.example.com"],
            },
        }
    )
)


def test_it_is_registered_and_owns_httproutes() -> None:
    assert isinstance(ROUTERS["gatewayAPI"], GatewayApiRouter)
    assert ROUTER.resources == (HTTPROUTE,)
    assert (HTTPROUTE.group, HTTPROUTE.version, HTTPROUTE.plural) == ("gateway.networking.k8s.io", "v1", "httproutes")
    assert [rule.to_dict() for rule in ROUTER.rbac] == [
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["httproutes"],
            "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
        }
    ]
    assert ROUTER.weight_from_pods is False


def test_the_main_service_selects_only_the_stable_track() -> None:
    assert ROUTER.service_selector(OWNER) == {
        "app.kubernetes.io/instance": "fraud-scorer",
        "modeldeploy.io/track": "stable",
    }


@pytest.mark.parametrize("weight", range(101))
def test_the_weight_it_writes_is_the_weight_it_reads_back(weight: int) -> None:
    rendered = ROUTER.render(OWNER, SPEC, weight)
    assert ROUTER.read_weight(OWNER, rendered) == weight
    backends = rendered[0]["spec"]["rules"][0]["backendRefs"]
    assert sum(ref["weight"] for ref in backends) == 100


def test_the_route_attaches_to_the_gateways_and_sends_to_both_services() -> None:
    [route] = ROUTER.render(OWNER, SPEC, 25)
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert (route["metadata"]["name"], route["metadata"]["namespace"]) == ("fraud-scorer", "risk")
    assert route["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "infra", "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["fraud.example.com"]
    assert route["spec"]["rules"] == [
        {
            "backendRefs": [
                {"name": "fraud-scorer", "port": SPEC.service.port, "weight": 75},
                {"name": "fraud-scorer-canary", "port": SPEC.service.port, "weight": 25},
            ]
        }
    ]


def test_no_hostnames_leaves_the_field_out() -> None:
    spec = parse_spec(valid_spec(traffic={"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}}))
    [route] = ROUTER.render(OWNER, spec, 0)
    assert "hostnames" not in route["spec"]
    assert route["spec"]["parentRefs"] == [{"name": "gw"}]


def test_no_route_means_no_weight() -> None:
    assert ROUTER.read_weight(OWNER, []) is None
    [route] = ROUTER.render(OWNER, SPEC, 40)
    other = copy.deepcopy(route)
    other["metadata"]["name"] = "someone-else"
    assert ROUTER.read_weight(OWNER, [other]) is None
    no_canary = copy.deepcopy(route)
    no_canary["spec"]["rules"][0]["backendRefs"].pop()
    assert ROUTER.read_weight(OWNER, [no_canary]) is None
    wrong_kind = {**copy.deepcopy(route), "kind": "VirtualService"}
    assert ROUTER.read_weight(OWNER, [wrong_kind]) is None


def test_a_backend_without_a_weight_has_the_gateway_api_default_of_one() -> None:
    [route] = ROUTER.render(OWNER, SPEC, 40)
    del route["spec"]["rules"][0]["backendRefs"][1]["weight"]
    assert ROUTER.read_weight(OWNER, [route]) == 1


@pytest.mark.parametrize(
    ("weight", "fixed", "pods"), [(0, None, 1), (10, None, 1), (50, None, 2), (50, 5, 5), (0, 3, 3)]
)
def test_a_pod_is_warmed_first_and_a_fixed_count_wins(weight: int, fixed: int | None, pods: int) -> None:
    assert ROUTER.canary_pods(4, weight, fixed) == pods


def test_with_no_canary_the_route_sends_everything_to_stable_and_names_no_canary_service() -> None:
    [route] = ROUTER.render(OWNER, SPEC, None)
    assert route["spec"]["rules"] == [
        {"backendRefs": [{"name": "fraud-scorer", "port": SPEC.service.port, "weight": 100}]}
    ]
    assert ROUTER.read_weight(OWNER, [route]) is None
    assert ROUTER.routes_to_canary_service
