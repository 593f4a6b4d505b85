"""Manual controls and status views: `modeldeploy promote|abort|retry|pause|resume|status|history`.

Controls are annotations on the ModelDeployment. GitOps tools (Argo CD, Flux) leave annotations they did not
write alone, and Git never has to express them. The operator records each action it handled in
`status.lastAction`, so the command can report the operator's answer.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table

from modeldeploy.core import api
from modeldeploy.core.api import Outcome
from modeldeploy.core.naming import ACTION_ANNOTATION, PAUSED_ANNOTATION
from modeldeploy.core.status import parse_time

console = Console()


class ControlError(RuntimeError):
    pass


def connect(context: str | None, kubeconfig: str | None) -> client.CustomObjectsApi:
    try:
        config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    except config.ConfigException as error:
        raise ControlError(f"cannot load the kubeconfig: {error}") from error
    return client.CustomObjectsApi()


def default_namespace(context: str | None, kubeconfig: str | None) -> str:
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            active = next((c for c in contexts if c["name"] == context), active)
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, OSError):
        return "default"


def get(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)  # type: ignore[assignment]
        return body
    except ApiException as error:
        if error.status == 404:
            raise ControlError(f"ModelDeployment {namespace}/{name} not found") from error
        raise ControlError(f"cannot read ModelDeployment {namespace}/{name}: {error.reason}") from error


def _merge_patch(custom: client.CustomObjectsApi, namespace: str, name: str, body: dict[str, Any]) -> None:
    try:
        custom.patch_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.PLURAL, name, body, _content_type="application/merge-patch+json"
        )
    except ApiException as error:
        raise ControlError(f"cannot change ModelDeployment {namespace}/{name}: {error.reason}") from error


def _annotate(custom: client.CustomObjectsApi, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
    _merge_patch(custom, namespace, name, {"metadata": {"annotations": annotations}})


def whoami() -> str | None:
    """The user the API server knows us as (SelfSubjectReview, as `kubectl auth whoami`); None if it cannot say."""
    try:
        review = client.AuthenticationV1Api().create_self_subject_review(
            client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
        )
    except (ApiException, OSError, ValueError):
        return None
    user = review.status.user_info if review.status else None
    return str(user.username) if user and user.username else None


def request(custom: client.CustomObjectsApi, namespace: str, name: str, action: str, wait: float) -> str:
    """Asks the operator for an action, naming who asks, and waits up to `wait` seconds for its answer."""
    get(custom, namespace, name)
    action_id = uuid.uuid4().hex[:12]
    body = {"action": action, "id": action_id, "by": whoami()}
    _annotate(custom, namespace, name, {ACTION_ANNOTATION: json.dumps({k: v for k, v in body.items() if v})})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        last = (get(custom, namespace, name).get("status") or {}).get("lastAction") or {}
        if last.get("id") == action_id:
            return str(last.get("result") or "done")
        time.sleep(0.5)
    return f"requested; the operator has not answered within {wait:.0f}s (is it running?)"


def previous_good(md: dict[str, Any]) -> dict[str, Any] | None:
    """The newest history entry that served well (Deployed or Promoted) and is not the current stable."""
    status = md.get("status") or {}
    current = (status.get("stable") or {}).get("revision")
    for entry in reversed(status.get("history") or []):
        if entry["outcome"] in ("Deployed", "Promoted") and entry["revision"] != current:
            return entry  # type: ignore[no-any-return]
    return None


def undo(custom: client.CustomObjectsApi, namespace: str, name: str) -> str:
    """Sets spec.model back to the previous good revision's model; it then goes through a canary."""
    md = get(custom, namespace, name)
    entry = previous_good(md)
    if entry is None:
        raise ControlError(f"ModelDeployment {namespace}/{name} has no earlier good revision in its history")
    model = entry["model"]
    _merge_patch(custom, namespace, name, {"spec": {"model": {k: model[k] for k in ("name", "version", "uri")}}})
    return (
        f"spec.model set back to version {model['version']} ({model['uri']}), last good as revision "
        f"{entry['revision']}; it goes through a canary. Under GitOps, change Git instead."
    )


def set_paused(custom: client.CustomObjectsApi, namespace: str, name: str, paused: bool) -> None:
    get(custom, namespace, name)
    _annotate(custom, namespace, name, {PAUSED_ANNOTATION: "true" if paused else None})


def dump(obj: Any, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=2)
    return yaml.safe_dump(obj, sort_keys=False)


def status_view(md: dict[str, Any]) -> Panel:
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
        parts.append(f"canary {canary.get('phase')}: step {min(done + 1, count)}/{count}")
        parts.append(ProgressBar(total=100, completed=canary.get("actualWeight", 0), width=60))
    bake = status.get("bake")
    if bake:
        parts.append(bake_line(bake, datetime.now(UTC)))
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
            entry.get("message") or "",
        )
    return table
