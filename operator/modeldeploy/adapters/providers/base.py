"""What every metric provider is: the interface, its errors, and the HTTP client settings they share.

A provider is built once per tick for each distinct set of settings (`build`), answers `measure` for each metric
it serves with a value, no data, or an error (never an exception), and says whether its server answers at all
(`is_online`). Credentials are read through `Context` from Secrets and ConfigMaps in the ModelDeployment's
namespace, when the provider is built; they go into the HTTP client and are never logged.
"""

from __future__ import annotations

import logging
import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import httpx
from kubernetes.client.exceptions import ApiException

from modeldeploy.core.analysis import MetricQuery, Raw
from modeldeploy.core.api import ConfigMapKey, Header, SecretKey, Tls

# httpx logs every request's full URL at INFO, query string included, and a web metric's query string may carry an
# API key: requests are not logged; what went wrong is, in the measurement's message (scheme, host and path only).
logging.getLogger("httpx").setLevel(logging.WARNING)


class ProviderError(Exception):
    """A provider cannot be built or asked (a Secret missing, a bad CA bundle, no AWS credentials): an Error
    measurement for every metric it serves, with this message."""


class SecretStore(Protocol):
    """The part of the Kubernetes adapter that providers read credentials through."""

    def read_secret(self, namespace: str, name: str) -> dict[str, str]: ...

    def read_config_map(self, namespace: str, name: str) -> dict[str, str]: ...


@dataclass(frozen=True)
class Context:
    """Whom a tick measures for, and where its credentials are read."""

    namespace: str
    name: str
    store: SecretStore

    def secret(self, name: str) -> dict[str, str]:
        try:
            return self.store.read_secret(self.namespace, name)
        except ApiException as error:
            raise ProviderError(f"cannot read Secret {self.namespace}/{name}: {error.reason}") from error

    def secret_value(self, ref: SecretKey) -> str:
        data = self.secret(ref.name)
        if ref.key not in data:
            raise ProviderError(f"Secret {self.namespace}/{ref.name} has no key {ref.key!r}")
        return data[ref.key]

    def config_map_value(self, ref: ConfigMapKey) -> str:
        try:
            data = self.store.read_config_map(self.namespace, ref.name)
        except ApiException as error:
            raise ProviderError(f"cannot read ConfigMap {self.namespace}/{ref.name}: {error.reason}") from error
        if ref.key not in data:
            raise ProviderError(f"ConfigMap {self.namespace}/{ref.name} has no key {ref.key!r}")
        return data[ref.key]


def headers(items: list[Header], context: Context) -> dict[str, str]:
    """The headers to send, values from Secrets read now."""
    out = {}
    for header in items:
        if header.value_from is not None:
            out[header.name] = context.secret_value(header.value_from.secret_key_ref)
        else:
            assert header.value is not None
            out[header.name] = header.value
    return out


def verify(tls: Tls | None, context: Context) -> ssl.SSLContext | bool:
    """httpx's `verify`: the system CAs, a CA bundle from a Secret or ConfigMap, or no check at all."""
    if tls is None:
        return True
    if tls.insecure_skip_verify:
        return False
    if tls.ca_secret is not None:
        pem, source = context.secret_value(tls.ca_secret), f"Secret {context.namespace}/{tls.ca_secret.name}"
    elif tls.ca_config_map is not None:
        pem = context.config_map_value(tls.ca_config_map)
        source = f"ConfigMap {context.namespace}/{tls.ca_config_map.name}"
    else:
        return True
    try:
        return ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as error:
        raise ProviderError(f"the CA bundle in {source} is not PEM certificates: {error}") from error


def where(url: str) -> str:
    """A URL fit for a message: scheme, host and path, never the query string (it may carry an API key)."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}{parsed.path}"


class Provider(ABC):
    """A source of metric values, built for one set of settings."""

    name: ClassVar[str]
    """What messages call it, e.g. "Prometheus"."""

    @classmethod
    @abstractmethod
    def build(cls, settings: Any, context: Context, transport: httpx.BaseTransport | None = None) -> Provider:
        """A provider for `settings`; ProviderError when credentials or TLS settings cannot be read.
        `transport` replaces the network (tests give an httpx.MockTransport)."""

    @abstractmethod
    def measure(self, query: MetricQuery) -> Raw:
        """The canary's value (and the stable track's, when asked), no data, or an error; never raises."""

    @abstractmethod
    def is_online(self) -> bool:
        """Whether the server answers at all: a cheap check, not a measurement."""

    @abstractmethod
    def close(self) -> None:
        """Releases connections."""
