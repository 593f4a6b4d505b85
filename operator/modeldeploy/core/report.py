"""The audit report of one rollout, as data: which rollout, its window, its timeline, its metrics over time
against their bounds, its model lineage and its outcome. Pure; `modeldeploy.adapters.audit` reads the cluster and
Prometheus, and `modeldeploy.report` draws and writes the page.

A rollout is a canary in status.history (or the one in progress). What happened during it comes from three places,
each kept for a different time: Kubernetes Events (every step, weight and decision, but the API server drops them
after its event TTL, an hour by default), status (the rollout's start, end, outcome, the last few measurements and
the last manual action; kept for the last HISTORY_LIMIT rollouts) and Prometheus (the metrics, for its retention).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from modeldeploy.core.analysis import MetricQuery, Raw, evaluate, overall, psi
from modeldeploy.core.api import (
    AnalysisMetric,
    HistoryEntry,
    MeasurementResult,
    ModelDeploymentStatus,
    ServedModel,
)
from modeldeploy.core.status import parse_time

EVENT_TTL = timedelta(hours=1)
"""The API server's default --event-ttl: Events older than this are usually gone."""
IN_PROGRESS = "InProgress"
MAX_POINTS = 500
"""Steps of a range query across the window: enough for a smooth line, few enough for any Prometheus."""

Point = tuple[datetime, float]


class ReportError(Exception):
    """The report cannot be made as asked (no such rollout): one line for the user."""


@dataclass(frozen=True)
class Rollout:
    """The rollout the report is about."""

    revision: str
    model: ServedModel
    outcome: str
    """An Outcome of status.history, or InProgress."""
    started_at: datetime
    finished_at: datetime | None
    reason: str | None
    message: str | None
    stable_revision: str | None
    """The revision it was compared against, where known."""


@dataclass(frozen=True)
class EventRecord:
    """A Kubernetes Event about the ModelDeployment, as the adapter read it."""

    at: datetime
    type: str
    reason: str
    message: str
    source: str
    count: int = 1


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    what: str
    detail: str
    who: str
    severity: Literal["normal", "warning"] = "normal"
    from_: str = "Event"
    """Where it was read: Event or status."""


@dataclass(frozen=True)
class DecisionPoint:
    """A moment the operator decided something, drawn on every plot."""

    at: datetime
    label: str
    severity: Literal["normal", "warning"]


@dataclass(frozen=True)
class Tick:
    """One analysis measurement of a metric, as status recorded it."""

    at: datetime
    result: str
    value: float | None
    stable_value: float | None


@dataclass(frozen=True)
class MetricSeries:
    """One metric over the window: the canary and stable values, and the lines it was held to."""

    name: str
    bound: str
    canary: list[Point]
    stable: list[Point]
    bounds: list[tuple[str, list[Point]]]
    ticks: list[Tick]
    note: str | None = None
    """Why a series is missing (not PromQL, Prometheus unreachable, no data)."""
    kind: Literal["scalar", "histogram"] = "scalar"
    """histogram: `canary` is the drift (PSI) of the canary against stable, and `stable` is empty."""


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    step_seconds: int


@dataclass(frozen=True)
class Report:
    namespace: str
    name: str
    rollout: Rollout
    window: Window
    timeline: list[TimelineEntry]
    decisions: list[DecisionPoint]
    metrics: list[MetricSeries]
    lineage: list[tuple[str, str]]
    notes: list[str] = field(default_factory=list)
    generated_at: datetime | None = None


# -- which rollout ----------------------------------------------------------------------------------------


