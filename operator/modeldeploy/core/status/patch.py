"""Status writes as true RFC 7386 merge patches, written only when something changed."""

from __future__ import annotations

from typing import Any

from modeldeploy.core.api import ModelDeploymentStatus


def _merge_diff(previous: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """An RFC 7386 merge patch turning `previous` into `wanted`: changed keys, nulls for removed ones."""
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        old = previous.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            nested = _merge_diff(old, value)
            if nested:
                patch[key] = nested
        elif key not in previous or old != value:
            patch[key] = value
    for key in previous.keys() - wanted.keys():
        patch[key] = None
    return patch


def status_patch(previous: dict[str, Any], current: ModelDeploymentStatus) -> dict[str, Any] | None:
    """A merge patch from the stored status to `current`, or None when nothing changed."""
    return _merge_diff(previous, current.model_dump(by_alias=True, exclude_none=True, mode="json")) or None
