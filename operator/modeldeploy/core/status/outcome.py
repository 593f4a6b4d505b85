"""The outcome of a rollout as a pipeline sees it: read from the object's generation, conditions and history.

A status is evidence only once the operator has observed the generation that was applied: a status written for
an earlier spec (Ready from the previous revision, or the last rollback) must never be taken as the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modeldeploy.core.status.conditions import DEGRADED, INVALID_SPEC, READY, ROLLED_BACK

RolloutOutcome = Literal["Succeeded", "RolledBack", "TimedOut", "InvalidSpec", "Stalled"]

# What `modeldeploy deploy --wait` and `status --timeout` exit with; the SDK's results carry the same codes.
EXIT_CODES: dict[RolloutOutcome, int] = {
    "Succeeded": 0,
    "RolledBack": 1,
    "TimedOut": 2,
    "InvalidSpec": 3,
    "Stalled": 3,
}


@dataclass(frozen=True)
class Verdict:
    outcome: RolloutOutcome
    reason: str


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in status.get("conditions") or []:
        if isinstance(item, dict) and item.get("type") == type_:
            return item
    return {}


def observed(obj: dict[str, Any], generation: int | None = None) -> bool:
    """The operator has written a status for `generation` (by default the object's current one)."""
    want = generation if generation is not None else int((obj.get("metadata") or {}).get("generation") or 0)
    status = obj.get("status") or {}
    seen = status.get("observedGeneration")
    ready_seen = _condition(status, READY).get("observedGeneration")
    return isinstance(seen, int) and seen >= want and (ready_seen is None or ready_seen >= want)


def _version(entry: dict[str, Any] | None) -> str:
    return str(((entry or {}).get("model") or {}).get("version", "?"))


def verdict(obj: dict[str, Any], generation: int | None = None) -> Verdict | None:
    """The final outcome for `generation` of this ModelDeployment, or None while it is still being decided."""
    if not observed(obj, generation):
        return None
    status = obj.get("status") or {}
    target = status.get("targetRevision")
    bake = status.get("bake") or {}
    if bake.get("phase") == "Reverting" and status.get("rejectedRevision") == target:
        return _rolled_back(status, "BakeFailed", str(bake.get("revision")))
    if bake.get("phase") == "Baking":  # promoted, but a breach while it bakes still rolls it back
        return None
    degraded = _condition(status, DEGRADED)
    if degraded.get("status") == "True":
        reason = str(degraded.get("reason") or "")
        message = str(degraded.get("message") or "")
        if reason == ROLLED_BACK:
            if status.get("rejectedRevision") != target:
                return None
            return _rolled_back(status, reason, message)
        if reason == INVALID_SPEC:
            return Verdict("InvalidSpec", f"invalid spec: {message}")
        return Verdict("Stalled", f"stalled ({reason}): {message}")
    ready = _condition(status, READY)
    stable = status.get("stable") or {}
    if ready.get("status") == "True" and not status.get("canary") and target and stable.get("revision") == target:
        last = (status.get("history") or [{}])[-1]
        if last.get("revision") == target and last.get("outcome") == "Promoted":
            return Verdict("Succeeded", f"revision {target} (version {_version(stable)}) promoted")
        return Verdict("Succeeded", f"revision {target} (version {_version(stable)}) serving: {ready.get('message')}")
    return None


def _rolled_back(status: dict[str, Any], reason: str, message: str) -> Verdict:
    rollback = status.get("lastRollback") or {}
    verb = "aborted" if rollback.get("reason") == "Aborted" else "rolled back"
    return Verdict(
        "RolledBack",
        f"revision {status.get('targetRevision')} (version {_version(rollback)}) was {verb} "
        f"({rollback.get('reason', reason)}): {rollback.get('message', message)}",
    )


def progress(obj: dict[str, Any]) -> str:
    """One line on where the rollout is, for plain output and for the reason of a timeout."""
    status = obj.get("status") or {}
    ready = _condition(status, READY)
    phase = status.get("phase") or "Pending"
    message = ready.get("message") or "waiting for the operator to observe the spec"
    return f"{phase}: {message}"
