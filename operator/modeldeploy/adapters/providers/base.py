"""What every metric provider is: the interface, its errors, and the HTTP client settings they share.

A provider is built once per tick for each distinct set of settings (`build`), answers `measure` for each metric
it serves with a value, no data, or an error (never an exception) within one deadline (`fetch` bounds every
request and every byte of its answer by it), and says whether its server answers at all (`is_online`).
Credentials are read through `Context` from Secrets and ConfigMaps in the ModelDeployment's namespace, when the
provider is built; tokens lose surrounding whitespace and are refused, naming the Secret and key, when they
cannot be sent. They go into the HTTP client and are never logged.
"""

from __future__ import annotations

import logging
import ssl
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx
from kubernetes.client.exceptions import ApiException

from modeldeploy.adapters.redaction import CredentialError, credential
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

    def credential(self, ref: SecretKey, *, spaces: bool = False) -> str:
        """A token (or, with `spaces`, a header value) from a Secret: surrounding whitespace removed, and
        refused with a message naming the Secret and key when it cannot be sent as it is."""
        return self.checked(self.secret_value(ref), f"key {ref.key!r} of Secret {self.namespace}/{ref.name}", spaces)

    @staticmethod
    def checked(value: str, where: str, spaces: bool = False) -> str:
        try:
            return credential(value, where, spaces=spaces)
        except CredentialError as error:
            raise ProviderError(str(error)) from error

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
            out[header.name] = context.credential(header.value_from.secret_key_ref, spaces=True)
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


MAX_ANSWER_BYTES = 10 * 2**20
"""An answer larger than this is an error, not something to hold in memory: one number, or one histogram, is a
few kilobytes."""


class DeadlineExceededError(Exception):
    """No complete answer before the deadline."""


@dataclass(frozen=True)
class Deadline:
    """One wall-clock budget for everything a measurement sends and reads."""

    seconds: float
    at: float = field(default=0.0)

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def message(self) -> str:
        return f"no answer within {self.seconds:g}s"


def fetch(client: httpx.Client, method: str, url: str | httpx.URL, deadline: Deadline, **kwargs: Any) -> httpx.Response:
    """One request whose connection, upload and every byte of the answer fit in `deadline`.

    httpx's timeout bounds each read; a server that trickles its answer a byte at a time would hold a request
    for as long as it likes. Here the body is streamed and the deadline checked after every chunk (and each read
    waits no longer than the time that was left when the request started). DeadlineExceededError when time runs out,
    ProviderError for an answer above MAX_ANSWER_BYTES; httpx.HTTPError for the rest."""
    remaining = deadline.remaining()
    if remaining <= 0:
        raise DeadlineExceededError(deadline.message())
    try:
        with client.stream(method, url, timeout=httpx.Timeout(remaining), **kwargs) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise ProviderError(f"the answer is larger than {MAX_ANSWER_BYTES // 2**20} MiB")
                chunks.append(chunk)
                if deadline.remaining() <= 0:
                    raise DeadlineExceededError(deadline.message())
    except httpx.TimeoutException as error:
        if deadline.remaining() <= 0.05:
            raise DeadlineExceededError(deadline.message()) from error
        raise
    # The body is decoded already: the copy must not say it is compressed, nor give the compressed length.
    dropped = ("content-encoding", "content-length")
    kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in dropped]
    return httpx.Response(response.status_code, headers=kept, content=b"".join(chunks), request=response.request)


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
    def measure(self, query: MetricQuery, deadline: Deadline) -> Raw:
        """The canary's value (and the stable track's, when asked), no data, or an error, all within `deadline`;
        never raises."""

    @abstractmethod
    def is_online(self) -> bool:
        """Whether the server answers at all: a cheap check, not a measurement."""

    @abstractmethod
    def close(self) -> None:
        """Releases connections."""
