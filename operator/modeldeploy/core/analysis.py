"""Metric analysis: what to ask each metric provider, and what a measurement means. Pure; the providers in
`modeldeploy.adapters.providers` run the queries.

A measurement is Successful, Failed, NoData or Error, kept apart: a query that returns nothing is not a
failure, and neither is one that cannot run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from modeldeploy.core.api import (
    Analysis,
    AnalysisMetric,
    ApiModel,
    Measurement,
    MeasurementResult,
    PrometheusSource,
    ProviderName,
    parse_duration,
)

# The reference model server's metric names, with the pod labels a PodMonitor keeps (podTargetLabels).
SELECTOR = 'namespace="{namespace}",modeldeploy_io_revision="{revision}"'
# Feedback counters carry the revision of the prediction, whichever pod counted the label.
LABELLED_SELECTOR = 'namespace="{namespace}",prediction_revision="{revision}"'
LABEL_BUILTINS = ("accuracy", "meanAbsoluteError")
BUILTIN_QUERIES: dict[str, dict[str, str]] = {
    # modeldeploy's reference model server (also assumed for custom containers).
    "modelserver": {
        "successRate": (
            # `or vector(0)`: when every request fails there is no success series at all, and that is 0, not no data.
            '(sum(rate(modelserver_requests_total{{{sel},code!~"5.."}}[{window}])) or vector(0)) '
            "/ sum(rate(modelserver_requests_total{{{sel}}}[{window}]))"
        ),
        "latencyP99": (
            "histogram_quantile(0.99, sum by (le) "
            "(rate(modelserver_request_duration_seconds_bucket{{{sel}}}[{window}])))"
        ),
        # Over the window, so a late drift is not diluted by a long history; minSamples keeps the few predictions a
        # young series has in its window from reading as drift.
        "predictionDrift": "sum by (le) (increase(modelserver_prediction_bucket{{{sel}}}[{window}]))",
        # Labels that arrived in the window, counted for the revision that made the prediction on whichever pod
        # the label landed; fewer than minLabels is an empty answer, so no data.
        "accuracy": (
            "(sum(increase(modelserver_feedback_correct_total{{{labelled}}}[{window}])) "
            "/ sum(increase(modelserver_feedback_labels_total{{{labelled}}}[{window}]))) "
            "and on() (sum(increase(modelserver_feedback_labels_total{{{labelled}}}[{window}])) >= {min_labels})"
        ),
        "meanAbsoluteError": (
            "(sum(increase(modelserver_feedback_error_sum{{{labelled}}}[{window}])) "
            "/ sum(increase(modelserver_feedback_error_count{{{labelled}}}[{window}]))) "
            "and on() (sum(increase(modelserver_feedback_error_count{{{labelled}}}[{window}])) >= {min_labels})"
        ),
    },
    # Seldon MLServer's REST metrics (starlette_exporter names, prefix rest_server); it has no prediction
    # histogram and no feedback counters, so predictionDrift, accuracy and meanAbsoluteError are refused for it.
    "mlserver": {
        "successRate": (
            '(sum(rate(rest_server_requests_total{{{sel},status_code!~"5.."}}[{window}])) or vector(0)) '
            "/ sum(rate(rest_server_requests_total{{{sel}}}[{window}]))"
        ),
        "latencyP99": (
            "histogram_quantile(0.99, sum by (le) "
            "(rate(rest_server_request_duration_seconds_bucket{{{sel}}}[{window}])))"
        ),
    },
}
# Probabilities this small stand in for empty buckets, so that PSI stays finite.
PSI_EPSILON = 1e-4

Kind = Literal["scalar", "histogram"]


@dataclass(frozen=True)
class MetricQuery:
    """One metric to measure this tick: which provider, with which settings, asking what for each track."""

    metric: AnalysisMetric
    kind: Kind
    canary: str
    """What to ask for the canary, variables filled in: PromQL for Prometheus, the URL for web."""
    stable: str | None
    """Also measured on the stable track: for relative bounds, and for drift."""
    provider: ProviderName
    settings: ApiModel
    """The provider's settings: the PrometheusSource that measures the metric, or the metric's web block."""
    canary_body: str | None = None
    stable_body: str | None = None
    """Web POST bodies, variables filled in."""


def preset_queries(runtime: str) -> dict[str, str]:
    return BUILTIN_QUERIES.get(runtime, BUILTIN_QUERIES["modelserver"])


def fill(text: str, values: Mapping[str, str]) -> str:
    """Fills in {{namespace}}, {{name}}, {{revision}}, {{track}} and {{window}}."""
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def render_query(metric: AnalysisMetric, runtime: str, namespace: str, name: str, revision: str, track: str) -> str:
    if metric.builtin is not None:
        window = metric.window
        if track == "stable" and metric.reference_window is not None:
            window = metric.reference_window
        return preset_queries(runtime)[metric.builtin].format(
            sel=SELECTOR.format(namespace=namespace, revision=revision),
            labelled=LABELLED_SELECTOR.format(namespace=namespace, revision=revision),
            window=window,
            min_labels=metric.min_labels,
        )
    values = {"namespace": namespace, "name": name, "revision": revision, "track": track, "window": metric.window}
    if metric.web is not None:
        return fill(metric.web.url, values)
    assert metric.query is not None
    return fill(metric.query, values)


def render_body(metric: AnalysisMetric, namespace: str, name: str, revision: str, track: str) -> str | None:
    if metric.web is None or metric.web.body is None:
        return None
    values = {"namespace": namespace, "name": name, "revision": revision, "track": track, "window": metric.window}
    return fill(metric.web.body, values)


def queries(
    analysis: Analysis,
    runtime: str,
    namespace: str,
    name: str,
    canary: str,
    stable: str | None,
    sources: Mapping[str, PrometheusSource] | None = None,
) -> list[MetricQuery]:
    """One query per metric. `sources` names the Prometheus of a metric that has its own (from a template);
    the others use `analysis.prometheus`."""
    out = []
    for metric in analysis.metrics:
        drift = metric.builtin == "predictionDrift"
        measure_stable = (drift or metric.relative is not None) and stable is not None
        settings: ApiModel | None = metric.web or (sources or {}).get(metric.name) or analysis.prometheus
        assert settings is not None, f"metric {metric.name} has no Prometheus (the API rules require one)"
        out.append(
            MetricQuery(
                metric=metric,
                kind="histogram" if drift else "scalar",
                canary=render_query(metric, runtime, namespace, name, canary, "canary"),
                stable=render_query(metric, runtime, namespace, name, stable, "stable")
                if measure_stable and stable
                else None,
                provider=metric.provider,
                settings=settings,
                canary_body=render_body(metric, namespace, name, canary, "canary"),
                stable_body=render_body(metric, namespace, name, stable, "stable")
                if measure_stable and stable
                else None,
            )
        )
    return out


@dataclass(frozen=True)
class Raw:
    """What a provider answered for one metric: a number or {upper bound: cumulative count}, or an error."""

    canary: float | dict[float, float] | None
    stable: float | dict[float, float] | None = None
    error: str | None = None


def psi(canary: dict[float, float], stable: dict[float, float], min_samples: int) -> float | None:
    """Population stability index of two cumulative histograms with the same buckets; None below min_samples."""
    bounds = sorted(set(canary) & set(stable))
    if not bounds or canary[bounds[-1]] < min_samples or stable[bounds[-1]] < min_samples:
        return None

    def shares(cumulative: dict[float, float]) -> list[float]:
        previous = [0.0, *(cumulative[b] for b in bounds[:-1])]
        counts = [cumulative[b] - before for b, before in zip(bounds, previous, strict=True)]
        total = cumulative[bounds[-1]]
        return [max(c / total, PSI_EPSILON) for c in counts]

    return sum((c - s) * math.log(c / s) for c, s in zip(shares(canary), shares(stable), strict=True))


def _describe_bound(metric: AnalysisMetric) -> str:
    parts = []
    if metric.min is not None:
        parts.append(f">= {metric.min:g}")
    if metric.max is not None:
        parts.append(f"<= {metric.max:g}")
    relative = metric.relative
    if relative is not None:
        if relative.max_increase is not None:
            parts.append(f"<= stable + {relative.max_increase:g}")
        if relative.max_decrease is not None:
            parts.append(f">= stable - {relative.max_decrease:g}")
        if relative.max_ratio is not None:
            parts.append(f"<= {relative.max_ratio:g} x stable")
    return " and ".join(parts)


def evaluate(metric: AnalysisMetric, raw: Raw, at: str) -> Measurement:
    bound = _describe_bound(metric)

    def result(
        kind: MeasurementResult, message: str, value: float | None = None, stable: float | None = None
    ) -> Measurement:
        if any(v is not None and not math.isfinite(v) for v in (value, stable)):
            # Whatever produced it, a status can never carry it: JSON has no NaN or infinity.
            message = f"the measurement came out as {value}, not a finite number"
            kind, value, stable = "Error", None, None
        return Measurement(result=kind, value=value, stable_value=stable, bound=bound, message=message, at=at)

    if raw.error is not None:
        return result("Error", raw.error)
    for track, number in (("canary", raw.canary), ("stable track", raw.stable)):
        if isinstance(number, float) and math.isinf(number):
            # Not a breach to roll back on, and no value that JSON (so the status) can hold.
            return result("Error", f"the {track} measured {number}, not a finite number")
        if isinstance(number, dict) and not all(
            not math.isnan(le) and math.isfinite(c) and c >= 0 for le, c in number.items()
        ):
            return result("Error", f"the {track}'s histogram has a bucket that is not a bound with a finite count")
    if metric.builtin == "predictionDrift":
        if not isinstance(raw.canary, dict) or not isinstance(raw.stable, dict):
            return result("NoData", "no prediction histogram for the canary or the stable track")
        value = psi(raw.canary, raw.stable, metric.min_samples)
        if value is None:
            windows = (
                metric.window if metric.reference_window is None else f"{metric.window} / {metric.reference_window}"
            )
            return result("NoData", f"fewer than {metric.min_samples} predictions on a track in {windows}")
        stable_value: float | None = 0.0
    else:
        labels = metric.builtin in LABEL_BUILTINS
        if not isinstance(raw.canary, float) or math.isnan(raw.canary):
            if labels:
                return result("NoData", f"fewer than {metric.min_labels} labels for the canary in {metric.window}")
            return result("NoData", "the query returned no value for the canary")
        value = raw.canary
        stable_value = raw.stable if isinstance(raw.stable, float) and not math.isnan(raw.stable) else None
        if metric.relative is not None and stable_value is None:
            if labels:
                message = f"fewer than {metric.min_labels} labels for the stable track in {metric.window}"
                return result("NoData", message, value)
            return result("NoData", "the query returned no value for the stable track", value)
    breaches = []
    if metric.min is not None and value < metric.min:
        breaches.append(f"{value:.4g} < {metric.min:g}")
    if metric.max is not None and value > metric.max:
        breaches.append(f"{value:.4g} > {metric.max:g}")
    relative = metric.relative
    if relative is not None and stable_value is not None:
        if relative.max_increase is not None and value - stable_value > relative.max_increase:
            breaches.append(f"{value:.4g} exceeds stable {stable_value:.4g} by more than {relative.max_increase:g}")
        if relative.max_decrease is not None and stable_value - value > relative.max_decrease:
            breaches.append(f"{value:.4g} is below stable {stable_value:.4g} by more than {relative.max_decrease:g}")
        if relative.max_ratio is not None and value > relative.max_ratio * stable_value:
            breaches.append(f"{value:.4g} is more than {relative.max_ratio:g} x stable {stable_value:.4g}")
    if breaches:
        return result("Failed", "; ".join(breaches), value, stable_value)
    return result("Successful", f"{value:.4g} within {bound}", value, stable_value)


def overall(results: list[MeasurementResult]) -> MeasurementResult:
    """A tick fails if any metric failed; else it is an error, no data, or a success, in that order."""
    order: tuple[MeasurementResult, ...] = ("Failed", "Error", "NoData")
    for kind in order:
        if kind in results:
            return kind
    return "Successful"


def time_to_rollback(analysis: Analysis) -> float:
    return parse_duration(analysis.interval) * (analysis.failure_limit + 1)


def critical_analysis(analysis: Analysis) -> Analysis | None:
    """The metrics that carry a critical bound, each held to that bound alone; None when none does."""
    metrics = [
        metric.model_copy(update={"min": metric.critical.min, "max": metric.critical.max, "relative": None})
        for metric in analysis.metrics
        if metric.critical is not None
    ]
    return analysis.model_copy(update={"metrics": metrics}) if metrics else None


def critical_breaches(planned: list[MetricQuery], raws: list[Raw], at: str) -> str | None:
    """What breached a critical bound (metric, value and bound), or None. No data or an error is not a breach:
    those are the analysis ticks' to judge."""
    breaches = []
    for query, raw in zip(planned, raws, strict=True):
        measured = evaluate(query.metric, raw, at)
        if measured.result == "Failed":
            breaches.append(f"{query.metric.name} {measured.message} (critical bound {measured.bound})")
    return "; ".join(breaches) or None


def bake_analysis(analysis: Analysis) -> Analysis:
    """What a bake measures on the new stable: the absolute bounds (min, max). The previous revision, kept warm
    without traffic, is no track to compare with, so relative bounds and drift are left out."""
    metrics = [
        metric.model_copy(update={"relative": None})
        for metric in analysis.metrics
        if (metric.min is not None or metric.max is not None) and metric.builtin != "predictionDrift"
    ]
    return analysis.model_copy(update={"metrics": metrics})
