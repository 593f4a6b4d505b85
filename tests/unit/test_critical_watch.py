"""Critical bounds are checked at their own cadence, off the reconcile workers; a breach rolls back at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from fake_kube import FakeKube
from modeldeploy.adapters import providers
from modeldeploy.adapters.background import BackgroundRunner
from modeldeploy.adapters.watcher import BackgroundWatcher
from modeldeploy.core.analysis import MetricQuery, Raw
from modeldeploy.reconcile import Reconciler
from signals import Signal, Woken
from specs import model_version, valid_spec

KEY = ("ns", "fraud-scorer")
ROLLOUT = {
    "steps": [{"setWeight": 50}, {"analysis": {"measurements": 100}}],
    "analysis": {
        "interval": "30s",
        "criticalInterval": "500ms",
        "prometheus": {"address": "http://prom:9090", "timeout": "2s"},
        "metrics": [{"name": "success-rate", "builtin": "successRate", "min": 0.9, "critical": {"min": 0.5}}],
    },
}


class Answers:
    """Stands in for the providers: answers `value`; a check can be held until released."""

    def __init__(self) -> None:
        self.value = 0.99
        self.calls = 0
        self.release = threading.Event()
        self.release.set()
        self.signal = Signal()

    def __call__(self, planned: list[MetricQuery], context: providers.Context, transport: Any = None) -> list[Raw]:
        self.calls += 1
        self.signal.notify()
        self.release.wait(10)
        return [Raw(canary=self.value) for _ in planned]


def canary_at_weight(kube: FakeKube, reconciler: Reconciler, runner: BackgroundRunner[list[Raw]], woken: Woken) -> None:
    reconciler.reconcile(*KEY)
    kube.md["spec"]["model"] = model_version("8")
    kube.md["metadata"]["generation"] = 2
    for _ in range(10):
        woken.clear()
        reconciler.reconcile(*KEY)
        status = kube.md["status"]
        if (status.get("canary") or {}).get("weight") == 50 and (status.get("analysis") or {}).get("metrics"):
            return
        if runner.running():
            woken.signal.wait_for(lambda: KEY in woken, what="the first tick, on the runner")
    raise AssertionError(f"no measured canary at 50%: {kube.md['status']}")


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Answers:
    fake = Answers()
    monkeypatch.setattr("modeldeploy.reconcile.providers.measure", fake)
    return fake


def test_a_critical_breach_between_ticks_wakes_the_object_and_rolls_it_back(answers: Answers) -> None:
    woken = Woken(answers.signal)
    runner: BackgroundRunner[list[Raw]] = BackgroundRunner("analysis", woken.append)
    watcher = BackgroundWatcher(woken.append)
    kube = FakeKube(valid_spec(rollout=ROLLOUT))
    reconciler = Reconciler(kube, runner=runner, watcher=watcher)
    try:
        canary_at_weight(kube, reconciler, runner, woken)
        assert watcher.watching() == 1
        checked = answers.calls
        answers.signal.wait_for(lambda: answers.calls >= checked + 2)  # checks repeat on their own, between ticks
        assert kube.md["status"].get("canary") is not None
        woken.clear()
        answers.value = 0.2  # below the critical bound (and the normal one); the next tick is 30 s away
        answers.signal.wait_for(lambda: KEY in woken)
        reconciler.reconcile(*KEY)
        status = kube.md["status"]
        assert status.get("canary") is None
        assert status["lastRollback"]["reason"] == "CriticalBreach"
        assert "success-rate" in status["lastRollback"]["message"]
        assert "critical bound >= 0.5" in status["lastRollback"]["message"]
        reconciler.reconcile(*KEY)
        assert watcher.watching() == 0, "no canary, nothing to watch"
    finally:
        runner.close()
        watcher.close()


def test_a_slow_critical_check_never_holds_a_reconcile(answers: Answers) -> None:
    woken = Woken(answers.signal)
    runner: BackgroundRunner[list[Raw]] = BackgroundRunner("analysis", woken.append)
    watcher = BackgroundWatcher(lambda _: None)
    kube = FakeKube(valid_spec(rollout=ROLLOUT))
    reconciler = Reconciler(kube, runner=runner, watcher=watcher)
    try:
        canary_at_weight(kube, reconciler, runner, woken)
        answers.release.clear()  # every check from now on hangs
        calls = answers.calls
        answers.signal.wait_for(lambda: answers.calls > calls)
        started = time.monotonic()
        reconciler.reconcile(*KEY)
        assert time.monotonic() - started < 1, "the reconcile waited for a critical check"
    finally:
        answers.release.set()
        runner.close()
        watcher.close()


def test_a_breach_is_taken_once_and_only_for_its_own_question() -> None:
    woken = Woken()
    watcher = BackgroundWatcher(woken.append)
    try:
        assert watcher.watch(KEY, "canary-a", lambda: "m 0.1 < 0.5", 0.5) is None
        woken.signal.wait_for(lambda: woken == [KEY])
        assert watcher.watch(KEY, "canary-b", lambda: None, 0.5) is None, "another canary: the old breach is gone"
        assert watcher.watch(KEY, "canary-b", lambda: None, 0.5) is None
        watcher.unwatch(KEY)
        assert watcher.watching() == 0
    finally:
        watcher.close()
