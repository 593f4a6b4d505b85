"""Slow calls off the reconcile workers: analysis ticks, registry lookups and webhook gates. A slow or blackholed
metric source, registry or receiver never delays another object's reconcile, nor a manual action on its own object.

When a call is due, the reconcile hands it to a `BackgroundRunner` (keyed by the object, with a fingerprint of
what is asked: for a tick, the canary revision, its due time and the queries) and carries on without the answer;
the runner calls on its own bounded thread pool, keeps the answer, and asks for the object to be reconciled again
(`notify`). The next reconcile with the same fingerprint takes the answer, once. A spec change, a new canary or a
manual action is handled by the next reconcile as usual: a call still running for an older fingerprint is simply
never used.

`InlineRunner` calls within the reconcile, for tests and tools that want one call to do everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("modeldeploy.background")

Key = tuple[str, ...]
"""The object's (namespace, name), then whatever tells its calls apart, if it may have several (a webhook's name)."""
T = TypeVar("T")
DEFAULT_WORKERS = 16
"""Calls made at once, across all objects; an analysis tick runs its own queries concurrently as well."""


class Runner(Protocol[T]):
    def take(self, key: Key, fingerprint: str, work: Callable[[], T], budget: float) -> T | None:
        """The answer of the call `fingerprint` once it has finished (once); None while it runs, starting it if
        it is not running yet. `budget` is how long it may take, in seconds."""
        ...

    def wait(self, key: Key) -> float | None:
        """Seconds until the running call of `key` must have finished, or None when none runs."""
        ...

    def forget(self, key: Key) -> None:
        """No call is due for `key` (or any key it begins) any more (no canary, or the object is gone): drop what
        is kept."""
        ...

    def fire(self, work: Callable[[], object]) -> None:
        """Calls `work` once, its answer unused (it handles its own errors)."""
        ...


class InlineRunner(Generic[T]):
    """Calls within the caller: `take` returns the answer at once."""

    def take(self, key: Key, fingerprint: str, work: Callable[[], T], budget: float) -> T | None:
        return work()

    def fire(self, work: Callable[[], object]) -> None:
        work()

    def wait(self, key: Key) -> float | None:
        return None

    def forget(self, key: Key) -> None:
        pass


@dataclass
class _Call(Generic[T]):
    fingerprint: str
    future: Future[T]
    due: float
    """time.monotonic() by which it must have finished: started + budget."""


class BackgroundRunner(Generic[T]):
    """Calls on its own thread pool; `notify((namespace, name))` is called (from a pool thread) when a call of that
    object finished. `name` names its threads and its log lines (what it calls: "analysis", "registry")."""

    def __init__(self, name: str, notify: Callable[[tuple[str, str]], object], workers: int = DEFAULT_WORKERS) -> None:
        self._name = name
        self._notify = notify
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._calls: dict[Key, _Call[T]] = {}

    def take(self, key: Key, fingerprint: str, work: Callable[[], T], budget: float) -> T | None:
        with self._lock:
            call = self._calls.get(key)
            if call is not None and call.fingerprint == fingerprint:
                if not call.future.done():
                    return None
                del self._calls[key]
                error = call.future.exception()
                if error is None:
                    return call.future.result()
                log.error("[%s/%s] A background %s call failed: %r; calling again", *key, self._name, error)
            # Nothing running for this fingerprint (a first call, or an older one superseded): start it. A call
            # the pool cannot start at once still counts its budget from now: the reconcile looks again then.
            future = self._pool.submit(work)
            self._calls[key] = _Call(fingerprint, future, time.monotonic() + budget)
        future.add_done_callback(lambda _: self._finished(key, fingerprint))
        return None

    def _finished(self, key: Key, fingerprint: str) -> None:
        with self._lock:
            call = self._calls.get(key)
            current = call is not None and call.fingerprint == fingerprint
        if current:
            try:
                self._notify((key[0], key[1]))
            except Exception:  # the loop is closing: nothing to wake up
                log.debug("could not queue %s/%s after its call", *key, exc_info=True)

    def wait(self, key: Key) -> float | None:
        with self._lock:
            call = self._calls.get(key)
        if call is None or call.future.done():
            return None
        return max(0.0, call.due - time.monotonic())

    def forget(self, key: Key) -> None:
        with self._lock:
            for kept in [k for k in self._calls if k[: len(key)] == key]:
                del self._calls[kept]

    def fire(self, work: Callable[[], object]) -> None:
        def failed(future: Future[object]) -> None:
            if not future.cancelled() and future.exception() is not None:
                log.error("A background %s call failed: %r", self._name, future.exception())

        self._pool.submit(work).add_done_callback(failed)

    def running(self) -> int:
        with self._lock:
            return sum(1 for call in self._calls.values() if not call.future.done())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
