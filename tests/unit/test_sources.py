"""Registry sources through the reconcile: pinned, polled, kept through outages, tagged with outcomes."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from fake_kube import FakeKube
from modeldeploy.adapters.background import BackgroundRunner
from modeldeploy.adapters.registries.mlflow import ModelVersion, RegistryError
from modeldeploy.core.api import MlflowRegistry, RegistryReference
from modeldeploy.reconcile import Reconciler
from modeldeploy.sources import Lookup, SourceResolver
from signals import Woken
from specs import valid_spec

ALIAS_URI = "models:/fraud@champion"


class FakeRegistry:
    """Stands in for MlflowClient: an alias table, an outage switch, and a log of calls."""

    def __init__(self) -> None:
        self.aliases = {"champion": "7"}
        self.down = False
        self.calls: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.credentials: list[dict[str, str]] = []

    def __call__(self, settings: MlflowRegistry, credentials: dict[str, str]) -> FakeRegistry:
        self.credentials.append(credentials)
        return self

    def resolve(self, reference: RegistryReference) -> ModelVersion:
        self.calls.append(f"resolve {reference.alias or reference.version}")
        if self.down:
            raise RegistryError("RegistryUnavailable", "MLflow at http://mlflow:5000 unreachable: ConnectError")
        version = self.aliases[reference.alias] if reference.alias else str(reference.version)
        return ModelVersion(version=version, download_uri=f"s3://mlflow/artifacts/{version}", run_id=f"run-{version}")

    def tag(self, name: str, version: str, tags: dict[str, str]) -> None:
        self.tags.append((version, tags))

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry_spec(uri: str = ALIAS_URI, **mlflow: Any) -> dict[str, Any]:
    return valid_spec(
        model={
            "name": "fraud-scorer",
            "uri": uri,
            "format": "sklearn",
            "registry": {"mlflow": {"trackingUri": "http://mlflow:5000", "pollInterval": "60s", **mlflow}},
        },
        rollout={"steps": []},
    )


@pytest.fixture
def world() -> tuple[FakeKube, FakeRegistry, Clock, Reconciler]:
    kube = FakeKube(registry_spec())
    registry, clock = FakeRegistry(), Clock()
    resolver = SourceResolver(kube, client=registry, clock=clock, jitter=lambda: 0.5)  # type: ignore[arg-type]
    return kube, registry, clock, Reconciler(kube, resolver)


def deployment_env(kube: FakeKube, name: str = "fraud-scorer") -> dict[str, str]:
    pod = kube.objects[("Deployment", name)]["spec"]["template"]["spec"]
    return {var["name"]: var.get("value", "") for var in pod["initContainers"][0]["env"]}


def condition(kube: FakeKube, kind: str) -> dict[str, Any]:
    return next(c for c in kube.md["status"]["conditions"] if c["type"] == kind)


def test_an_alias_is_pinned_and_the_pods_get_the_pinned_version(world: Any) -> None:
    kube, registry, _, reconciler = world
    again = reconciler.reconcile("ns", "fraud-scorer")
    source = kube.md["status"]["source"]
    assert (source["uri"], source["version"], source["downloadUri"]) == (ALIAS_URI, "7", "s3://mlflow/artifacts/7")
    assert deployment_env(kube)["MODEL_URI"] == "s3://mlflow/artifacts/7"
    assert deployment_env(kube)["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    labels = kube.objects[("Deployment", "fraud-scorer")]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == "7"
    assert condition(kube, "ModelResolved")["status"] == "True"
    assert "ModelVersionResolved" in kube.events
    assert again == pytest.approx(63.0)  # the poll interval plus its jitter
    reconciler.reconcile("ns", "fraud-scorer")
    assert kube.md["status"]["stable"]["model"] == {
        "name": "fraud-scorer",
        "version": "7",
        "uri": "s3://mlflow/artifacts/7",
        "source": ALIAS_URI,
        "runId": "run-7",
        "image": "ghcr.io/modeldeploy/modelserver:0.1.0",
    }
    assert registry.calls == ["resolve champion"], "the registry is asked again only when the poll is due"


def test_an_alias_move_starts_a_canary_with_no_spec_change(world: Any) -> None:
    kube, registry, clock, reconciler = world
    reconciler.reconcile("ns", "fraud-scorer")
    reconciler.reconcile("ns", "fraud-scorer")
    first_revision = kube.md["status"]["stable"]["revision"]
    registry.aliases["champion"] = "8"
    clock.now += 64
    reconciler.reconcile("ns", "fraud-scorer")
    status = kube.md["status"]
    assert status["source"]["version"] == "8"
    assert status["canary"]["model"]["version"] == "8"
    assert status["stable"]["revision"] == first_revision
    assert "CanaryStarted" in kube.events
    assert deployment_env(kube, "fraud-scorer-canary")["MODEL_URI"] == "s3://mlflow/artifacts/8"


def test_a_registry_outage_keeps_the_pin_and_never_rolls_back(world: Any) -> None:
    kube, registry, clock, reconciler = world
    reconciler.reconcile("ns", "fraud-scorer")
    reconciler.reconcile("ns", "fraud-scorer")
    registry.down = True
    clock.now += 64
    again = reconciler.reconcile("ns", "fraud-scorer")
    resolved = condition(kube, "ModelResolved")
    assert (resolved["status"], resolved["reason"]) == ("False", "RegistryUnavailable")
    assert "still serving the pinned version 7" in resolved["message"]
    assert kube.md["status"]["phase"] == "Ready"
    assert kube.md["status"]["source"]["version"] == "7"
    assert again == 5.0
    clock.now += 5
    assert reconciler.reconcile("ns", "fraud-scorer") == 10.0, "asked again with backoff"
    assert kube.events.count("ModelResolutionFailed") == 1
    assert "RolledBack" not in kube.events
    registry.down = False
    clock.now += 10
    reconciler.reconcile("ns", "fraud-scorer")
    assert condition(kube, "ModelResolved")["status"] == "True"
    assert "RegistryRecovered" in kube.events


def test_nothing_pinned_and_the_registry_down_is_degraded_with_the_reason(world: Any) -> None:
    kube, registry, _, reconciler = world
    registry.down = True
    assert reconciler.reconcile("ns", "fraud-scorer") == 5.0
    status = kube.md["status"]
    assert status["phase"] == "Degraded"
    ready = condition(kube, "Ready")
    assert ready["reason"] == "RegistryUnavailable"
    assert "unreachable" in ready["message"]
    assert ("Deployment", "fraud-scorer") not in kube.objects


def test_a_pinned_version_source_is_resolved_once(world: Any) -> None:
    kube, registry, clock, reconciler = world
    kube.md["spec"] = registry_spec("models:/fraud/3")
    reconciler.reconcile("ns", "fraud-scorer")
    for _ in range(3):
        clock.now += 3600
        assert reconciler.reconcile("ns", "fraud-scorer") is None
    assert registry.calls == ["resolve 3"]
    assert kube.md["status"]["source"]["version"] == "3"


def test_registry_credentials_come_from_the_named_secret(world: Any) -> None:
    kube, registry, _, reconciler = world
    kube.md["spec"] = registry_spec(secretName="mlflow-token")
    reconciler.reconcile("ns", "fraud-scorer")
    assert condition(kube, "ModelResolved")["reason"] == "SecretUnreadable"
    assert "cannot read Secret ns/mlflow-token" in condition(kube, "ModelResolved")["message"]
    kube.secrets["mlflow-token"] = {"MLFLOW_TRACKING_TOKEN": "t0ken"}
    reconciler.sources.forget(("ns", "fraud-scorer"))
    reconciler.reconcile("ns", "fraud-scorer")
    assert registry.credentials[-1] == {"MLFLOW_TRACKING_TOKEN": "t0ken"}
    assert kube.md["status"]["source"]["version"] == "7"


def test_outcomes_are_tagged_only_when_asked(world: Any) -> None:
    kube, registry, clock, reconciler = world
    kube.md["spec"] = registry_spec(tagOutcome=True)
    for _ in range(2):
        reconciler.reconcile("ns", "fraud-scorer")
    registry.aliases["champion"] = "8"
    clock.now += 64
    for _ in range(4):
        reconciler.reconcile("ns", "fraud-scorer")
    assert kube.md["status"]["stable"]["model"]["version"] == "8"
    assert registry.tags == [("8", {"modeldeploy.outcome": "Promoted", "modeldeploy.reason": "Promoted"})]


def test_a_spec_that_leaves_the_registry_drops_the_pin(world: Any) -> None:
    kube, _, _, reconciler = world
    reconciler.reconcile("ns", "fraud-scorer")
    kube.md["spec"] = valid_spec(rollout={"steps": []})
    reconciler.reconcile("ns", "fraud-scorer")
    assert "source" not in kube.md["status"]
    assert all(c["type"] != "ModelResolved" for c in kube.md["status"]["conditions"])


class Hanging(FakeRegistry):
    """A registry whose lookups block until released (a blackholed MLflow)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def resolve(self, reference: RegistryReference) -> ModelVersion:
        self.release.wait(10)
        return super().resolve(reference)


