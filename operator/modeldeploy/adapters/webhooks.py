"""Webhooks on the wire: gate calls and notification deliveries, both off the reconcile workers.

Gate calls run on a `GateRunner` (a `BackgroundRunner` of their own, keyed by object and hook, like the analysis
ticks'): the reconcile asks for a call and goes on; when the answer is in, the object is queued again
and the next reconcile takes it, once. One slow receiver holds only its own object's gate.

Notifications go to a `Notifier`: a delivery is tried on its pool, and a failed try is scheduled again with backoff
(1 s, 2 s, 4 s, ... at most 30 s; five tries) without holding a thread while it waits. Reconciles never wait for it.

URLs and tokens from Secrets are read when the call is made, by the worker, through `providers.Context` (so every
value is registered for redaction); they are sent and never written to a log line, an Event or status: messages
name the host and path of a URL, never its query, and a receiver's answer is redacted before status shows it.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from modeldeploy.adapters import metrics, redaction
from modeldeploy.adapters.background import BackgroundRunner
from modeldeploy.adapters.providers.base import (
    Context,
    Deadline,
    DeadlineExceededError,
    ProviderError,
    SecretStore,
    fetch,
)
from modeldeploy.core.api import Notification, SecretSource, Webhook, parse_duration
from modeldeploy.core.api.base import HTTP_URL
from modeldeploy.core.hooks import ANSWER_LIMIT, Delivery, GateAnswer, GateCall, backoff

log = logging.getLogger("modeldeploy.webhooks")

GATE_WORKERS = 16
"""Gate calls at once, across all objects (a call with its retries holds one)."""
NOTIFY_WORKERS = 4
NOTIFY_TRIES = 5


class _UnusableError(Exception):
    """The endpoint cannot be called as configured (a Secret missing, a URL that is not http(s))."""


def _endpoint(hook: Webhook | Notification, context: Context) -> tuple[str, dict[str, str]]:
    """The URL and headers to call, Secrets read now."""
    headers = {"Content-Type": "application/json", "User-Agent": "modeldeploy"}
    try:
        url = hook.url or _secret(hook.url_from, context, spaces=False)
        if hook.token_from is not None:
            headers["Authorization"] = f"Bearer {_secret(hook.token_from, context, spaces=False)}"
    except ProviderError as error:
        raise _UnusableError(str(error)) from error
    if not re.match(HTTP_URL, url):
        assert hook.url_from is not None
        ref = hook.url_from.secret_key_ref
        raise _UnusableError(f"key {ref.key!r} of Secret {context.namespace}/{ref.name} is not an http(s) URL")
    return url, headers


def _secret(source: SecretSource | None, context: Context, spaces: bool) -> str:
    assert source is not None
    return context.credential(source.secret_key_ref, spaces=spaces)


@dataclass(frozen=True)
class _Try:
    ok: bool
    answer: str
    retry: bool
    """Worth trying again: no answer, or an answer 5xx, 408 or 429."""


def _post(client: httpx.Client, url: str, body: bytes, timeout: float) -> _Try:
    try:
        response = fetch(client, "POST", url, Deadline.after(timeout), content=body)
    except (DeadlineExceededError, httpx.TimeoutException):
        return _Try(False, f"no answer within {timeout:g}s", True)
    except ProviderError as error:
        return _Try(False, str(error), False)
    except httpx.HTTPError as error:
        # No URL in the message: one from a Secret carries its credential in the path (a Slack webhook's).
        return _Try(False, f"no connection: {type(error).__name__}", True)
    text = " ".join(response.text.split())[:ANSWER_LIMIT]
    answer = redaction.redact(f"HTTP {response.status_code}" + (f": {text}" if text else ""))
    retry = response.status_code >= 500 or response.status_code in (408, 429)
    return _Try(response.is_success, answer, retry)


def call_gate(
    call: GateCall,
    namespace: str,
    name: str,
    store: SecretStore,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> GateAnswer:
    """One gate call with its retries; every outcome is an answer, never an exception."""
    hook = call.hook
    context = Context(namespace, name, store)
    try:
        url, headers = _endpoint(hook, context)
    except _UnusableError as error:
        return GateAnswer(False, f"not called: {error}")
    timeout = parse_duration(hook.timeout)
    body = json.dumps({"name": name, "namespace": namespace, **call.payload}).encode()
    with httpx.Client(headers=headers, transport=transport) as client:
        for attempt in range(hook.retries + 1):
            if attempt:
                sleep(backoff(attempt))
            result = _post(client, url, body, timeout)
            if result.ok or not result.retry:
                break
    metrics.WEBHOOK_CALLS.labels(type=hook.type, result="passed" if result.ok else "failed").inc()
    tries = f" (after {attempt + 1} tries)" if attempt else ""
    return GateAnswer(result.ok, f"{result.answer}{tries}")


class GateRunner:
    """Gate calls on their own pool (a `BackgroundRunner`, keyed by object and hook); `notify((namespace, name))`
    when one has an answer."""

    def __init__(
        self,
        store: SecretStore,
        notify: Callable[[tuple[str, str]], object],
        workers: int = GATE_WORKERS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._store = store
        self._transport = transport
        self._runner: BackgroundRunner[GateAnswer] = BackgroundRunner("webhook", notify, workers)

    def take(self, namespace: str, name: str, call: GateCall) -> GateAnswer | None:
        """The answer of `call` once it has come (once); None while it runs, starting it if it does not."""
        hook = call.hook
        budget = (hook.retries + 1) * parse_duration(hook.timeout) + sum(backoff(n) for n in range(1, hook.retries + 1))
        work = functools.partial(call_gate, call, namespace, name, self._store, self._transport)
        return self._runner.take((namespace, name, hook.name), call.fingerprint, work, budget)

    def forget(self, namespace: str, name: str) -> None:
        self._runner.forget((namespace, name))

    def close(self) -> None:
        self._runner.close()


class InlineGates:
    """Calls gates within the caller (tests and tools that want one reconcile to do everything)."""

    def __init__(self, store: SecretStore, transport: httpx.BaseTransport | None = None) -> None:
        self._store = store
        self._transport = transport

    def take(self, namespace: str, name: str, call: GateCall) -> GateAnswer | None:
        return call_gate(call, namespace, name, self._store, self._transport, sleep=lambda _: None)

    def forget(self, namespace: str, name: str) -> None:
        pass


@dataclass(frozen=True)
class _Send:
    namespace: str
    name: str
    delivery: Delivery
    tries: int


def deliver_once(
    send: _Send, store: SecretStore, transport: httpx.BaseTransport | None = None
) -> tuple[bool, bool, str]:
    """One try of one delivery: (delivered, worth trying again, what happened)."""
    notification = send.delivery.notification
    context = Context(send.namespace, send.name, store)
    try:
        url, headers = _endpoint(notification, context)
    except _UnusableError as error:
        return False, False, str(error)
    headers["Idempotency-Key"] = send.delivery.id
    body = json.dumps(send.delivery.body).encode()
    with httpx.Client(headers=headers, transport=transport) as client:
        result = _post(client, url, body, parse_duration(notification.timeout))
    return result.ok, result.retry, result.answer


class Notifier:
    """Delivers notifications on its own pool; failed tries wait in a schedule, not in a thread."""

    def __init__(
        self,
        store: SecretStore,
        workers: int = NOTIFY_WORKERS,
        transport: httpx.BaseTransport | None = None,
        tries: int = NOTIFY_TRIES,
    ) -> None:
        self._store = store
        self._transport = transport
        self._tries = tries
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notify")
        self._due: list[tuple[float, int, _Send]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._closed = False
        self._scheduler = threading.Thread(target=self._schedule, name="notify-schedule", daemon=True)
        self._scheduler.start()

    def send(self, namespace: str, name: str, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self._pool.submit(self._try, _Send(namespace, name, delivery, 1))

    def _try(self, send: _Send) -> None:
        delivery = send.delivery
        try:
            ok, retry, answer = deliver_once(send, self._store, self._transport)
        except Exception as error:  # a bug must not lose the schedule: counted and logged as a failure
            ok, retry, answer = False, False, f"{type(error).__name__}"
            log.warning("[%s/%s] notification failed", send.namespace, send.name, exc_info=True)
        target = f"notification {delivery.notification.name!r}"
        if ok:
            metrics.NOTIFICATIONS.labels(event=delivery.event, result="delivered").inc()
            log.info("[%s/%s] Sent %s to %s (id %s)", send.namespace, send.name, delivery.event, target, delivery.id)
            return
        if retry and send.tries < self._tries:
            wait = backoff(send.tries)
            metrics.NOTIFICATIONS.labels(event=delivery.event, result="retried").inc()
            log.info(
                "[%s/%s] %s for %s: %s; trying again in %gs",
                send.namespace,
                send.name,
                delivery.event,
                target,
                answer,
                wait,
            )
            with self._wake:
                heapq.heappush(
                    self._due,
                    (
                        time.monotonic() + wait,
                        next(self._order),
                        _Send(send.namespace, send.name, delivery, send.tries + 1),
                    ),
                )
                self._wake.notify()
            return
        metrics.NOTIFICATIONS.labels(event=delivery.event, result="failed").inc()
        log.warning(
            "[%s/%s] Could not send %s to %s after %d tries: %s",
            send.namespace,
            send.name,
            delivery.event,
            target,
            send.tries,
            answer,
        )

    def _schedule(self) -> None:
        with self._wake:
            while not self._closed:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    _, _, send = heapq.heappop(self._due)
                    self._pool.submit(self._try, send)
                self._wake.wait(timeout=(self._due[0][0] - now) if self._due else None)

    def pending(self) -> int:
        """Deliveries waiting for a retry."""
        with self._wake:
            return len(self._due)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._pool.shutdown(wait=False, cancel_futures=True)
