"""`modeldeploy report NAME`: the audit report of one rollout, a self-contained HTML page with one PNG plot per
metric written beside it.

The report model is built by the pure `core.report` from the ModelDeployment's status, its Events
(`adapters.audit.read_events`) and the analysis' own PromQL asked over the rollout's window
(`adapters.audit.RangeReader`). Plots are drawn with matplotlib (Agg: no display needed) and the page comes from
a Jinja template with autoescaping on, so nothing read from the cluster is ever markup. Both libraries are the
optional extra `modeldeploy[report]`.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modeldeploy.adapters.audit import QueryError, RangeReader, read_events
from modeldeploy.adapters.kube import Kube
from modeldeploy.adapters.providers import Context, ProviderError
from modeldeploy.client import Client, ModelDeployError, default_namespace
from modeldeploy.core import report as model
from modeldeploy.core.analysis import MetricQuery, queries, render_query
from modeldeploy.core.api import ModelDeploymentSpec, ModelDeploymentStatus, PrometheusSource
from modeldeploy.core.presets import SpecError
from modeldeploy.core.templates import Template, resolve

MISSING_EXTRA = "the report needs matplotlib and jinja2: pip install 'modeldeploy[report]'"
COLOURS = {"Successful": "#2e7d32", "Failed": "#c62828", "NoData": "#f9a825", "Error": "#6a1b9a"}


class ReportError(Exception):
    """Nothing was written: one line for the user."""


@dataclass(frozen=True)
class Written:
    html: Path
    plots: list[Path]
    notes: list[str]


def check_output(output: Path) -> None:
    if output.suffix.lower() not in (".html", ".htm"):
        raise ReportError(
            f"unknown output extension {output.suffix or '(none)'!r}: the report is HTML, e.g. -o report.html"
        )


def write_report(
    namespace: str,
    name: str,
    revision: str | None,
    output: Path,
    prometheus_url: str | None,
    context: str | None,
    kubeconfig: str | None,
) -> Written:
    check_output(output)
    try:
        import jinja2  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise ReportError(MISSING_EXTRA) from error
    try:
        kube = Kube(Client(namespace, context, kubeconfig).api_client)
    except ModelDeployError as error:
        raise ReportError(str(error)) from error
    try:
        md = kube.get_modeldeployment(namespace, name)
    except (ApiException, OSError) as error:
        raise ReportError(f"cannot read ModelDeployment {namespace}/{name}: {_reason(error)}") from error
    if md is None:
        raise ReportError(f"ModelDeployment {namespace}/{name} not found")
    try:
        status = ModelDeploymentStatus.model_validate(md.get("status") or {})
    except ValidationError as error:
        raise ReportError(
            f"ModelDeployment {namespace}/{name} has a status this version cannot read: {error}"
        ) from error
    try:
        rollout = model.select_rollout(status, revision)
    except model.ReportError as error:
        raise ReportError(f"ModelDeployment {namespace}/{name}: {error}") from error

    now = datetime.now(UTC)
    window = model.window_of(rollout, now)
    notes: list[str] = []
    try:
        events = read_events(kube.core, namespace, name, md["metadata"].get("uid"))
    except (ApiException, OSError) as error:
        events = []
        notes.append(f"The Events could not be read ({_reason(error)}): the timeline shows what status records.")
    entries = model.timeline(rollout, status, events, now)
    notes.extend(model.notes_for(rollout, entries, now))
    metrics, metric_notes = _metrics(kube, md, namespace, name, rollout, status, window, prometheus_url)
    report = model.Report(
        namespace=namespace,
        name=name,
        rollout=rollout,
        window=window,
        timeline=entries,
        decisions=model.decisions(entries),
        metrics=metrics,
        lineage=model.lineage(rollout.model),
        notes=notes + metric_notes,
        generated_at=now,
    )
    return _write(report, output)


def _reason(error: Exception) -> str:
    return str(error.reason) if isinstance(error, ApiException) else type(error).__name__


def _metrics(
    kube: Kube,
    md: dict[str, Any],
    namespace: str,
    name: str,
    rollout: model.Rollout,
    status: ModelDeploymentStatus,
    window: model.Window,
    prometheus_url: str | None,
) -> tuple[list[model.MetricSeries], list[str]]:
    """Each metric of the spec's analysis over the window; notes for what could not be read."""
    try:
        spec = ModelDeploymentSpec.model_validate(md.get("spec") or {})
    except ValidationError:
        return [], ["The spec cannot be read by this version, so its metrics are not shown."]
    analysis = spec.rollout.analysis
    if analysis is None:
        return [], ["The spec has no analysis: no metrics gated this rollout."]
    try:
        templates = []
        for ref in analysis.templates:
            obj = kube.get_analysis_template(ref.cluster_scope, namespace, ref.name)
            if obj is None:
                return [], [f"Analysis template {ref.name} is gone, so its metrics cannot be shown."]
            templates.append(Template.from_object(ref, namespace, obj))
        resolved = resolve(analysis, templates, spec.runtime.preset)
    except (ApiException, OSError, SpecError) as error:
        return [], [f"The analysis templates cannot be read ({error}), so the metrics are not shown."]
    planned = queries(
        resolved.analysis,
        spec.runtime.preset,
        namespace,
        name,
        rollout.revision,
        rollout.stable_revision,
        resolved.sources,
    )
    notes = ["Metrics are the spec's analysis as it is now; a bound changed since the rollout shows as it is now."]
    series: list[model.MetricSeries] = []
    readers: dict[str, RangeReader | str] = {}
    context = Context(namespace, name, kube)
    try:
        for query in planned:
            if query.stable is None and rollout.stable_revision and query.provider == "prometheus":
                # The analysis asks the stable track only for relative bounds; the report shows it for every metric.
                stable_query = render_query(
                    query.metric, spec.runtime.preset, namespace, name, rollout.stable_revision, "stable"
                )
                query = replace(query, stable=stable_query)
            canary, stable, note = _read(query, window, context, readers, prometheus_url)
            series.append(model.metric_series(query, canary, stable, rollout, status, window, note))
    finally:
        for reader in readers.values():
            if isinstance(reader, RangeReader):
                reader.close()
    unreadable = {r for r in readers.values() if isinstance(r, str)}
    notes.extend(f"Metrics could not be read: {reason}." for reason in sorted(unreadable))
    return series, notes


