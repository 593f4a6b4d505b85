"""Property-based tests of the pure core (hypothesis): specs that validate render objects the API server
accepts, and the rollout state machine, over random observations and actions, never raises, never gives
weight to pods that are not ready, and never skips a step (several instant steps may pass in one reconcile)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from modeldeploy.core.api import ActionName, ModelDeploymentStatus, RevisionStatus, ServedModel, parse_duration
from modeldeploy.core.naming import Owner
from modeldeploy.core.presets import SpecError
from modeldeploy.core.render import pod_template, render
from modeldeploy.core.rollout import Action, Observed, decide
from modeldeploy.core.status import DeploymentState, parse_time
from modeldeploy.core.validation import validate

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
# etcd's default request limit is 1.5 MiB; a child far below it leaves room for status and managed fields.
MAX_CHILD_BYTES = 512 * 1024

names = st.from_regex(r"[a-z][a-z0-9-]{0,30}[a-z0-9]", fullmatch=True)
versions = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}[A-Za-z0-9]", fullmatch=True)
# Any text, including characters outside the Basic Multilingual Plane, as users put in env values and args.
texts = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40)
uris = st.sampled_from(
    [
        "s3://models/fraud/7",
        "gs://bucket/m",
        "https://models.example.com/m.pkl",
        "file:///models/m.pkl",
        "pvc://store/fraud/7",
        "builtin://logistic",
    ]
)
steps = st.lists(
    st.one_of(
        st.builds(lambda w: {"setWeight": w}, st.integers(0, 99)),
        st.builds(lambda d: {"pause": {"duration": f"{d}s"}}, st.integers(0, 600)),
        st.just({"pause": {}}),
    ),
    max_size=8,
)
ROUTERS: list[dict[str, Any]] = [
    {"router": "replicas"},
    {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
    {"router": "istio"},
    {"router": "nginx", "nginx": {"host": "models.example.com"}},
]
routers = st.sampled_from(ROUTERS)


@st.composite
def specs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    traffic = draw(routers)
    spec: dict[str, Any] = {
        "model": {"name": draw(names), "version": draw(versions), "uri": draw(uris), "format": "sklearn"},
        "replicas": draw(st.integers(0, 20)),
        "traffic": traffic,
        "rollout": {"steps": draw(steps)},
        "runtime": {
            "env": [{"name": f"VAR_{i}", "value": value} for i, value in enumerate(draw(st.lists(texts, max_size=4)))],
            "args": draw(st.lists(texts, max_size=3)) or None,
        },
    }
    if traffic["router"] != "replicas" and draw(st.booleans()):
        spec["rollout"]["canaryReplicas"] = draw(st.integers(1, 5))
    if spec["runtime"]["args"] is None:
        del spec["runtime"]["args"]
    return draw(names), spec


def _labels_valid(obj: dict[str, Any]) -> None:
    for labels in (
        obj["metadata"].get("labels", {}),
        obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}),
    ):
        for value in labels.values():
            assert LABEL_VALUE.match(value), value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.integers(0, 100))
def test_a_valid_spec_renders_children_the_api_server_accepts(named: tuple[str, dict[str, Any]], weight: int) -> None:
    name, raw = named
    try:
        spec = validate(name, raw)
        template = pod_template(Owner(name=name, namespace="ns", uid="u"), spec)
    except SpecError:
        assume(False)
        return
    children = render(Owner(name=name, namespace="ns", uid="u"), spec, template, template, 1, weight)
    for child in children:
        assert DNS_LABEL.match(child["metadata"]["name"]), child["metadata"]["name"]
        _labels_valid(child)
        body = json.dumps(child, ensure_ascii=False).encode()
        assert len(body) < MAX_CHILD_BYTES
        assert json.loads(body) == child, "the apply body round-trips, whatever the characters"


# -- the state machine --------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OLD, NEW = "old0000000", "new0000000"
MODEL = ServedModel(name="m", version="2", uri="s3://m/2")


def deployment(revision: str, wanted: int, ready: int) -> DeploymentState:
    return DeploymentState(
        generation=1,
        observed_generation=1,
        revision=revision,
        spec_replicas=wanted,
        replicas=wanted,
        updated_replicas=wanted,
        ready_replicas=ready,
        available_replicas=ready,
        available=ready == wanted,
        deadline_exceeded_message=None,
    )


def _assert_step_was_done(step: Any, current: bool, before: Any, now: datetime, ready_pods: int) -> None:
    """A step passed in this reconcile was really done: its pods ready, its pause over; none is skipped."""
    if step.set_weight:
        assert ready_pods > 0, f"passed setWeight {step.set_weight} without a ready canary pod"
    if step.pause is not None:
        assert step.pause.duration is not None, "passed an open pause without promote"
        waited = (now - parse_time(before.step_started_at)).total_seconds() if current else 0
        assert waited >= parse_duration(step.pause.duration), f"passed a {step.pause.duration} pause early"


ticks = st.lists(
    st.tuples(
        st.integers(0, 120),  # seconds since the last reconcile
        st.integers(0, 6),  # canary pods that are ready (capped by those wanted)
        st.sampled_from([None, None, None, "promote", "promote-full", "abort", "retry"]),
        st.booleans(),  # paused by hand
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(steps, routers, ticks)
def test_the_state_machine_never_raises_routes_to_unready_pods_or_skips_a_step(
    step_list: list[dict[str, Any]], traffic: dict[str, Any], sequence: list[tuple[int, int, ActionName | None, bool]]
) -> None:
    raw: dict[str, Any] = {
        "model": {"name": "m", "version": "2", "uri": "s3://m/2", "format": "sklearn"},
        "replicas": 3,
        "traffic": traffic,
        "rollout": {"steps": step_list, "progressDeadlineSeconds": 60},
    }
    try:
        spec = validate("m", raw)
    except SpecError:
        assume(False)
        return
    status = ModelDeploymentStatus(stable=RevisionStatus(revision=OLD, model=MODEL.model_copy(update={"version": "1"})))
    now = T0
    canary_wanted = 0
    for number, (seconds, ready, action, paused) in enumerate(sequence):
        now += timedelta(seconds=seconds)
        before = status.canary
        ready_pods = min(ready, canary_wanted)
        observed = Observed(
            stable=deployment(OLD, 3, 3),
            canary=deployment(NEW, canary_wanted, ready_pods) if canary_wanted else None,
            router_weight=before.weight if before is not None and traffic["router"] != "replicas" else None,
            paused=paused,
            action=Action(action, f"id-{number}") if action else None,
        )
        decision = decide(spec, NEW, MODEL, observed, status, now)
        if decision.weight > 0:
            assert ready_pods > 0, "weight only ever goes to ready canary pods"
        after = decision.status.canary
        if before is not None and after is not None and action not in ("promote", "promote-full"):
            for index in range(before.step_index, min(after.step_index, len(spec.rollout.steps))):
                _assert_step_was_done(spec.rollout.steps[index], index == before.step_index, before, now, ready_pods)
        if after is not None:
            assert 0 <= after.weight <= 100
            assert after.step_index <= after.step_count
        status = decision.status
        canary_wanted = decision.canary_replicas or 0
