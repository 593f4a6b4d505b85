"""Who changed a child: the operator (its desired object changed), or someone else (the live object drifted, or
was deleted). Pure and in memory; the reconcile asks before each write and reports repairs as Events.

A child counts as known once a reconcile has seen it live (not merely written it: a read that lags behind our own
write must never look like a deletion or an edit by someone else). For each known child the memory keeps a
digest of what we wanted it to be and the resourceVersions we saw or wrote. Then:

- a known child that is missing was deleted by someone else: recreating it is a `ChildRecreated`;
- a known child that differs from what we want, while what we want has not changed and the live object is not a
  version we saw or wrote, was changed by someone else: setting it back is a `ChildRepaired`.

After a restart nothing is known yet; the stable and canary Deployments that the last status shows running are
then taken as known, so deleting one while the operator was down is still reported.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Literal

from modeldeploy.core.compare import contains

ChildKey = tuple[str, str]
"""(kind, name)."""
ObjectKey = tuple[str, str]
"""(namespace, name) of the ModelDeployment."""
MAX_DIFFERENCES = 3


@dataclass(frozen=True)
class Repair:
    action: Literal["recreated", "restored"]
    reason: Literal["ChildRecreated", "ChildRepaired"]
    kind: str
    name: str
    message: str


def digest(obj: dict[str, Any]) -> int:
    return hash(json.dumps(obj, sort_keys=True, separators=(",", ":")))


def _version(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def _show(value: Any) -> str:
    text = "absent" if value is _ABSENT else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else f"{text[:37]}..."


_ABSENT = object()


def differences(live: Any, desired: Any, path: str = "") -> list[str]:
    """Where `live` lacks what `desired` has, as `path live → desired` (e.g.
    `spec.rules[0].backendRefs[1].weight 50 → 25`), with `contains`' notion of equal."""
    if contains(live, desired):
        return []
    if isinstance(desired, dict) and isinstance(live, dict):
        out = []
        for key, value in desired.items():
            inner = f"{path}.{key}" if path else str(key)
            out += differences(live[key], value, inner) if key in live else [f"{inner} absent → {_show(value)}"]
        return out
    if isinstance(desired, list) and isinstance(live, list) and len(live) == len(desired):
        out = []
        for index, (lv, dv) in enumerate(zip(live, desired, strict=True)):
            out += differences(lv, dv, f"{path}[{index}]")
        return out
    if isinstance(desired, list) and isinstance(live, list):
        return [f"{path} {len(live)} items → {len(desired)}"]
    return [f"{path} {_show(live)} → {_show(desired)}"]


def describe(live: dict[str, Any], desired: dict[str, Any]) -> str:
    found = differences({k: v for k, v in live.items() if k != "status"}, desired)
    shown = "; ".join(found[:MAX_DIFFERENCES])
    more = len(found) - MAX_DIFFERENCES
    return shown + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class _Seen:
    digest: int
    versions: tuple[str, ...]


class ChildMemory:
    """Per ModelDeployment (by namespace/name and uid, so a namesake starts over): its known children."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[ObjectKey, tuple[str, dict[ChildKey, _Seen]]] = {}

    def _known(self, key: ObjectKey, uid: str) -> dict[ChildKey, _Seen] | None:
        with self._lock:
            entry = self._objects.get(key)
        return entry[1] if entry is not None and entry[0] == uid else None

    def judge(
        self,
        key: ObjectKey,
        uid: str,
        desired: dict[str, Any],
        live: dict[str, Any] | None,
        existed: frozenset[ChildKey] = frozenset(),
    ) -> Repair | None:
        """Before writing `desired` over `live` (None: missing): the repair it makes, if someone else changed or
        deleted the child. `existed`: children the last status shows, used only when nothing is known yet."""
        child = (desired["kind"], desired["metadata"]["name"])
        kind, name = child
        known = self._known(key, uid)
        if live is None:
            if (known is not None and child in known) or (known is None and child in existed):
                return Repair(
                    "recreated",
                    "ChildRecreated",
                    kind,
                    name,
                    f"Recreated {kind} {name}: it was deleted by someone else",
                )
            return None
        seen = known.get(child) if known is not None else None
        if seen is None or seen.digest != digest(desired) or _version(live) in seen.versions:
            return None  # unknown, or our own change, or the version we saw or wrote
        return Repair(
            "restored",
            "ChildRepaired",
            kind,
            name,
            f"Restored {kind} {name}: it was changed by someone else ({describe(live, desired)})",
        )

    def remember(
        self,
        key: ObjectKey,
        uid: str,
        desired: list[dict[str, Any]],
        live: dict[ChildKey, dict[str, Any]],
        written: dict[ChildKey, dict[str, Any]],
        keep: set[ChildKey],
    ) -> None:
        """After a reconcile wrote what it wanted: the children it saw live are known, as it wants them now."""
        before = self._known(key, uid) or {}
        known: dict[ChildKey, _Seen] = {}
        for obj in desired:
            child = (obj["kind"], obj["metadata"]["name"])
            if child in live:
                versions = {_version(live[child]), _version(written.get(child))} - {""}
                known[child] = _Seen(digest(obj), tuple(sorted(versions)))
        for child in keep:
            if child in before and child in live:
                known[child] = before[child]
        with self._lock:
            self._objects[key] = (uid, known)

    def forget(self, key: ObjectKey) -> None:
        with self._lock:
            self._objects.pop(key, None)