def select_rollout(status: ModelDeploymentStatus, revision: str | None) -> Rollout:
    """The rollout of `revision` (its newest, if it was tried more than once), or by default the one in progress,
    else the newest in the history. ReportError names the revisions there are."""
    canary = status.canary
    if canary is not None and revision in (None, canary.revision):
        return Rollout(
            revision=canary.revision,
            model=canary.model,
            outcome=IN_PROGRESS,
            started_at=parse_time(canary.started_at),
            finished_at=None,
            reason=canary.phase,
            message=f"step {min(canary.step_index + 1, canary.step_count)}/{canary.step_count}, "
            f"canary weight {canary.actual_weight}%",
            stable_revision=status.stable.revision if status.stable else None,
        )
    entries = [e for e in status.history if revision in (None, e.revision)]
    if not entries:
        known = [e.revision for e in status.history] + ([canary.revision] if canary else [])
        if revision is None:
            raise ReportError("it has no rollout yet: nothing in status.history and no canary in progress")
        listed = ", ".join(dict.fromkeys(known)) or "none"
        raise ReportError(f"no rollout of revision {revision}; revisions in its history: {listed}")
    entry = entries[-1]
    return Rollout(
        revision=entry.revision,
        model=entry.model,
        outcome=entry.outcome,
        started_at=parse_time(entry.started_at),
        finished_at=parse_time(entry.finished_at),
        reason=entry.reason,
        message=entry.message,
        stable_revision=_stable_before(status, entry),
    )


def _stable_before(status: ModelDeploymentStatus, entry: HistoryEntry) -> str | None:
    """The revision that served as stable while `entry` ran: the newest one that became stable before it."""
    index = max(i for i, e in enumerate(status.history) if e is entry)
    for earlier in reversed(status.history[:index]):
        if earlier.outcome in ("Deployed", "Promoted") and earlier.revision != entry.revision:
            return earlier.revision
    if entry.outcome != "Promoted" and status.stable is not None and status.stable.revision != entry.revision:
        return status.stable.revision  # not promoted: the stable then is still the stable now, if nothing followed
    return None


def window_of(rollout: Rollout, now: datetime) -> Window:
    """The rollout's start to its end (now while in progress), with a margin each side for context."""
    end = rollout.finished_at or now
    span = max((end - rollout.started_at).total_seconds(), 1.0)
    margin = timedelta(seconds=max(10.0, span * 0.1))
    start, end = rollout.started_at - margin, end + margin
    step = max(1, math.ceil((end - start).total_seconds() / MAX_POINTS))
    return Window(start, end, step)


# -- the timeline -----------------------------------------------------------------------------------------

OUTCOME_EVENTS = {"Promoted", "RolledBack", "Aborted", "Superseded"}


# Events carry whole seconds: within one second, the order in which the operator writes them.
ORDER = {
    "CanaryStarted": 0,
    "Retried": 0,
    "ActionHandled": 1,
    "WeightChanged": 2,
    "AnalysisNoData": 3,
    "AnalysisError": 3,
    "AnalysisFailed": 3,
    "PromotionStarted": 5,
}
LATE = 6
"""Outcomes, and anything not named above, come last within their second."""
EVENT_SLACK = timedelta(seconds=2)
"""Events are stamped in whole seconds, and a few may be written just after the status that ends the rollout."""


def timeline(
    rollout: Rollout, status: ModelDeploymentStatus, events: Sequence[EventRecord], now: datetime
) -> list[TimelineEntry]:
    """What happened during the rollout, oldest first: the Events still kept, and from status what they no longer
    show (the start, the measurements, the last manual action, the outcome)."""
    start, end = rollout.started_at - EVENT_SLACK, (rollout.finished_at or now) + EVENT_SLACK
    entries = [
        TimelineEntry(
            at=e.at,
            what=e.reason,
            detail=e.message + (f" (x{e.count})" if e.count > 1 else ""),
            who=e.source,
            severity="warning" if e.type == "Warning" else "normal",
        )
        for e in events
        # Within the slack before the start, only what names this revision: the previous rollout may have ended in
        # the same second (its RolloutCompleted) and is not part of this one.
        if start <= e.at <= end and (e.at > rollout.started_at or rollout.revision in e.message)
    ]
    reasons = {e.what for e in entries}
    if "CanaryStarted" not in reasons:
        entries.append(
            TimelineEntry(
                rollout.started_at,
                "Started",
                f"canary of revision {rollout.revision} (model {rollout.model.name} version {rollout.model.version})",
                "operator",
                from_="status",
            )
        )
    for tick in ticks_of(rollout, status):
        entries.append(
            TimelineEntry(tick.at, f"Measured: {tick.label}", tick.detail, "operator", tick.severity, "status")
        )
    action = status.last_action
    if action is not None and "ActionHandled" not in reasons:
        at = parse_time(action.at)
        if start <= at <= end:
            entries.append(
                TimelineEntry(
                    at,
                    f"Manual action: {action.action}",
                    action.result,
                    action.by or "not recorded",
                    from_="status",
                )
            )
    if rollout.finished_at is not None and not reasons & OUTCOME_EVENTS:
        entries.append(
            TimelineEntry(
                rollout.finished_at,
                rollout.outcome,
                rollout.message or "",
                "operator",
                "warning" if rollout.outcome in ("RolledBack", "Aborted") else "normal",
                "status",
            )
        )
    measured = ORDER["AnalysisFailed"]
    return sorted(entries, key=lambda e: (e.at, measured if e.what.startswith("Measured") else ORDER.get(e.what, LATE)))


