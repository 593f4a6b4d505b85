"""Analysis ticks off the reconcile workers: a slow or blackholed metric source never delays another object's
reconcile, nor a manual action on its own object.

When a tick is due, the reconcile hands it to a `MeasurementRunner` (keyed by the object, with a fingerprint of
what is asked: the canary revision, the tick's due time and the queries) and carries on without measurements; the
runner measures on its own bounded thread pool, keeps the answers, and asks for the object to be reconciled again
(`notify`). The next reconcile with the same fingerprint takes the answers, once. A spec change, a new canary or a
manual action is handled by the next reconcile as usual: a tick still running for an older fingerprint is simply
never used.

Critical bounds are watched the same way, at their own short cadence: `watch` keeps one repeating check per
object (keyed and fingerprinted likewise), run on a pool of its own by one scheduler thread; a check that finds a
breach stops repeating, keeps the breach and asks for the object to be reconciled, which takes it (once). A
reconcile never waits for a check.

`InlineRunner` measures within the reconcile, for tests and tools that want one call to do everything.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from modeldeploy.core.analysis import Raw

log = logging.getLogger("modeldeploy.analysis")

Key = tuple[str, str]
Work = Callable[[], list[Raw]]
Check = Callable[[], str | None]
"""One check of the critical bounds: what breached (metric, value, bound), or None."""
DEFAULT_WORKERS = 16
"""Ticks measured at once, across all objects; each tick runs its own queries concurrently as well."""


class Runner(Protocol):
    def take(self, key: Key, fingerprint: str, work: Work, budget: float) -> list[Raw] | None:
        """The answers of the tick `fingerprint` once it has finished (once); None while it runs, starting it if
        it is not running yet. `budget` is how long it may take, in seconds."""
        ...

    def wait(self, key: Key) -> float | None:
        """Seconds until the running tick of `key` must have finished, or None when none runs."""
        ...

    def forget(self, key: Key) -> None:
        """No tick is due for `key` any more (no canary, or the object is gone): drop what is kept."""
        ...

    def watch(self, key: Key, fingerprint: str, check: Check, every: float) -> str | None:
        """A breach the watch `fingerprint` found (once), else None; starts the watch (checked every `every`
        seconds) if it is not running, replacing one with another fingerprint."""
        ...

    def unwatch(self, key: Key) -> None:
        """Nothing to watch for `key` any more."""
        ...


class InlineRunner:
    """Measures within the caller: `take` returns the answers at once."""

    def take(self, key: Key, fingerprint: str, work: Work, budget: float) -> list[Raw] | None:
        return work()

    def wait(self, key: Key) -> float | None:
        return None

    def forget(self, key: Key) -> None:
        pass

    def watch(self, key: Key, fingerprint: str, check: Check, every: float) -> str | None:
        return check()

    def unwatch(self, key: Key) -> None:
        pass


@dataclass
class _Watch:
    fingerprint: str
    check: Check
    every: float
    breach: str | None = None


@dataclass
class _Tick:
    fingerprint: str
    future: Future[list[Raw]]
    due: float
    """time.monotonic() by which it must have finished: started + budget."""


class MeasurementRunner:
    """Measures ticks on its own thread pool; `notify(key)` is called (from a pool thread) when a tick finished."""

    def __init__(self, notify: Callable[[Key], object], workers: int = DEFAULT_WORKERS) -> None:
        self._notify = notify
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="analysis")
        self._lock = threading.Lock()
        self._ticks: dict[Key, _Tick] = {}
        self._checks = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="critical")
        self._watches: dict[Key, _Watch] = {}
        self._due: list[tuple[float, int, Key, _Watch]] = []
        """When each watch checks next: a heap of (time.monotonic(), tie-breaker, key, watch)."""
        self._order = itertools.count()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._scheduler: threading.Thread | None = None

    def take(self, key: Key, fingerprint: str, work: Work, budget: float) -> list[Raw] | None:
        with self._lock:
            tick = self._ticks.get(key)
            if tick is not None and tick.fingerprint == fingerprint:
                if not tick.future.done():
                    return None
                del self._ticks[key]
                error = tick.future.exception()
                if error is None:
                    return tick.future.result()
                log.error("[%s/%s] An analysis tick failed: %r; measuring again", *key, error)
            # Nothing running for this fingerprint (a first tick, or an older one superseded): start it. A tick
            # the pool cannot start at once still counts its budget from now: the reconcile looks again then.
            future = self._pool.submit(work)
            self._ticks[key] = _Tick(fingerprint, future, time.monotonic() + budget)
        future.add_done_callback(lambda _: self._finished(key, fingerprint))
        return None

    def _finished(self, key: Key, fingerprint: str) -> None:
        with self._lock:
            tick = self._ticks.get(key)
            current = tick is not None and tick.fingerprint == fingerprint
        if current:
            try:
                self._notify(key)
            except Exception:  # the loop is closing: nothing to wake up
                log.debug("could not queue %s/%s after its tick", *key, exc_info=True)

    def wait(self, key: Key) -> float | None:
        with self._lock:
            tick = self._ticks.get(key)
        if tick is None or tick.future.done():
            return None
        return max(0.0, tick.due - time.monotonic())

    def forget(self, key: Key) -> None:
        with self._lock:
            self._ticks.pop(key, None)

    def running(self) -> int:
        with self._lock:
            return sum(1 for tick in self._ticks.values() if not tick.future.done())

    def watch(self, key: Key, fingerprint: str, check: Check, every: float) -> str | None:
        with self._lock:
            current = self._watches.get(key)
            if current is not None and current.fingerprint == fingerprint:
                breach, current.breach = current.breach, None
                if breach is not None:
                    self._schedule(key, current, 0.0)  # taken: watch on (a rollback ends it with unwatch)
                return breach
            if self._scheduler is None:
                self._scheduler = threading.Thread(target=self._run_due, name="critical-scheduler", daemon=True)
                self._scheduler.start()
            watch = self._watches[key] = _Watch(fingerprint, check, every)
            self._schedule(key, watch, 0.0)
        return None

    def unwatch(self, key: Key) -> None:
        with self._lock:
            self._watches.pop(key, None)  # its entries in the heap are skipped when due

    def watching(self) -> int:
        with self._lock:
            return len(self._watches)

    def _schedule(self, key: Key, watch: _Watch, delay: float) -> None:
        """Called with the lock held."""
        heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), key, watch))
        self._wake.notify()

    def _run_due(self) -> None:
        while True:
            with self._wake:
                while not self._closed and (not self._due or self._due[0][0] > time.monotonic()):
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._closed:
                    return
                _, _, key, watch = heapq.heappop(self._due)
                if self._watches.get(key) is not watch:
                    continue  # replaced or dropped since
            try:
                self._checks.submit(self._check, key, watch)
            except RuntimeError:  # shut down
                return

    def _check(self, key: Key, watch: _Watch) -> None:
        try:
            breach = watch.check()
        except Exception as error:  # a check maps every answer to an outcome; this is a bug, not a breach
            log.error("[%s/%s] A critical-bound check failed: %r", *key, error)
            breach = None
        with self._lock:
            if self._watches.get(key) is not watch:
                return
            if breach is None:
                self._schedule(key, watch, watch.every)
                return
            watch.breach = breach
        try:
            self._notify(key)
        except Exception:  # the loop is closing: nothing to wake up
            log.debug("could not queue %s/%s after a critical breach", *key, exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._checks.shutdown(wait=False, cancel_futures=True)
