"""Registry sources at reconcile time: when to ask the registry, what to keep when it cannot answer.

- A `models:/<name>/<version>` source is resolved once and then pinned: no more registry calls.
- A `models:/<name>@<alias>` source is looked up again every `pollInterval` (plus up to 10% jitter, so that many
  objects do not ask at once); a move gives a new pin, so a new revision and a canary, with no spec change.
- A registry that cannot answer leaves the pin (and so the pods) as it is: ModelResolved=False says why, and
  it is asked again with backoff. Nothing is rolled back because of it.

The schedule lives in memory: after a restart each alias source is asked once, then on its interval.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from kubernetes.client.exceptions import ApiException

from modeldeploy.adapters import metrics
from modeldeploy.adapters.redaction import CredentialError, credential
from modeldeploy.adapters.registries.mlflow import MlflowClient, RegistryError
from modeldeploy.core.api import HistoryEntry, MlflowRegistry, ModelDeploymentSpec, SourceStatus, parse_duration
from modeldeploy.core.source import pin
from modeldeploy.core.status import SourceReport

log = logging.getLogger("modeldeploy.sources")

Key = tuple[str, str]
FIRST_RETRY_SECONDS = 5.0
JITTER = 0.1
OUTCOMES_TAGGED = ("Promoted", "RolledBack")
T = TypeVar("T")


class SecretReader(Protocol):
    """What the resolver needs of the Kubernetes adapter."""

    def read_secret(self, namespace: str, name: str) -> dict[str, str]: ...


@dataclass(frozen=True)
class Resolution:
    source: SourceStatus | None
    """The pin to serve: new, kept, or None when nothing was ever resolved."""
    report: SourceReport
    look_again: float | None
    """Seconds until the registry should be asked again; None for a pinned version."""


ClientFactory = Callable[[MlflowRegistry, dict[str, str]], MlflowClient]


class SourceResolver:
    def __init__(
        self,
        secrets: SecretReader,
        client: ClientFactory = MlflowClient,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.secrets = secrets
        self.client = client
        self.clock = clock
        self.jitter = jitter
        self._due: dict[Key, float] = {}
        self._failures: dict[Key, int] = {}

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)
        self._failures.pop(key, None)

    def resolve(self, key: Key, spec: ModelDeploymentSpec, stored: SourceStatus | None, now: datetime) -> Resolution:
        reference = spec.model.registry_reference
        registry = spec.model.registry
        assert reference is not None
        assert registry is not None
        pinned = stored if stored is not None and stored.uri == spec.model.uri else None
        interval = parse_duration(registry.mlflow.poll_interval)
        if pinned is not None and (reference.alias is None or self.clock() < self._due.get(key, 0.0)):
            return Resolution(pinned, _resolved(pinned), self._wait(key) if reference.alias else None)
        try:
            answer = self._ask(key[0], registry.mlflow, lambda client: client.resolve(reference))
        except RegistryError as error:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(interval, FIRST_RETRY_SECONDS * 2 ** (failures - 1))
            self._due[key] = self.clock() + delay
            keeping = f"; still serving the pinned version {pinned.version}" if pinned else ""
            return Resolution(
                pinned, SourceReport(False, error.reason, f"{spec.model.uri}: {error.message}{keeping}"), delay
            )
        self._failures.pop(key, None)
        self._due[key] = self.clock() + interval * (1 + JITTER * self.jitter())
        source = pin(spec, answer.version, answer.download_uri, answer.run_id, pinned, now)
        return Resolution(source, _resolved(source), self._wait(key) if reference.alias else None)

    def tag_outcomes(self, namespace: str, spec: ModelDeploymentSpec, ended: list[HistoryEntry]) -> None:
        """Tags each registry version whose canary just ended with its outcome; failures are logged, not raised."""
        registry = spec.model.registry
        reference = spec.model.registry_reference
        if registry is None or reference is None or not registry.mlflow.tag_outcome:
            return
        for entry in ended:
            if entry.outcome not in OUTCOMES_TAGGED or entry.model.source is None:
                continue
            version = entry.model.version
            tags = {"modeldeploy.outcome": entry.outcome, "modeldeploy.reason": entry.reason or entry.outcome}

            def tag(client: MlflowClient, version: str = version, tags: dict[str, str] = tags) -> None:
                client.tag(reference.name, version, tags)

            try:
                self._ask(namespace, registry.mlflow, tag, "tag")
            except RegistryError as error:
                log.warning("Could not tag %s version %s: %s", reference.name, version, error.message)

    def _wait(self, key: Key) -> float:
        return max(0.0, self._due.get(key, 0.0) - self.clock())

    def _ask(
        self, namespace: str, settings: MlflowRegistry, call: Callable[[MlflowClient], T], operation: str = "resolve"
    ) -> T:
        credentials: dict[str, str] = {}
        if settings.secret_name:
            try:
                credentials = self.secrets.read_secret(namespace, settings.secret_name)
            except ApiException as error:
                metrics.REGISTRY_REQUESTS.labels(operation=operation, result="SecretUnreadable").inc()
                raise RegistryError(
                    "SecretUnreadable", f"cannot read Secret {namespace}/{settings.secret_name}: {error.reason}"
                ) from error
            try:
                credentials = _checked(credentials, f"Secret {namespace}/{settings.secret_name}")
            except CredentialError as error:
                metrics.REGISTRY_REQUESTS.labels(operation=operation, result="SecretUnreadable").inc()
                raise RegistryError("SecretUnreadable", str(error)) from error
        client = self.client(settings, credentials)
        try:
            result = call(client)
        except RegistryError as error:
            metrics.REGISTRY_REQUESTS.labels(operation=operation, result=error.reason).inc()
            raise
        finally:
            client.close()
        metrics.REGISTRY_REQUESTS.labels(operation=operation, result="ok").inc()
        return result


def _checked(credentials: dict[str, str], secret: str) -> dict[str, str]:
    """The MLflow credentials with surrounding whitespace removed; CredentialError for one that cannot be sent."""
    out = dict(credentials)
    checked = {"MLFLOW_TRACKING_TOKEN": False, "MLFLOW_TRACKING_USERNAME": False, "MLFLOW_TRACKING_PASSWORD": True}
    for key, spaces in checked.items():
        if out.get(key, "").strip():
            out[key] = credential(out[key], f"key {key!r} of {secret}", spaces=spaces)
    return out


def _resolved(source: SourceStatus) -> SourceReport:
    return SourceReport(True, "Resolved", f"{source.uri} resolves to version {source.version} ({source.download_uri})")
