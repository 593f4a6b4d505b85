"""What `status`, `history` and `list` show a person: rich renderables built from the objects' JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import yaml
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table

from modeldeploy.core.api import Outcome
from modeldeploy.core.api.base import parse_duration
from modeldeploy.core.api.rollout import default_steps
from modeldeploy.core.status.clock import parse_time

console = Console()
OUTPUT_FORMATS = ("json", "yaml")


def dump(obj: Any, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=2)
    return yaml.safe_dump(obj, sort_keys=False)


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "-"
    try:
        seconds = int((now - parse_time(stamp)).total_seconds())
    except ValueError:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def pause_left(md: dict[str, Any], now: datetime) -> float | None:
    """Seconds left in the canary's current timed pause step; None when it is not in one."""
    canary = (md.get("status") or {}).get("canary") or {}
    if not canary or canary.get("phase") == "Promoting":
        return None
    rollout = (md.get("spec") or {}).get("rollout") or {}
    steps = rollout.get("steps")
    if steps is None:
        steps = [s.model_dump(by_alias=True, exclude_none=True) for s in default_steps()]
    index = int(canary.get("stepIndex", 0))
    if index >= len(steps):
        return None
    duration = (steps[index].get("pause") or {}).get("duration")
    if not duration or not canary.get("stepStartedAt"):
        return None
    elapsed = (now - parse_time(canary["stepStartedAt"])).total_seconds()
    return max(parse_duration(duration) - elapsed, 0.0)