@dataclass(frozen=True)
class TickSummary:
    """One analysis tick across its metrics: the overall result, and what each metric measured."""

    at: datetime
    label: str
    detail: str
    severity: Literal["normal", "warning"]


def ticks_of(rollout: Rollout, status: ModelDeploymentStatus) -> list[TickSummary]:
    """The analysis ticks status still holds for this rollout (its last few), each with its overall result."""
    analysis = status.analysis
    if analysis is None or analysis.revision != rollout.revision:
        return []
    by_time: dict[str, list[tuple[str, MeasurementResult, str]]] = {}
    for metric in analysis.metrics:
        for m in metric.measurements:
            by_time.setdefault(m.at, []).append((metric.name, m.result, m.message))
    out = []
    for at, results in sorted(by_time.items(), key=lambda item: parse_time(item[0])):
        tick = overall([r for _, r, _ in results])
        detail = "; ".join(f"{name} {result}: {message}" for name, result, message in results)
        out.append(TickSummary(parse_time(at), tick, detail, "warning" if tick == "Failed" else "normal"))
    return out


DECISION_REASONS = {
    "CanaryStarted",
    "WeightChanged",
    "AnalysisFailed",
    "PromotionStarted",
    "Promoted",
    "RolledBack",
    "Aborted",
    "Superseded",
    "ActionHandled",
    "Started",
    IN_PROGRESS,
}


def decisions(entries: Sequence[TimelineEntry]) -> list[DecisionPoint]:
    """The moments drawn on the plots: starts, weight changes, failed measurements, manual actions, the end."""
    return [
        DecisionPoint(e.at, e.what, e.severity)
        for e in entries
        if e.what in DECISION_REASONS or e.what.startswith("Manual action")
    ]


def grouped(points: Sequence[DecisionPoint], within: timedelta) -> list[DecisionPoint]:
    """Decision points this close together as one, labels joined (so that a plot's labels do not overlap); a
    warning among them makes the group a warning."""
    groups: list[list[DecisionPoint]] = []
    for point in sorted(points, key=lambda p: p.at):
        if groups and point.at - groups[-1][0].at <= within:
            groups[-1].append(point)
        else:
            groups.append([point])
    return [
        DecisionPoint(
            group[0].at,
            " / ".join(dict.fromkeys(p.label for p in group)),
            "warning" if any(p.severity == "warning" for p in group) else "normal",
        )
        for group in groups
    ]


# -- metrics over time ------------------------------------------------------------------------------------


def metric_ticks(name: str, rollout: Rollout, status: ModelDeploymentStatus) -> list[Tick]:
    analysis = status.analysis
    if analysis is None or analysis.revision != rollout.revision:
        return []
    for metric in analysis.metrics:
        if metric.name == name:
            return [Tick(parse_time(m.at), m.result, m.value, m.stable_value) for m in metric.measurements]
    return []


