"""Metric providers: where analysis numbers come from. One module each, behind one interface (`base.Provider`).

Adding a provider: a module here with a `Provider` subclass, plus one line in `PROVIDERS` (and, in the API,
its settings model and the field of that name on `AnalysisMetric`; see `modeldeploy.core.api.analysis`). The
reconcile measures through `measure` below and does not change; neither does the rollout state machine.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import httpx

from modeldeploy.adapters.providers.base import Context, Deadline, Provider, ProviderError, SecretStore
from modeldeploy.adapters.providers.prometheus import PrometheusProvider
from modeldeploy.adapters.providers.web import WebProvider
from modeldeploy.core.analysis import MetricQuery, Raw
from modeldeploy.core.api import PrometheusSource, ProviderName, WebMetric, parse_duration

__all__ = ["PROVIDERS", "Context", "Provider", "ProviderError", "SecretStore", "budget", "build", "measure"]

log = logging.getLogger("modeldeploy.providers")

PROVIDERS: dict[ProviderName, type[Provider]] = {
    "prometheus": PrometheusProvider,
    "web": WebProvider,
}
QUERIES_AT_ONCE = 8
"""Queries of one tick that run at the same time."""


def build(query: MetricQuery, context: Context, transport: httpx.BaseTransport | None = None) -> Provider:
    """The provider for a query's settings; ProviderError when its credentials or TLS settings cannot be read."""
    return PROVIDERS[query.provider].build(query.settings, context, transport)


def timeout(query: MetricQuery) -> float:
    """The query's own deadline, in seconds: its provider's `timeout`."""
    settings = query.settings
    assert isinstance(settings, PrometheusSource | WebMetric)
    return parse_duration(settings.timeout)


def budget(planned: list[MetricQuery]) -> float:
    """How long a tick may take: its queries run at once, each within its own timeout."""
    return max((timeout(q) for q in planned), default=0.0)


def measure(planned: list[MetricQuery], context: Context, transport: httpx.BaseTransport | None = None) -> list[Raw]:
    """One tick: every query answered, in order, within its provider's timeout, never an exception.

    Queries with the same settings share one provider (one client, one credential read); a provider that cannot
    be built is an Error for each of its queries. The queries run at once, each with one wall-clock deadline for
    all its requests (canary and stable) and every byte of their answers; a query still running at its deadline
    is an Error ("no answer within 5s") and is left to end on its own."""
    deadlines = [Deadline.after(timeout(q)) for q in planned]
    built: dict[str, Provider | ProviderError] = {}
    results: list[Raw | None] = [None] * len(planned)
    running: dict[int, Future[Raw]] = {}
    users: dict[str, list[Future[Raw]]] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(planned), QUERIES_AT_ONCE)), thread_name_prefix="query")
    try:
        for index, query in enumerate(planned):
            key = f"{query.provider}:{query.settings.model_dump_json()}"
            if key not in built:
                built[key] = _build(query, context, transport)
            provider = built[key]
            if isinstance(provider, ProviderError):
                results[index] = Raw(canary=None, error=str(provider))
                continue
            future = pool.submit(_answer, provider, query, deadlines[index])
            running[index] = future
            users.setdefault(key, []).append(future)
        for index, future in running.items():
            try:
                results[index] = future.result(timeout=max(0.0, deadlines[index].remaining()))
            except TimeoutError:
                results[index] = Raw(canary=None, error=deadlines[index].message())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for key, provider in built.items():
            if isinstance(provider, Provider):
                _close_when_done(provider, users.get(key, []))
    return [raw if raw is not None else Raw(canary=None, error="not measured") for raw in results]


def _build(query: MetricQuery, context: Context, transport: httpx.BaseTransport | None) -> Provider | ProviderError:
    try:
        return build(query, context, transport)
    except ProviderError as error:
        return error
    except Exception as error:  # e.g. an address httpx cannot use: an Error measurement, never a stuck reconcile
        log.debug("building the %s provider failed", query.provider, exc_info=True)
        return ProviderError(f"the {query.provider} provider cannot be used: {type(error).__name__}: {error}")


def _answer(provider: Provider, query: MetricQuery, deadline: Deadline) -> Raw:
    try:
        return provider.measure(query, deadline)
    except Exception as error:  # a provider's bug must not stop the tick: it is an Error that says what happened
        log.warning("%s failed to measure %s", provider.name, query.metric.name, exc_info=True)
        return Raw(canary=None, error=f"{provider.name} failed: {type(error).__name__}")


def _close_when_done(provider: Provider, futures: list[Future[Raw]]) -> None:
    """Closes the provider's client once no query of this tick uses it any more."""
    pending = [f for f in futures if not f.done()]
    if not pending:
        provider.close()
        return
    left = len(pending)
    lock = threading.Lock()

    def finished(_: Future[Raw]) -> None:
        nonlocal left
        with lock:
            left -= 1
            last = left == 0
        if last:
            provider.close()

    for future in pending:
        future.add_done_callback(finished)
