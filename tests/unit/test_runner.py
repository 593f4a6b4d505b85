"""Analysis ticks off the reconcile workers, and `--workers N` that really runs N reconciles at once."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from fake_kube import FakeKube
from modeldeploy.adapters import providers
from modeldeploy.adapters.background import BackgroundRunner
from modeldeploy.core.analysis import MetricQuery, Raw
from modeldeploy.reconcile import Reconciler
from modeldeploy.workqueue import WorkQueue, in_threads
from signals import Signal, Woken
from specs import model_version, valid_spec

KEY = ("ns", "fraud-scorer")
ROLLOUT = {
    "steps": [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
    "analysis": {
        "interval": "10s",
        "prometheus": {"address": "http://prom:9090", "timeout": "2s"},
        "metrics": [{"name": "success-rate", "builtin": "successRate", "min": 0.9}],
    },
}


class Slow:
    """Stands in for the providers: each tick blocks until released, then answers `value`."""

    def __init__(self, signal: Signal, value: float = 0.999) -> None:
        self.value = value
        self.release = threading.Event()
        self.ticks = 0
        self.signal = signal

    def __call__(self, planned: list[MetricQuery], context: providers.Context, transport: Any = None) -> list[Raw]:
        self.ticks += 1
        self.signal.notify()
        self.release.wait(10)
        return [Raw(canary=self.value) for _ in planned]


def canary_at_weight(kube: FakeKube, reconciler: Reconciler) -> None:
    """v7 stable, v8 a canary at 50% with its first measurement due."""
    reconciler.reconcile(*KEY)
    kube.md["spec"]["model"] = model_version("8")
    kube.md["metadata"]["generation"] = 2
    for _ in range(5):
        reconciler.reconcile(*KEY)
        canary = kube.md["status"].get("canary")
        if canary and canary["weight"] == 50:
            return
    raise AssertionError(f"no canary at 50%: {kube.md['status']}")


def test_a_slow_tick_never_holds_the_reconcile_and_its_answers_are_used_once_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    woken = Woken()
    slow = Slow(woken.signal)
    monkeypatch.setattr("modeldeploy.reconcile.providers.measure", slow)
    runner: BackgroundRunner[list[Raw]] = BackgroundRunner("analysis", woken.append)
    kube = FakeKube(valid_spec(rollout=ROLLOUT))
    reconciler = Reconciler(kube, runner=runner)
    try:
        canary_at_weight(kube, reconciler)
        started = time.monotonic()
        again = reconciler.reconcile(*KEY)
        assert time.monotonic() - started < 1, "the reconcile waited for the tick"
        woken.signal.wait_for(lambda: slow.ticks == 1)
        assert not kube.md["status"]["analysis"].get("metrics"), "nothing measured yet"
        assert again is not None
        assert again >= 1.0, "while the tick runs, the object is not reconciled in a tight loop"
        # A manual abort while the tick runs is handled at once.
        kube.md["metadata"]["annotations"] = {"modeldeploy.io/action": '{"action": "abort", "id": "a1"}'}
        reconciler.reconcile(*KEY)
        assert kube.md["status"]["lastAction"]["result"].startswith("aborted")
        assert kube.md["status"].get("canary") is None
    finally:
        slow.release.set()
        runner.close()


def test_the_finished_tick_wakes_its_object_and_is_consumed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    woken = Woken()
    slow = Slow(woken.signal)
    monkeypatch.setattr("modeldeploy.reconcile.providers.measure", slow)
    runner: BackgroundRunner[list[Raw]] = BackgroundRunner("analysis", woken.append)
    kube = FakeKube(valid_spec(rollout=ROLLOUT))
    reconciler = Reconciler(kube, runner=runner)
    try:
        canary_at_weight(kube, reconciler)
        reconciler.reconcile(*KEY)
        reconciler.reconcile(*KEY)  # still running: not started twice
        woken.signal.wait_for(lambda: slow.ticks == 1)
        slow.release.set()
        woken.signal.wait_for(lambda: woken == [KEY])
        reconciler.reconcile(*KEY)
        analysis = kube.md["status"]["analysis"]
        assert [m["result"] for m in analysis["metrics"][0]["measurements"]] == ["Successful"]
        assert analysis["consecutiveSuccesses"] == 1
        # The next tick, when it is due, is a new one.
        analysis["nextMeasurementAt"] = datetime(2000, 1, 1, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        reconciler.reconcile(*KEY)
        woken.signal.wait_for(lambda: slow.ticks == 2 and len(woken) == 2)
        reconciler.reconcile(*KEY)
        assert kube.md["status"]["analysis"]["consecutiveSuccesses"] == 2
    finally:
        slow.release.set()
        runner.close()


def test_answers_to_an_older_question_are_never_used() -> None:
    woken = Woken()
    runner: BackgroundRunner[list[Raw]] = BackgroundRunner("analysis", woken.append)
    release = threading.Event()

    def old() -> list[Raw]:
        release.wait(5)
        return [Raw(canary=0.1)]

    try:
        assert runner.take(KEY, "tick-1", old, 2.0) is None
        assert runner.take(KEY, "tick-2", lambda: [Raw(canary=0.9)], 2.0) is None  # the spec changed
        release.set()
        woken.signal.wait_for(lambda: woken == [KEY])  # tick-2 finished (tick-1's end wakes nothing)
        assert runner.take(KEY, "tick-2", lambda: [], 2.0) == [Raw(canary=0.9)]
        assert runner.take(KEY, "tick-1", lambda: [], 2.0) is None, "tick-1 starts over, its old answer is gone"
    finally:
        runner.close()


def test_the_queue_runs_as_many_reconciles_at_once_as_it_has_workers() -> None:
    """Not capped by the loop's default executor (min(32, CPUs + 4) threads on Python 3.11: 6 on two cores)."""
    workers = 16
    barrier = threading.Barrier(workers, timeout=5)
    done: list[str] = []
    signal = Signal()

    def reconcile(namespace: str, name: str) -> float | None:
        barrier.wait()  # breaks (and raises) unless all of them run at the same time
        done.append(name)
        signal.notify()
        return None

    async def scenario() -> None:
        handler, pool = in_threads(reconcile, workers)
        queue = WorkQueue(handler, workers=workers)
        queue.start()
        for i in range(workers):
            queue.add(("ns", f"md-{i}"))
        await asyncio.to_thread(signal.wait_for, lambda: len(done) == workers, 10, "every reconcile")
        await queue.stop()
        pool.shutdown()

    asyncio.run(scenario())
    assert sorted(done) == sorted(f"md-{i}" for i in range(workers))
