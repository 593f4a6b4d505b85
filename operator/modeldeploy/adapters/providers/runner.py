"""Analysis ticks off the reconcile workers: a slow or blackholed metric source never delays another object's
reconcile, nor a manual action on its own object.

When a tick is due, the reconcile hands it to a `MeasurementRunner` (keyed by the object, with a fingerprint of
what is asked: the canary revision, the tick's due time and the queries) and carries on without measurements; the
runner measures on its own bounded thread pool, keeps the answers, and asks for the object to be reconciled again
(`notify`). The next reconcile with the same fingerprint takes the answers, once. A spec change, a new canary or a
manual action is handled by the next reconcile as usual: a tick still running for an older fingerprint is simply
never used.

`InlineRunner` measures within the reconcile, for tests and tools that want one call to do everything.
"""

from __future__ import annotations

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


class InlineRunner:
    """Measures within the caller: `take` returns the answers at once."""

    def take(self, key: Key, fingerprint: str, work: Work, budget: float) -> list[Raw] | None:
        return work()

    def wait(self, key: Key) -> float | None:
        return None

    def forget(self, key: Key) -> None:
        pass


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

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
