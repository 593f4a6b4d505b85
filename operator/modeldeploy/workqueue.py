"""A level-based work queue: one reconcile per key at a time, deduplicated, retried with backoff.

This is controller-runtime's model. Kopf delivers watch events; the queue decides when to reconcile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Key = tuple[str, str]


class WorkQueue:
    def __init__(
        self,
        handler: Callable[[Key], Awaitable[float | None]],
        workers: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
    ) -> None:
        """`handler` returns a delay to be called again after, or None; it raises to be retried."""
        self._handler = handler
        self._workers = workers
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._dirty: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Key) -> None:
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

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
        return self._queue.qsize()

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

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
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
                self._queue.task_done()
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
