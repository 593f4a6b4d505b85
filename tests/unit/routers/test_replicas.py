"""The `replicas` router: no routing object; the canary's share of the ready pods is its weight."""

import pytest

from modeldeploy.core.api import parse_spec
from modeldeploy.core.naming import Owner
from modeldeploy.core.routers import ROUTERS
from modeldeploy.core.routers.replicas import ReplicasRouter
from specs import valid_spec

OWNER = Owner(name="fraud-scorer", namespace="risk", uid="uid-1")
ROUTER = ReplicasRouter()


def test_it_is_registered_and_owns_no_resource_and_needs_no_rbac() -> None:
    assert isinstance(ROUTERS["replicas"], ReplicasRouter)
    assert ROUTER.resources == ()
    assert ROUTER.rbac == ()
    assert ROUTER.weight_from_pods is True


def test_the_main_service_selects_both_tracks() -> None:
    assert ROUTER.service_selector(OWNER) == {"app.kubernetes.io/instance": "fraud-scorer"}


@pytest.mark.parametrize("weight", range(101))
def test_it_writes_nothing_so_there_is_no_weight_to_read_back(weight: int) -> None:
    rendered = ROUTER.render(OWNER, parse_spec(valid_spec()), weight)
    assert rendered == []
    assert ROUTER.read_weight(OWNER, rendered) is None


@pytest.mark.parametrize(("weight", "pods"), [(0, 0), (1, 1), (20, 1), (25, 1), (50, 3), (75, 9), (90, 27), (99, 297)])
def test_pod_math_keeps_stable_fully_scaled(weight: int, pods: int) -> None:
    """With 3 stable pods, c canary pods give the canary c / (3 + c) of the traffic: at least `weight` percent."""
    assert ROUTER.canary_pods(3, weight, None) == pods
    if pods:
        assert 100 * pods / (3 + pods) >= weight
        assert pods == 1 or 100 * (pods - 1) / (3 + pods - 1) < weight, "no more pods than the weight needs"


def test_no_weight_needs_no_canary_pod_even_with_no_stable_pods() -> None:
    assert ROUTER.canary_pods(0, 0, None) == 0
    assert ROUTER.canary_pods(0, 50, None) == 1


def test_it_needs_no_canary_service() -> None:
    assert ROUTER.routes_to_canary_service is False
    assert ROUTER.render(OWNER, parse_spec(valid_spec()), None) == []
