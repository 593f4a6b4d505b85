"""Repeating checks off the reconcile workers: a metric's critical bounds, checked at their own short cadence
(analysis.criticalInterval), whatever the analysis interval.

A reconcile that wants an object watched calls `watch` (keyed by the object, with a fingerprint of what is asked:
the revision and the queries) and carries on at once. A `BackgroundWatcher` keeps one repeating check per object,
run on a pool of its own by one scheduler thread; a check that finds a breach stops repeating, keeps the breach
and asks for the object to be reconciled (`notify`); the next reconcile with the same fingerprint takes it, once.
A reconcile never waits for a check, and a slow check delays no other object's.

`InlineWatcher` checks within the reconcile, for tests and tools that want one call to do everything.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("modeldeploy.watcher")

Key = tuple[str, str]
Check = Callable[[], str | None]
"""One check: what breached (metric, value, bound), or None."""
DEFAULT_WORKERS = 16
"""Checks run at once, across all objects."""


class Watcher(Protocol):
    def watch(self, key: Key, fingerprint: str, check: Check, every: float) -> str | None:
        """A breach the watch `fingerprint` found (once), else None; starts the watch (checked every `every`
        seconds) if it is not running, replacing one with another fingerprint."""
        ...

    def unwatch(self, key: Key) -> None:
        """Nothing to watch for `key` any more."""
        ...


class InlineWatcher:
    """Checks within the caller, once per call."""

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


class BackgroundWatcher:
    """Runs each watch's check every `every` seconds on its own thread pool; `notify(key)` is called (from a pool
    thread) when a check found a breach."""

    def __init__(self, notify: Callable[[Key], object], workers: int = DEFAULT_WORKERS) -> None:
        self._notify = notify
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="critical")
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._watches: dict[Key, _Watch] = {}
        self._due: list[tuple[float, int, Key, _Watch]] = []
        """When each watch checks next: a heap of (time.monotonic(), tie-breaker, key, watch)."""
        self._order = itertools.count()
        self._closed = False
        self._scheduler: threading.Thread | None = None

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
            self._watches.pop(key, None)  # its entry in the heap is skipped when due

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
                self._pool.submit(self._check, key, watch)
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
