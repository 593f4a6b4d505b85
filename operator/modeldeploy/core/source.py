"""Registry sources: pinning a `models:/` spec to the registry's answer, and what the pods then serve.

The operator asks the registry (adapters/registries) and keeps the answer in `status.source`; everything
downstream (the pod template, its revision, status and history) sees a spec whose model is that pinned
version and download URI. An alias that moves gives a new pin, so a new revision and a canary; a registry
that cannot answer leaves the pin, and so the pods, as they are.
"""

from __future__ import annotations

from datetime import datetime

from modeldeploy.core.api import ModelDeploymentSpec, ServedModel, SourceStatus
from modeldeploy.core.presets import PRESETS
from modeldeploy.core.status.clock import now_rfc3339


def pin(
    spec: ModelDeploymentSpec,
    version: str,
    download_uri: str,
    run_id: str | None,
    previous: SourceStatus | None,
    now: datetime,
) -> SourceStatus:
    """The status.source for a registry answer; `resolvedAt` moves only when the answer changes."""
    unchanged = (
        previous is not None
        and previous.uri == spec.model.uri
        and (previous.version, previous.download_uri, previous.run_id) == (version, download_uri, run_id)
    )
    return SourceStatus(
        uri=spec.model.uri,
        version=version,
        download_uri=download_uri,
        run_id=run_id,
        resolved_at=previous.resolved_at if unchanged and previous is not None else now_rfc3339(now),
    )


def pinned_spec(spec: ModelDeploymentSpec, source: SourceStatus | None) -> ModelDeploymentSpec:
    """The spec the pods are rendered from: a models:/ source replaced by its pinned version and download URI."""
    if spec.model.registry_reference is None:
        return spec
    if source is None or source.uri != spec.model.uri:
        raise ValueError(f"{spec.model.uri} is not resolved yet")
    model = spec.model.model_copy(update={"version": source.version, "uri": source.download_uri})
    return spec.model_copy(update={"model": model})


def served_model(spec: ModelDeploymentSpec, source: SourceStatus | None, digest: str | None = None) -> ServedModel:
    """What status records as served for a (pinned) spec: version, URI, where it came from, and its digest."""
    model = spec.model
    registry = source is not None and model.registry is not None
    return ServedModel(
        name=model.name,
        version=model.concrete_version,
        uri=model.uri,
        source=source.uri if registry and source is not None else None,
        run_id=source.run_id if registry and source is not None else None,
        digest=digest or model.digest,
        image=spec.runtime.image or PRESETS[spec.runtime.preset].image,
    )