def test_a_hanging_registry_holds_no_reconcile_and_its_answer_is_used_when_it_comes() -> None:
    kube = FakeKube(registry_spec())
    registry, woken = Hanging(), threading.Event()
    runner: BackgroundRunner[Lookup] = BackgroundRunner("registry", lambda _key: woken.set())
    resolver = SourceResolver(kube, client=registry, runner=runner)  # type: ignore[arg-type]
    reconciler = Reconciler(kube, resolver)
    try:
        started = time.monotonic()
        reconciler.reconcile("ns", "fraud-scorer")
        assert time.monotonic() - started < 2, "the reconcile waited for the registry"
        resolved = condition(kube, "ModelResolved")
        assert (resolved["status"], resolved["reason"]) == ("False", "Resolving")
        assert ("Deployment", "fraud-scorer") not in kube.objects, "nothing is served before the first answer"
        reconciler.reconcile("ns", "fraud-scorer")
        registry.release.set()
        assert woken.wait(5), "the lookup's end did not queue the object again"
        reconciler.reconcile("ns", "fraud-scorer")
        assert kube.md["status"]["source"]["version"] == "7"
        assert condition(kube, "ModelResolved")["status"] == "True"
        assert registry.calls == ["resolve champion"], "one lookup, whatever the reconciles meanwhile"
    finally:
        runner.close()


