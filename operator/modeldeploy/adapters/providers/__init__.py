"""Metric providers: where analysis numbers come from. One module each, behind one interface (`base.Provider`).

Adding a provider: a module here with a `Provider` subclass, plus one line in `PROVIDERS` (and, in the API,
its settings model and the field of that name on `AnalysisMetric`; see `modeldeploy.core.api.analysis`). The
reconcile measures through `measure` below and does not change; neither does the rollout state machine.
"""

from __future__ import annotations

import httpx

from modeldeploy.adapters.providers.base import Context, Provider, ProviderError, SecretStore
from modeldeploy.adapters.providers.prometheus import PrometheusProvider
from modeldeploy.adapters.providers.web import WebProvider
from modeldeploy.core.analysis import MetricQuery, Raw
from modeldeploy.core.api import ProviderName

__all__ = ["PROVIDERS", "Context", "Provider", "ProviderError", "SecretStore", "build", "measure"]

PROVIDERS: dict[ProviderName, type[Provider]] = {
    "prometheus": PrometheusProvider,
    "web": WebProvider,
}


def build(query: MetricQuery, context: Context, transport: httpx.BaseTransport | None = None) -> Provider:
    """The provider for a query's settings; ProviderError when its credentials or TLS settings cannot be read."""
    return PROVIDERS[query.provider].build(query.settings, context, transport)


def measure(planned: list[MetricQuery], context: Context, transport: httpx.BaseTransport | None = None) -> list[Raw]:
    """One tick: every query answered, in order. Queries with the same settings share one provider (one client,
    one credential read); a provider that cannot be built is an Error for each of its queries."""
    built: dict[str, Provider | ProviderError] = {}
    results = []
    try:
        for query in planned:
            key = f"{query.provider}:{query.settings.model_dump_json()}"
            if key not in built:
                try:
                    built[key] = build(query, context, transport)
                except ProviderError as error:
                    built[key] = error
            provider = built[key]
            if isinstance(provider, ProviderError):
                results.append(Raw(canary=None, error=str(provider)))
            else:
                results.append(provider.measure(query))
    finally:
        for provider in built.values():
            if isinstance(provider, Provider):
                provider.close()
    return results