def status_view(
    md: dict[str, Any],
    events: list[dict[str, Any]] | None = None,
    pods: list[dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> Panel:
    now = now or datetime.now(UTC)
    status = md.get("status") or {}
    spec = md.get("spec") or {}
    name = f"{md['metadata']['namespace']}/{md['metadata']['name']}"
    tracks = Table("", "stable", "canary", title=None, expand=True)
    stable = status.get("stable") or {}
    canary = status.get("canary") or {}
    tracks.add_row("revision", stable.get("revision", "-"), canary.get("revision", "-"))
    tracks.add_row(
        "model version",
        (stable.get("model") or {}).get("version", "-"),
        (canary.get("model") or {}).get("version", "-"),
    )
    tracks.add_row(
        "pods ready",
        f"{status.get('readyReplicas', 0)}/{status.get('replicas', 0)}",
        f"{canary.get('readyReplicas', 0)}/{canary.get('replicas', 0)}" if canary else "-",
    )
    tracks.add_row(
        "weight",
        f"{100 - canary.get('actualWeight', 0)}%" if canary else "100%",
        f"{canary.get('actualWeight', 0)}% (wanted {canary.get('desiredWeight', 0)}%)" if canary else "-",
    )
    parts: list[Any] = [
        f"phase [bold]{status.get('phase', '-')}[/]   router {(spec.get('traffic') or {}).get('router', 'replicas')}",
        tracks,
    ]
    if canary:
        count = max(canary.get("stepCount", 0), 1)
        done = min(canary.get("stepIndex", 0), count)
        left = pause_left(md, now)
        pause = f", pause {left:.0f}s left" if left is not None else ""
        parts.append(f"canary {canary.get('phase')}: step {min(done + 1, count)}/{count}{pause}")
        parts.append(ProgressBar(total=100, completed=canary.get("actualWeight", 0), width=60))
    bake = status.get("bake")
    if bake:
        parts.append(bake_line(bake, now))
    analysis = status.get("analysis") or {}
    if analysis.get("metrics"):
        colours = {"Successful": "green", "Failed": "red", "Error": "magenta", "NoData": "yellow"}
        metrics = Table(
            "metric",
            "result",
            "canary",
            "stable",
            "bound",
            "message",
            expand=True,
            title=f"analysis of {analysis.get('revision')}: failures {analysis.get('failures', 0)}, "
            f"rollback within {analysis.get('timeToRollbackSeconds', 0):g}s of a breach",
        )
        for metric in analysis["metrics"]:
            if not metric.get("measurements"):
                continue
            last = metric["measurements"][-1]
            colour = colours.get(last["result"], "white")

            def number(value: Any) -> str:
                return "-" if value is None else f"{value:.4g}"

            metrics.add_row(
                metric["name"],
                f"[{colour}]{last['result']}[/]",
                number(last.get("value")),
                number(last.get("stableValue")),
                last.get("bound", ""),
                last.get("message", ""),
            )
        parts.append(metrics)
    conditions = Table("condition", "status", "reason", "message", expand=True)
    for c in status.get("conditions") or []:
        bad = (c["type"] == "Degraded") == (c["status"] == "True")
        colour = "red" if bad and c["type"] == "Degraded" else ("green" if c["status"] == "True" else "yellow")
        conditions.add_row(c["type"], f"[{colour}]{c['status']}[/]", c.get("reason", ""), c.get("message", ""))
    parts.append(conditions)
    rollback = status.get("lastRollback")
    if rollback:
        parts.append(
            f"[red]last rollback[/] {rollback['at']}: revision {rollback['revision']} "
            f"({rollback['reason']}): {rollback['message']}"
        )
    if pods:
        parts.append(pods_table(pods, now))
    if events:
        parts.append(events_table(events, now))
    return Panel(Group(*parts), title=f"ModelDeployment {name}")


def bake_line(bake: dict[str, Any], now: datetime) -> str:
    """The bake after a promotion: what bakes, the time left, and the warm previous revision."""
    previous = bake["previous"]
    warm = f"revision {previous['revision']} warm on {bake.get('readyWarmReplicas', 0)}/{bake['warmReplicas']} pods"
    if bake["phase"] == "Reverting":
        return (
            f"[red]bake failed[/]: revision {bake['revision']}; {bake.get('weight', 0)}% of traffic on {warm}, "
            "the stable track rolls back to it"
        )
    left = max(0, round((parse_time(bake["endsAt"]) - now).total_seconds()))
    return f"[cyan]baking[/] revision {bake['revision']}: {left}s left (until {bake['endsAt']}); {warm}"


def pods_table(pods: list[dict[str, Any]], now: datetime) -> Table:
    table = Table("pod", "track", "revision", "ready", "status", "restarts", "age", title="pods", expand=True)
    for pod in pods:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        ready = sum(1 for c in statuses if c.get("ready"))
        table.add_row(
            meta.get("name", "-"),
            labels.get("modeldeploy.io/track", "-"),
            labels.get("modeldeploy.io/revision", "-"),
            f"{ready}/{len(statuses)}",
            (pod.get("status") or {}).get("phase", "-"),
            str(sum(int(c.get("restartCount") or 0) for c in statuses)),
            _age(meta.get("creationTimestamp"), now),
        )
    return table


def events_table(events: list[dict[str, Any]], now: datetime) -> Table:
    table = Table("age", "type", "reason", "message", title="recent events", expand=True)
    for event in events:
        colour = "yellow" if event.get("type") == "Warning" else "white"
        table.add_row(
            _age(event.get("lastTimestamp") or event.get("eventTime"), now),
            f"[{colour}]{event.get('type', '')}[/]",
            event.get("reason", ""),
            event.get("message", ""),
        )
    return table


OUTCOME_COLOURS: dict[Outcome, str] = {
    "Deployed": "green",
    "Promoted": "green",
    "Superseded": "yellow",
    "RolledBack": "red",
    "Aborted": "red",
}


def history_table(md: dict[str, Any]) -> Table:
    table = Table("revision", "model version", "outcome", "started", "finished", "reason", expand=True)
    for entry in (md.get("status") or {}).get("history") or []:
        colour = OUTCOME_COLOURS.get(entry["outcome"], "white")
        table.add_row(
            entry["revision"],
            entry["model"]["version"],
            f"[{colour}]{entry['outcome']}[/]",
            entry["startedAt"],
            entry["finishedAt"],
            ": ".join(part for part in (entry.get("reason"), entry.get("message")) if part),
        )
    return table


def list_table(items: list[dict[str, Any]], all_namespaces: bool, wide: bool, now: datetime | None = None) -> Table:
    """One row per ModelDeployment, like `kubectl get`; wide adds revisions, router, step and the Ready message."""
    now = now or datetime.now(UTC)
    columns = ["namespace"] if all_namespaces else []
    columns += ["name", "phase", "stable", "canary", "weight", "ready", "age"]
    if wide:
        columns += ["revision", "router", "step", "message"]
    table = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for md in items:
        meta = md.get("metadata") or {}
        spec = md.get("spec") or {}
        status = md.get("status") or {}
        stable = status.get("stable") or {}
        canary = status.get("canary") or {}
        colour = {"Ready": "green", "Degraded": "red", "Paused": "yellow"}.get(status.get("phase", ""), "white")
        row = [meta.get("namespace", "")] if all_namespaces else []
        row += [
            meta.get("name", ""),
            f"[{colour}]{status.get('phase', 'Pending')}[/]",
            (stable.get("model") or {}).get("version", "-"),
            (canary.get("model") or {}).get("version", "-") if canary else "-",
            f"{canary.get('actualWeight', 0)}%" if canary else "-",
            f"{status.get('readyReplicas', 0)}/{status.get('replicas', 0)}",
            _age(meta.get("creationTimestamp"), now),
        ]
        if wide:
            ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            step = f"{min(canary.get('stepIndex', 0) + 1, canary.get('stepCount', 0))}/{canary.get('stepCount', 0)}"
            row += [
                stable.get("revision", "-"),
                (spec.get("traffic") or {}).get("router", "replicas"),
                step if canary else "-",
                ready.get("message", ""),
            ]
        table.add_row(*row)
    return table
