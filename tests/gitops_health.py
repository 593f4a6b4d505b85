"""GitOps health checks run for real: Argo CD's Lua script in a Lua interpreter, and Flux's kstatus rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# LuaJIT speaks Lua 5.1, the dialect of the gopher-lua interpreter inside Argo CD.
from lupa.luajit21 import LuaRuntime

HEALTH_LUA = Path(__file__).resolve().parent.parent / "manifests" / "argocd" / "health.lua"
ACTIONS = HEALTH_LUA.parent / "actions"


def _to_lua(lua: LuaRuntime, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def argocd_health(obj: dict[str, Any], script: str | None = None) -> dict[str, str]:
    """What Argo CD would show for `obj`: {"status": ..., "message": ...}."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _to_lua(lua, obj)
    result = lua.execute(script or HEALTH_LUA.read_text())
    return {"status": result["status"], "message": result["message"] or ""}


def _from_lua(value: Any) -> Any:
    """A Lua table back as a dict (Lua has no lists: a table with keys 1..n becomes a list)."""
    if hasattr(value, "items"):
        items = dict(value.items())
        if items and set(items) == set(range(1, len(items) + 1)):
            return [_from_lua(items[i]) for i in range(1, len(items) + 1)]
        return {k: _from_lua(v) for k, v in items.items()}
    return value


def argocd_discover_actions(obj: dict[str, Any], script: str | None = None) -> dict[str, bool]:
    """The actions Argo CD would offer for `obj`: name -> disabled."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _to_lua(lua, obj)
    result = _from_lua(lua.execute(script or (ACTIONS / "discovery.lua").read_text()))
    return {name: bool(entry.get("disabled", False)) for name, entry in result.items()}


def argocd_run_action(obj: dict[str, Any], action: str, script: str | None = None) -> dict[str, Any]:
    """The object as Argo CD's action `action` would leave it (Argo CD then patches the live object to that)."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _to_lua(lua, obj)
    result: dict[str, Any] = _from_lua(lua.execute(script or (ACTIONS / action / "action.lua").read_text()))
    return result


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus's verdict for a custom resource (sigs.k8s.io/cli-utils pkg/kstatus/status), as Flux uses it."""
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and observed != obj["metadata"].get("generation"):
        return "InProgress"
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    if conditions.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if conditions.get("Stalled", {}).get("status") == "True":
        return "Failed"
    ready = conditions.get("Ready")
    if ready is not None:
        return "Current" if ready["status"] == "True" else "InProgress"
    return "Current"
