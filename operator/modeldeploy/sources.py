"""Registry sources at reconcile time: when to ask the registry, what to keep when it cannot answer.

- A `models:/<name>/<version>` source is resolved once and then pinned: no more registry calls.
- A `models:/<name>@<alias>` source is looked up again every `pollInterval` (plus up to 10% jitter, so that many
  objects do not ask at once); a move gives a new pin, so a new revision and a canary, with no spec change.
- A registry that cannot answer leaves the pin (and so the pods) as it is: ModelResolved=False says why, and
  it is asked again with backoff. Nothing is rolled back because of it.
- The registry is asked off the reconcile workers (a `BackgroundRunner`): a slow or blackholed registry delays
  neither another object nor its own object's manual actions. Until the first answer, nothing is pinned and the
  object waits (ModelResolved=False, reason Resolving); later lookups keep serving the pin while they run.

The schedule lives in memory: after a restart each alias source is asked once, then on its interval.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from kubernetes.client.exceptions import ApiException

from modeldeploy.adapters import metrics
from modeldeploy.adapters.background import InlineRunner, Runner
from modeldeploy.adapters.redaction import CredentialError, credential
from modeldeploy.adapters.registries.mlflow import TIMEOUT_SECONDS, MlflowClient, ModelVersion, RegistryError
from modeldeploy.core.api import (
    HistoryEntry,
    MlflowRegistry,
    ModelDeploymentSpec,
    RegistryReference,
    SourceStatus,
    parse_duration,
)
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
Lookup = ModelVersion | RegistryError
"""A registry lookup's outcome: the version found, or why there is none."""


class SourceResolver:
    def __init__(
        self,
        secrets: SecretReader,
        client: ClientFactory = MlflowClient,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        runner: Runner[Lookup] | None = None,
    ) -> None:
        """`runner`: where lookups run; inline by default, the operator gives a `BackgroundRunner`."""
        self.secrets = secrets
        self.client = client
        self.clock = clock
        self.jitter = jitter
        self.runner: Runner[Lookup] = runner or InlineRunner()
        self._due: dict[Key, float] = {}
        self._failures: dict[Key, int] = {}
        self._reports: dict[Key, SourceReport] = {}
        """The last lookup's report: what status keeps saying while the next lookup runs."""

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)
        self._failures.pop(key, None)
        self._reports.pop(key, None)
        self.runner.forget(key)

    def resolve(self, key: Key, spec: ModelDeploymentSpec, stored: SourceStatus | None, now: datetime) -> Resolution:
        reference = spec.model.registry_reference
        registry = spec.model.registry
        assert reference is not None
        assert registry is not None
        pinned = stored if stored is not None and stored.uri == spec.model.uri else None
        interval = parse_duration(registry.mlflow.poll_interval)
        if pinned is not None and (reference.alias is None or self.clock() < self._due.get(key, 0.0)):
            return Resolution(pinned, _resolved(pinned), self._wait(key) if reference.alias else None)
        # One lookup per due time: its answer is taken once, by whichever reconcile comes after it finished.
        fingerprint = f"{spec.model.uri}|{self._due.get(key, 0.0)}"
        answer = self.runner.take(
            key, fingerprint, lambda: self._lookup(key[0], registry.mlflow, reference), TIMEOUT_SECONDS
        )
        if answer is None:
            report = self._reports.get(key) or (
                _resolved(pinned)
                if pinned
                else SourceReport(False, "Resolving", f"{spec.model.uri}: waiting for the registry's answer")
            )
            return Resolution(pinned, report, self.runner.wait(key))
        if isinstance(answer, RegistryError):
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(interval, FIRST_RETRY_SECONDS * 2 ** (failures - 1))
            self._due[key] = self.clock() + delay
            keeping = f"; still serving the pinned version {pinned.version}" if pinned else ""
            report = self._reports[key] = SourceReport(
                False, answer.reason, f"{spec.model.uri}: {answer.message}{keeping}"
            )
            return Resolution(pinned, report, delay)
        self._failures.pop(key, None)
        self._due[key] = self.clock() + interval * (1 + JITTER * self.jitter())
        source = pin(spec, answer.version, answer.download_uri, answer.run_id, pinned, now)
        report = self._reports[key] = _resolved(source)
        return Resolution(source, report, self._wait(key) if reference.alias else None)

    def tag_outcomes(self, namespace: str, spec: ModelDeploymentSpec, ended: list[HistoryEntry]) -> None:
        """Tags each registry version whose canary just ended with its outcome, in the background; failures are
        logged, not raised."""
        registry = spec.model.registry
        reference = spec.model.registry_reference
        if registry is None or reference is None or not registry.mlflow.tag_outcome:
            return
        for entry in ended:
            if entry.outcome not in OUTCOMES_TAGGED or entry.model.source is None:
                continue
            tags = {"modeldeploy.outcome": entry.outcome, "modeldeploy.reason": entry.reason or entry.outcome}
            self.runner.fire(
                functools.partial(self._tag, namespace, registry.mlflow, reference.name, entry.model.version, tags)
            )

    def _tag(self, namespace: str, settings: MlflowRegistry, name: str, version: str, tags: dict[str, str]) -> None:
        try:
            self._ask(namespace, settings, lambda client: client.tag(name, version, tags), "tag")
        except RegistryError as error:
            log.warning("Could not tag version %s in the registry: %s", version, error.message)

    def _lookup(self, namespace: str, settings: MlflowRegistry, reference: RegistryReference) -> Lookup:
        try:
            return self._ask(namespace, settings, lambda client: client.resolve(reference))
        except RegistryError as error:
            return error

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