def _read(
    query: MetricQuery,
    window: model.Window,
    context: Context,
    readers: dict[str, RangeReader | str],
    prometheus_url: str | None,
) -> tuple[list[model.Point], list[model.Point], str | None]:
    """The canary's and stable's points of one metric, or a note saying why there are none."""
    settings = query.settings
    if not isinstance(settings, PrometheusSource):
        return [], [], "not a Prometheus metric: its values over time are not kept; the last measurements are shown"
    if prometheus_url:
        settings = settings.model_copy(update={"address": prometheus_url})
    key = settings.model_dump_json()
    if key not in readers:
        try:
            readers[key] = RangeReader(settings, context)
        except (ProviderError, ValueError) as error:
            readers[key] = f"Prometheus at {settings.address} cannot be used: {error}"
    reader = readers[key]
    if isinstance(reader, str):
        return [], [], reader
    try:
        if query.kind == "histogram":
            canary_buckets = reader.histogram(query.canary, window)
            stable_buckets = reader.histogram(query.stable, window) if query.stable else {}
            drift = model.drift_points(canary_buckets, stable_buckets, query.metric.min_samples)
            return drift, [], None if drift else "no value in the window (too few samples on a track)"
        canary = model.scalar_points(reader.scalar(query.canary, window))
        stable = model.scalar_points(reader.scalar(query.stable, window)) if query.stable else []
    except QueryError as error:
        if "unreachable" in str(error) or "no answer within" in str(error):
            readers[key] = str(error)  # the next metrics of this Prometheus would wait just as long
        return [], [], str(error)
    return canary, stable, None if canary or stable else "Prometheus has no value in the window"


# -- drawing and writing -----------------------------------------------------------------------------------


