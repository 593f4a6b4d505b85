"""A level-based work queue: one reconcile per key at a time, deduplicated, retried with backoff.

This is controller-runtime's model. Kopf delivers watch events; the queue decides when to reconcile.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

Key = tuple[str, str]


CHANGED = 0
"""Something happened to an object the operator serves that the reconcile has not seen: an edit, a manual action,
a child changed or deleted (its pods became ready: the object's next step, or its Ready), a retry, a time the
reconcile asked to be called back at."""
NEW = 1
"""An object created while the operator runs. Its first reconcile waits behind what changed, so that in a bulk
create every object reaches Ready as soon as its pods do, not after the first reconciles of all the objects created
after it."""
RESYNC = 2
"""An object seen again by a watch's (re)listing, with nothing known to have changed. After a restart these are
every object: they wait behind anything else, so a new object's first reconcile (and its first Ready) never
waits for a full pass over thousands of idle ones."""
PRIORITIES = (CHANGED, NEW, RESYNC)


class WorkQueue:
    def __init__(
        self,
        handler: Callable[[Key], Awaitable[float | None]],
        workers: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
    ) -> None:
        """`handler` returns a delay to be called again after, or None; it raises to be retried.

        Keys wait in one FIFO per priority (`CHANGED`, then `NEW`, then `RESYNC`); a key queued at a lower priority
        moves up when it is added again at a higher one. Workers start with `start()`: keys added before wait."""
        self._handler = handler
        self._workers = workers
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._fifos: tuple[deque[Key], ...] = tuple(deque() for _ in PRIORITIES)
        self._queued: dict[Key, int] = {}
        """Each queued key and its priority; a FIFO entry whose priority differs is stale and skipped."""
        self._wakeup = asyncio.Event()
        self._running: set[Key] = set()
        self._dirty: dict[Key, int] = {}
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Key, priority: int = CHANGED) -> None:
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()
        if key in self._running:
            self._dirty[key] = min(priority, self._dirty.get(key, priority))
            return
        queued = self._queued.get(key)
        if queued is not None and queued <= priority:
            return
        self._queued[key] = priority
        self._fifos[priority].append(key)
        self._wakeup.set()

    def add_after(self, key: Key, delay: float) -> None:
        if key in self._timers or key in self._queued:
            return
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def forget(self, key: Key) -> None:
        """The object is gone: drop its retries and timers."""
        self._failures.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()

    def depth(self) -> int:
        return len(self._queued)

    def depths(self) -> dict[int, int]:
        """Keys waiting, by priority."""
        counts = dict.fromkeys(PRIORITIES, 0)
        for priority in self._queued.values():
            counts[priority] += 1
        return counts

    def idle(self) -> bool:
        """Nothing queued, running or scheduled."""
        return not (self._queued or self._running or self._timers)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"reconcile-worker-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _pop(self) -> Key | None:
        for priority, fifo in zip(PRIORITIES, self._fifos, strict=True):
            while fifo:
                key = fifo.popleft()
                if self._queued.get(key) == priority:
                    del self._queued[key]
                    return key
        self._wakeup.clear()
        return None

    async def _next(self) -> Key:
        while (key := self._pop()) is None:
            await self._wakeup.wait()
        return key

    async def _work(self) -> None:
        while True:
            key = await self._next()
            self._running.add(key)
            try:
                again = await self._handler(key)
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(self._base_delay * 2 ** (failures - 1), self._max_delay)
                log.exception("[%s/%s] Reconcile failed (attempt %d); retrying in %.1fs", *key, failures, delay)
                self.add_after(key, delay)
            else:
                self._failures.pop(key, None)
                if again is not None:
                    self.add_after(key, again)
            finally:
                self._running.discard(key)
            dirty = self._dirty.pop(key, None)
            if dirty is not None:
                self.add(key, dirty)


def in_threads(
    function: Callable[[str, str], float | None], workers: int
) -> tuple[Callable[[Key], Awaitable[float | None]], ThreadPoolExecutor]:
    """A queue handler that runs the blocking `function(namespace, name)` on a pool of its own, `workers` threads.

    Not `asyncio.to_thread`: that uses the loop's default executor, whose size (min(32, CPUs + 4) on Python 3.11,
    so 6 on two cores) would cap the queue's `workers` silently, and which Kopf and libraries share."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")

    async def handler(key: Key) -> float | None:
        return await asyncio.get_running_loop().run_in_executor(pool, function, *key)

    return handler, pool
