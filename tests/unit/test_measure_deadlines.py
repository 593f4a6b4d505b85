"""One deadline per query, whatever the server does, and the queries of a tick at once: against real sockets on
127.0.0.1 that never answer, or trickle their answer a byte at a time."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modeldeploy.adapters import providers
from modeldeploy.adapters.providers import Context
from modeldeploy.core.analysis import queries
from modeldeploy.core.api import Analysis

SLACK = 0.6  # thread start-up and scheduling on a busy two-core machine


class Server:
    """A TCP server on 127.0.0.1 whose every connection is handled by `behave(connection)` in its own thread."""

    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.behave = behave
        self.stopped = threading.Event()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.behave(connection)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for connection in self.connections:
            connection.close()


def blackhole(stopped: threading.Event) -> Callable[[socket.socket], None]:
    """Accepts, reads the request, and never answers."""

    def behave(connection: socket.socket) -> None:
        connection.recv(65536)
        stopped.wait(60)

    return behave


def trickle(stopped: threading.Event, every: float = 0.1) -> Callable[[socket.socket], None]:
    """Answers 200 at once, then the body one byte every `every` seconds (a valid Prometheus answer, eventually)."""
    body = b'{"status":"success","data":{"resultType":"vector","result":[]}}' + b" " * 4000

    def behave(connection: socket.socket) -> None:
        connection.recv(65536)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        connection.sendall(head.encode())
        for byte in body:
            if stopped.wait(every):
                return
            connection.sendall(bytes([byte]))

    return behave


@pytest.fixture
def stopped() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


class NoSecrets:
    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        raise AssertionError("no Secret is read")

    def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        raise AssertionError("no ConfigMap is read")


def tick(metrics: list[dict[str, Any]], prometheus: dict[str, Any]) -> tuple[list[Any], float]:
    analysis = Analysis.model_validate({"metrics": metrics, "prometheus": prometheus})
    planned = queries(analysis, "modelserver", "risk", "fraud", "c1", "s1")
    started = time.monotonic()
    raws = providers.measure(planned, Context("risk", "fraud", NoSecrets()))
    return raws, time.monotonic() - started


def test_a_server_that_trickles_its_answer_is_cut_off_at_the_timeout(stopped: threading.Event) -> None:
    server = Server(trickle(stopped))
    try:
        raws, took = tick([{"name": "q", "query": "up", "max": 1}], {"address": server.address, "timeout": "1s"})
    finally:
        server.close()
    assert took < 1 + SLACK, f"a 1s timeout held the tick for {took:.1f}s"
    assert raws[0].error == "no answer within 1s"


def test_a_web_endpoint_that_trickles_is_cut_off_at_its_timeout(stopped: threading.Event) -> None:
    server = Server(trickle(stopped))
    web = {"url": f"{server.address}/score", "jsonPath": "$.status", "timeout": "1s"}
    try:
        raws, took = tick([{"name": "w", "web": web, "min": 0}], {"address": server.address})
    finally:
        server.close()
    assert took < 1 + SLACK
    assert raws[0].error is not None
    assert raws[0].error.endswith("no answer within 1s")


def test_the_queries_of_a_tick_run_at_once_each_within_its_timeout(stopped: threading.Event) -> None:
    server = Server(blackhole(stopped))
    metrics = [{"name": f"q{i}", "query": "up", "max": 1, "relative": {"maxIncrease": 1}} for i in range(4)]
    try:
        raws, took = tick(metrics, {"address": server.address, "timeout": "1s"})
    finally:
        server.close()
    # Four metrics, canary and stable each: eight requests that never get an answer, one second in all.
    assert took < 1 + SLACK, f"four blackholed queries took {took:.1f}s"
    assert [raw.error for raw in raws] == ["no answer within 1s"] * 4