def scalar_points(values: Sequence[tuple[float, float]]) -> list[Point]:
    """A range query's [time, value] pairs as points; NaN (no requests) and infinities are gaps, not values."""
    return [(_at(t), v) for t, v in values if math.isfinite(v)]


def drift_points(
    canary: Mapping[float, Sequence[tuple[float, float]]],
    stable: Mapping[float, Sequence[tuple[float, float]]],
    min_samples: int,
) -> list[Point]:
    """PSI at each step, from the canary's and stable's buckets ({le: [(time, cumulative count)]}), as the
    analysis computes it at each tick (too few samples on a track: no point)."""

    def at_times(buckets: Mapping[float, Sequence[tuple[float, float]]]) -> dict[float, dict[float, float]]:
        out: dict[float, dict[float, float]] = {}
        for le, values in buckets.items():
            for t, count in values:
                out.setdefault(t, {})[le] = count
        return out

    canary_at, stable_at = at_times(canary), at_times(stable)
    points = []
    for t in sorted(set(canary_at) & set(stable_at)):
        value = psi(canary_at[t], stable_at[t], min_samples)
        if value is not None:
            points.append((_at(t), value))
    return points


def bound_lines(metric: AnalysisMetric, stable: Sequence[Point], window: Window) -> list[tuple[str, list[Point]]]:
    """The lines the canary was held to: fixed bounds across the window, relative ones from the stable values."""
    lines: list[tuple[str, list[Point]]] = []
    across = [window.start, window.end]
    if metric.min is not None:
        lines.append((f"min {metric.min:g}", [(t, metric.min) for t in across]))
    if metric.max is not None:
        lines.append((f"max {metric.max:g}", [(t, metric.max) for t in across]))
    relative = metric.relative
    if relative is not None and stable:
        if relative.max_increase is not None:
            increase = relative.max_increase
            lines.append((f"stable + {increase:g}", [(t, v + increase) for t, v in stable]))
        if relative.max_decrease is not None:
            decrease = relative.max_decrease
            lines.append((f"stable - {decrease:g}", [(t, v - decrease) for t, v in stable]))
        if relative.max_ratio is not None:
            ratio = relative.max_ratio
            lines.append((f"{ratio:g} x stable", [(t, v * ratio) for t, v in stable]))
    return lines


def describe_bound(metric: AnalysisMetric) -> str:
    """The bound as the analysis states it in each measurement, e.g. '>= 0.95 and <= stable + 0.01'."""
    return evaluate(metric, Raw(canary=None), "1970-01-01T00:00:00Z").bound


def metric_series(
    query: MetricQuery,
    canary: list[Point],
    stable: list[Point],
    rollout: Rollout,
    status: ModelDeploymentStatus,
    window: Window,
    note: str | None = None,
) -> MetricSeries:
    metric = query.metric
    return MetricSeries(
        name=metric.name,
        bound=describe_bound(metric),
        canary=canary,
        stable=stable,
        bounds=bound_lines(metric, stable, window),
        ticks=metric_ticks(metric.name, rollout, status),
        note=note,
        kind=query.kind,
    )


# -- lineage and the whole ---------------------------------------------------------------------------------


def lineage(model: ServedModel) -> list[tuple[str, str]]:
    """What was rolled out, as far as status recorded it: 'not recorded' rather than a guess."""
    unknown = "not recorded"
    return [
        ("model", model.name),
        ("version", model.version),
        ("URI", model.uri),
        ("registry source", model.source or "none (not from a registry)"),
        ("registry run id", model.run_id or unknown),
        ("digest", model.digest or unknown),
        ("image", model.image or unknown),
    ]


def notes_for(rollout: Rollout, entries: Sequence[TimelineEntry], now: datetime) -> list[str]:
    """What the reader should know about the timeline: Events that have expired."""
    notes = []
    if now - rollout.started_at > EVENT_TTL and not any(e.from_ == "Event" for e in entries):
        notes.append(
            "No Events of this rollout are left (the API server keeps them for an hour by default): the timeline "
            "shows what status records (start, the last measurements, the last manual action, the outcome)."
        )
    return notes


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
