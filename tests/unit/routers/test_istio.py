"""The `istio` router: one VirtualService splitting between the stable and canary Services."""

import copy

import pytest

from modeldeploy.core.api import parse_spec
from modeldeploy.core.naming import Owner
from modeldeploy.core.routers import ROUTERS
from modeldeploy.core.routers.istio import VIRTUALSERVICE, IstioRouter
from specs import valid_spec

OWNER = Owner(name="fraud-scorer", namespace="risk", uid="uid-1")
ROUTER = IstioRouter()
SPEC = parse_spec(valid_spec(traffic={"router": "istio"}))
STABLE_HOST = "fraud-scorer.risk.svc.cluster.local"
CANARY_HOST = "fraud-scorer-canary.risk.svc.cluster.local"


def test_it_is_registered_and_owns_virtualservices() -> None:
    assert isinstance(ROUTERS["istio"], IstioRouter)
    assert ROUTER.resources == (VIRTUALSERVICE,)
    assert (VIRTUALSERVICE.api_version, VIRTUALSERVICE.plural) == ("networking.istio.io/v1", "virtualservices")
    assert [(rule.api_groups, rule.resources) for rule in ROUTER.rbac] == [
        (("networking.istio.io",), ("virtualservices",))
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
    assert sum(d["weight"] for d in rendered[0]["spec"]["http"][0]["route"]) == 100


def test_by_default_the_mesh_host_of_the_service_is_split_between_the_two_services() -> None:
    [vs] = ROUTER.render(OWNER, SPEC, 30)
    assert (vs["apiVersion"], vs["kind"], vs["metadata"]["name"]) == (
        "networking.istio.io/v1",
        "VirtualService",
        "fraud-scorer",
    )
    port = {"number": SPEC.service.port}
    assert vs["spec"] == {
        "hosts": [STABLE_HOST],
        "http": [
            {
                "name": "modeldeploy",
                "route": [
                    {"destination": {"host": STABLE_HOST, "port": port}, "weight": 70},
                    {"destination": {"host": CANARY_HOST, "port": port}, "weight": 30},
                ],
            }
        ],
    }


def test_hosts_and_gateways_come_from_the_settings() -> None:
    spec = parse_spec(
        valid_spec(traffic={"router": "istio", "istio": {"hosts": ["fraud.example.com"], "gateways": ["infra/public"]}})
    )
    [vs] = ROUTER.render(OWNER, spec, 0)
    assert vs["spec"]["hosts"] == ["fraud.example.com"]
    assert vs["spec"]["gateways"] == ["infra/public"]
    assert [d["destination"]["host"] for d in vs["spec"]["http"][0]["route"]] == [STABLE_HOST, CANARY_HOST]


def test_no_virtualservice_means_no_weight() -> None:
    assert ROUTER.read_weight(OWNER, []) is None
    [vs] = ROUTER.render(OWNER, SPEC, 40)
    other = copy.deepcopy(vs)
    other["metadata"]["name"] = "someone-else"
    assert ROUTER.read_weight(OWNER, [other]) is None
    no_canary = copy.deepcopy(vs)
    no_canary["spec"]["http"][0]["route"].pop()
    assert ROUTER.read_weight(OWNER, [no_canary]) is None


@pytest.mark.parametrize(("weight", "fixed", "pods"), [(0, None, 1), (10, None, 1), (50, None, 2), (50, 5, 5)])
def test_a_pod_is_warmed_first_and_a_fixed_count_wins(weight: int, fixed: int | None, pods: int) -> None:
    assert ROUTER.canary_pods(4, weight, fixed) == pods


def test_with_no_canary_the_route_sends_everything_to_stable_and_names_no_canary_host() -> None:
    [vs] = ROUTER.render(OWNER, SPEC, None)
    [route] = vs["spec"]["http"][0]["route"]
    assert route["destination"]["host"] == "fraud-scorer.risk.svc.cluster.local"
    assert route["weight"] == 100
    assert ROUTER.read_weight(OWNER, [vs]) is None
    assert ROUTER.routes_to_canary_service