def _plot(metric: model.MetricSeries, report: model.Report) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates
    from matplotlib import pyplot as plt

    def x(at: datetime) -> float:
        return float(dates.date2num(at))  # type: ignore[no-untyped-call]

    def line(points: list[model.Point]) -> tuple[list[float], list[float]]:
        return [x(at) for at, _ in points], [value for _, value in points]

    figure, axes = plt.subplots(figsize=(11, 4.4), dpi=100)
    try:
        rollout, window = report.rollout, report.window
        axes.axvspan(x(rollout.started_at), x(rollout.finished_at or window.end), color="#eeeeee", label="rollout")
        if metric.stable:
            axes.plot(*line(metric.stable), color="#1565c0", label="stable", linewidth=1.6)
        if metric.canary:
            label = "PSI, canary against stable" if metric.kind == "histogram" else "canary"
            axes.plot(*line(metric.canary), color="#ef6c00", label=label, linewidth=1.6)
        for label, points in metric.bounds:
            fixed = label.startswith(("min", "max"))
            style = "--" if fixed else "-."
            axes.plot(*line(points), color="#c62828", linestyle=style, linewidth=1.2, label=f"bound: {label}")
        for result, colour in COLOURS.items():
            shown = [(t.at, t.value) for t in metric.ticks if t.result == result and t.value is not None]
            if shown:
                xs, ys = line(shown)
                axes.scatter(xs, ys, color=colour, zorder=5, s=36, label=f"measured: {result}")
        span = report.window.end - report.window.start
        for point in model.grouped(report.decisions, span / 40):
            colour = "#c62828" if point.severity == "warning" else "#555555"
            axes.axvline(x(point.at), color=colour, linestyle=":", linewidth=1)
            axes.annotate(
                point.label,
                (x(point.at), 0.98),
                xycoords=("data", "axes fraction"),
                rotation=90,
                fontsize=7,
                va="top",
                ha="right",
                color=colour,
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1},
            )
        axes.set_xlim(x(window.start), x(window.end))
        axes.xaxis.set_major_formatter(dates.DateFormatter("%H:%M:%S", tz=UTC))  # type: ignore[no-untyped-call]
        axes.set_xlabel("time (UTC)")
        axes.set_title(f"{metric.name}: {metric.bound or 'no bound'}", fontsize=11)
        if metric.note:
            axes.text(
                0.5,
                0.5,
                metric.note,
                transform=axes.transAxes,
                ha="center",
                va="center",
                fontsize=9,
                wrap=True,
                bbox={"facecolor": "#fff8e1", "edgecolor": "#f9a825"},
            )
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "metric"


def _write(report: model.Report, output: Path) -> Written:
    import jinja2

    plots, images = [], []
    for metric in report.metrics:
        png = _plot(metric, report)
        path = output.with_name(f"{output.stem}-{_slug(metric.name)}.png")
        path.write_bytes(png)
        plots.append(path)
        images.append(base64.b64encode(png).decode())
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("modeldeploy", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    page = environment.get_template("report.html").render(
        report=report, metrics=list(zip(report.metrics, images, strict=True)), colours=COLOURS, stamp=_stamp
    )
    output.write_text(page, encoding="utf-8")
    return Written(output, plots, report.notes)


def _stamp(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


# -- the command's body (cli.py declares `modeldeploy report` and `kubectl modeldeploy report`) --------------


def command(
    name: str,
    revision: str | None,
    output: Path,
    prometheus_url: str | None,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
) -> None:
    """Write the audit report of one rollout: metrics against bounds, timeline, model lineage and outcome."""
    try:
        check_output(output)
        written = write_report(
            namespace or default_namespace(context, kubeconfig),
            name,
            revision,
            output,
            prometheus_url,
            context,
            kubeconfig,
        )
    except ReportError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(1) from error
    for note in written.notes:
        if note.startswith("Metrics could not be read"):
            typer.secho(f"warning: {note}", fg="yellow", err=True)
    typer.echo(f"wrote {written.html}")
    for plot in written.plots:
        typer.echo(f"wrote {plot}")