def test_while_a_retry_runs_the_status_keeps_the_last_failure() -> None:
    kube = FakeKube(registry_spec())
    registry, clock = Hanging(), Clock()
    registry.release.set()
    woken = Woken()
    runner: BackgroundRunner[Lookup] = BackgroundRunner("registry", woken.append)
    resolver = SourceResolver(kube, client=registry, clock=clock, jitter=lambda: 0.5, runner=runner)  # type: ignore[arg-type]
    reconciler = Reconciler(kube, resolver)

    def answered() -> None:
        """Waits for the running lookup to finish (it wakes its object), then reconciles, which uses its answer."""
        woken.signal.wait_for(lambda: len(woken) == 1, what="the lookup's end")
        woken.clear()
        reconciler.reconcile("ns", "fraud-scorer")

    try:
        reconciler.reconcile("ns", "fraud-scorer")
        answered()
        reconciler.reconcile("ns", "fraud-scorer")
        registry.down, clock.now = True, clock.now + 64
        reconciler.reconcile("ns", "fraud-scorer")
        answered()
        assert condition(kube, "ModelResolved")["reason"] == "RegistryUnavailable"
        registry.release.clear()  # the retry hangs: status must not claim the registry answered
        clock.now += 5
        reconciler.reconcile("ns", "fraud-scorer")
        assert condition(kube, "ModelResolved")["reason"] == "RegistryUnavailable"
        assert kube.md["status"]["phase"] == "Ready", "the pin keeps serving"
        registry.release.set()
    finally:
        runner.close()
