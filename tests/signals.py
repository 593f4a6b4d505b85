"""Waiting on what other threads change, with a deadline: woken by each change, never by a timer."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Signal:
    """Threads that change shared state call `notify()` after the change; `wait_for` wakes on each one."""

    def __init__(self) -> None:
        self._condition = threading.Condition()

    def notify(self) -> None:
        with self._condition:
            self._condition.notify_all()

    def wait_for(self, predicate: Callable[[], object], timeout: float = 10.0, what: str = "the condition") -> None:
        with self._condition:
            assert self._condition.wait_for(predicate, timeout), f"{what} not met within {timeout:g}s"


class Woken(list[tuple[str, str]]):
    """The keys a runner or watcher asked to be reconciled again (its `notify`), each one signalled."""

    def __init__(self, signal: Signal | None = None) -> None:
        super().__init__()
        self.signal = signal or Signal()

    def append(self, key: tuple[str, str]) -> None:
        super().append(key)
        self.signal.notify()
