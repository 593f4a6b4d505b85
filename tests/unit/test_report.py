"""The audit report's model (core.report) and its page: which rollout, its timeline, metrics, lineage, outcome."""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from modeldeploy.adapters.audit import QueryError, RangeReader
from modeldeploy.adapters.providers import Context
from modeldeploy.core import report as model
from modeldeploy.core.analysis import queries
from modeldeploy.core.api import (
    ActionStatus,
    Analysis,
    AnalysisMetric,
    AnalysisStatus,
    CanaryStatus,
    HistoryEntry,
    Measurement,
    MetricMeasurements,
    ModelDeploymentStatus,
    PrometheusSource,
    RevisionStatus,
    ServedModel,
)
from modeldeploy.report import ReportError, _write, check_output, write_report

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=2)
V1 = ServedModel(name="fraud", version="1", uri="s3://m/1", image="ghcr.io/x/server:1")
V2 = ServedModel(
    name="fraud",
    version="2",
    uri="s3://m/2",
    source="models:/fraud@champion",
    run_id="run-2",
    digest="sha256:" + "ab" * 32,
    image="ghcr.io/x/server:1",
)


def stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry(revision: str, model_: ServedModel, outcome: str, start: float, end: float, **kw: str) -> HistoryEntry:
    return HistoryEntry(
        revision=revision, model=model_, outcome=outcome, started_at=stamp(start), finished_at=stamp(end), **kw
    )


def measurement(result: str, value: float | None, at: float, stable: float | None = None) -> Measurement:
    return Measurement(result=result, value=value, stable_value=stable, bound=">= 0.95", message=result, at=stamp(at))


ROLLED_BACK = ModelDeploymentStatus(
    stable=RevisionStatus(revision="rev1", model=V1),
    history=[
        entry("rev1", V1, "Deployed", -100, -100),
        entry("rev2", V2, "RolledBack", 0, 60, reason="AnalysisFailed", message="success-rate 0.5 < 0.95"),
    ],
    analysis=AnalysisStatus(
        revision="rev2",
        time_to_rollback_seconds=4,
        metrics=[
            MetricMeasurements(
                name="success-rate",
                measurements=[measurement("Successful", 0.99, 40), measurement("Failed", 0.5, 58)],
            ),
            MetricMeasurements(
                name="latency", measurements=[measurement("Successful", 0.1, 40), measurement("Successful", 0.1, 58)]
            ),
        ],
    ),
    last_action=ActionStatus(action="promote", id="a1", at=stamp(20), result="skipped step 1/3", by="alice"),
)


def event(at: float, reason: str, message: str = "", type_: str = "Normal") -> model.EventRecord:
    return model.EventRecord(T0 + timedelta(seconds=at), type_, reason, message, "modeldeploy.io/operator")


def window_of(status: ModelDeploymentStatus = ROLLED_BACK, revision: str | None = None) -> model.Window:
    return model.window_of(model.select_rollout(status, revision), LATER)


# -- which rollout ------------------------------------------------------------------------------------------


def test_the_default_rollout_is_the_newest_in_history_with_what_it_was_compared_against() -> None:
    rollout = model.select_rollout(ROLLED_BACK, None)
    assert (rollout.revision, rollout.outcome, rollout.reason) == ("rev2", "RolledBack", "AnalysisFailed")
    assert (rollout.started_at, rollout.finished_at) == (T0, T0 + timedelta(seconds=60))
    assert rollout.stable_revision == "rev1"


def test_a_canary_in_progress_is_the_default_and_has_no_end() -> None:
    canary = CanaryStatus(
        revision="rev3",
        model=V2,
        phase="Progressing",
        step_index=1,
        step_count=3,
        step_started_at=stamp(100),
        started_at=stamp(90),
        desired_weight=20,
        weight=20,
        actual_weight=20,
        replicas=1,
        ready_replicas=1,
    )
    status = ROLLED_BACK.model_copy(update={"canary": canary})
    rollout = model.select_rollout(status, None)
    assert (rollout.revision, rollout.outcome, rollout.finished_at) == ("rev3", model.IN_PROGRESS, None)
    assert rollout.message == "step 2/3, canary weight 20%"
    assert model.select_rollout(status, "rev2").outcome == "RolledBack", "an older one by its revision"


def test_a_revision_tried_twice_reports_its_newest_rollout() -> None:
    again = entry("rev2", V2, "Promoted", 200, 260)
    status = ROLLED_BACK.model_copy(update={"history": [*ROLLED_BACK.history, again]})
    rollout = model.select_rollout(status, "rev2")
    assert (rollout.outcome, rollout.started_at) == ("Promoted", T0 + timedelta(seconds=200))
    assert rollout.stable_revision == "rev1"


def test_an_unknown_revision_names_the_ones_there_are() -> None:
    with pytest.raises(model.ReportError, match="no rollout of revision nope; revisions in its history: rev1, rev2"):
        model.select_rollout(ROLLED_BACK, "nope")
    with pytest.raises(model.ReportError, match="no rollout yet"):
        model.select_rollout(ModelDeploymentStatus(), None)


def test_the_window_is_the_rollout_with_a_margin_and_a_bounded_number_of_steps() -> None:
    window = window_of()
    assert window.start == T0 - timedelta(seconds=10)
    assert window.end == T0 + timedelta(seconds=70)
    assert window.step_seconds == 1
    long = entry("rev9", V2, "Promoted", 0, 86_400)
    wide = model.window_of(model.select_rollout(ModelDeploymentStatus(history=[long]), None), T0)
    assert (wide.end - wide.start).total_seconds() / wide.step_seconds <= model.MAX_POINTS


# -- the timeline -------------------------------------------------------------------------------------------


def test_the_rollouts_events_come_first_hand_in_the_order_written_and_status_fills_in_only_what_they_lack() -> None:
    events = [
        event(-3600, "WeightChanged", "an earlier rollout"),
        event(-8, "RolloutCompleted", "the stable before, not this rollout"),
        event(0, "RolloutCompleted", "Revision rev1 is now stable: the rollout before, ended in the same second"),
        event(0, "WeightChanged", "Canary weight 0% -> 20% (step 1/3, revision rev2)"),
        event(0, "CanaryStarted", "Started a canary of revision rev2"),
        event(20, "ActionHandled", "promote by alice: skipped step 1/3"),
        event(60, "RolledBack", "Rolled back revision rev2", "Warning"),
        event(58, "AnalysisFailed", "success-rate 0.5 < 0.95", "Warning"),
    ]
    rollout = model.select_rollout(ROLLED_BACK, None)
    entries = model.timeline(rollout, ROLLED_BACK, events, LATER)
    assert [e.what for e in entries] == [
        "CanaryStarted",
        "WeightChanged",
        "ActionHandled",
        "Measured: Successful",
        "AnalysisFailed",
        "Measured: Failed",
        "RolledBack",
    ], "within a second (Events have whole seconds), in the order the operator writes them"
    assert entries[-1].severity == "warning"
    assert "promote by alice" in entries[2].detail
    failed = entries[5]
    assert failed.from_ == "status"
    assert "success-rate Failed" in failed.detail
    assert "latency Successful" in failed.detail


def test_once_events_are_gone_status_still_gives_start_measurements_action_and_outcome() -> None:
    rollout = model.select_rollout(ROLLED_BACK, None)
    entries = model.timeline(rollout, ROLLED_BACK, [], LATER)
    assert [(e.what, e.who) for e in entries] == [
        ("Started", "operator"),
        ("Manual action: promote", "alice"),
        ("Measured: Successful", "operator"),
        ("Measured: Failed", "operator"),
        ("RolledBack", "operator"),
    ]
    assert entries[-1].detail == "success-rate 0.5 < 0.95"
    assert model.notes_for(rollout, entries, LATER), "the report says why the Events are missing"
    assert model.notes_for(rollout, entries, T0 + timedelta(minutes=5)) == [], "not expired yet: none were written"
    kept = model.timeline(rollout, ROLLED_BACK, [event(60, "RolledBack", "Rolled back")], LATER)
    assert model.notes_for(rollout, kept, LATER) == []


def test_an_action_by_an_unnamed_client_says_so() -> None:
    action = ActionStatus(action="abort", id="a2", at=stamp(30), result="aborted")
    status = ROLLED_BACK.model_copy(update={"last_action": action})
    entries = model.timeline(model.select_rollout(status, None), status, [], LATER)
    assert ("Manual action: abort", "not recorded") in [(e.what, e.who) for e in entries]


def test_measurements_of_another_revision_are_not_this_rollouts() -> None:
    status = ROLLED_BACK.model_copy(update={"history": [*ROLLED_BACK.history, entry("rev3", V2, "Promoted", 90, 99)]})
    rollout = model.select_rollout(status, "rev3")
    assert model.ticks_of(rollout, status) == []
    assert model.metric_ticks("success-rate", rollout, status) == []


def test_decision_points_are_starts_weights_failures_actions_and_the_end() -> None:
    entries = [
        model.TimelineEntry(T0, "CanaryStarted", "", "operator"),
        model.TimelineEntry(T0, "WeightChanged", "", "operator"),
        model.TimelineEntry(T0, "AnalysisNoData", "", "operator"),
        model.TimelineEntry(T0, "Manual action: abort", "", "bob"),
        model.TimelineEntry(T0, "Measured: Successful", "", "operator"),
        model.TimelineEntry(T0, "RolledBack", "", "operator", "warning"),
    ]
    points = model.decisions(entries)
    assert [p.label for p in points] == ["CanaryStarted", "WeightChanged", "Manual action: abort", "RolledBack"]
    assert points[-1].severity == "warning"


def test_decision_points_close_together_are_drawn_as_one() -> None:
    points = [
        model.DecisionPoint(T0, "CanaryStarted", "normal"),
        model.DecisionPoint(T0 + timedelta(seconds=1), "WeightChanged", "normal"),
        model.DecisionPoint(T0 + timedelta(seconds=30), "AnalysisFailed", "warning"),
        model.DecisionPoint(T0 + timedelta(seconds=30), "RolledBack", "warning"),
    ]
    assert model.grouped(points, timedelta(seconds=2)) == [
        model.DecisionPoint(T0, "CanaryStarted / WeightChanged", "normal"),
        model.DecisionPoint(T0 + timedelta(seconds=30), "AnalysisFailed / RolledBack", "warning"),
    ]


# -- metrics ------------------------------------------------------------------------------------------------


def test_no_requests_and_infinities_are_gaps_not_values() -> None:
    t = T0.timestamp()
    points = model.scalar_points([(t, 0.5), (t + 1, math.nan), (t + 2, math.inf), (t + 3, 0.7)])
    assert points == [(T0, 0.5), (T0 + timedelta(seconds=3), 0.7)]


def test_drift_is_the_analysis_psi_at_each_step_and_nothing_below_the_minimum_samples() -> None:
    t = T0.timestamp()
    same = {0.5: [(t, 50.0), (t + 1, 500.0)], math.inf: [(t, 100.0), (t + 1, 1000.0)]}
    shifted = {0.5: [(t, 10.0), (t + 1, 100.0)], math.inf: [(t, 100.0), (t + 1, 1000.0)]}
    assert model.drift_points(same, same, 200) == [(T0 + timedelta(seconds=1), 0.0)], "t: 100 samples, too few"
    [(_, value)] = model.drift_points(shifted, same, 200)
    assert value > 0.25


def test_bounds_are_fixed_lines_or_follow_stable() -> None:
    window = window_of()
    metric = AnalysisMetric.model_validate(
        {"name": "p99", "builtin": "latencyP99", "max": 0.2, "relative": {"maxRatio": 2, "maxIncrease": 0.05}}
    )
    stable = [(T0, 0.1), (T0 + timedelta(seconds=1), 0.12)]
    lines = dict(model.bound_lines(metric, stable, window))
    assert lines["max 0.2"] == [(window.start, 0.2), (window.end, 0.2)]
    assert lines["2 x stable"] == [(T0, 0.2), (T0 + timedelta(seconds=1), 0.24)]
    assert [v for _, v in lines["stable + 0.05"]] == pytest.approx([0.15, 0.17])
    assert model.describe_bound(metric) == "<= 0.2 and <= stable + 0.05 and <= 2 x stable"


def test_a_metric_series_uses_the_analysis_query_bound_and_recorded_measurements() -> None:
    analysis = Analysis.model_validate(
        {
            "prometheus": {"address": "http://prometheus:9090"},
            "metrics": [{"name": "success-rate", "builtin": "successRate", "min": 0.95}],
        }
    )
    [query] = queries(analysis, "modelserver", "ns", "fraud", "rev2", "rev1")
    assert 'modeldeploy_io_revision="rev2"' in query.canary
    rollout = model.select_rollout(ROLLED_BACK, None)
    series = model.metric_series(query, [(T0, 0.99)], [], rollout, ROLLED_BACK, window_of())
    assert series.bound == ">= 0.95"
    assert [(t.result, t.value) for t in series.ticks] == [("Successful", 0.99), ("Failed", 0.5)]
    assert [label for label, _ in series.bounds] == ["min 0.95"]


def test_lineage_says_what_was_not_recorded_rather_than_guess() -> None:
    assert dict(model.lineage(V2)) == {
        "model": "fraud",
        "version": "2",
        "URI": "s3://m/2",
        "registry source": "models:/fraud@champion",
        "registry run id": "run-2",
        "digest": "sha256:" + "ab" * 32,
        "image": "ghcr.io/x/server:1",
    }
    bare = dict(model.lineage(ServedModel(name="m", version="1", uri="s3://m/1")))
    assert (bare["digest"], bare["registry run id"], bare["image"]) == ("not recorded",) * 3


# -- the page -----------------------------------------------------------------------------------------------


def test_the_page_escapes_what_comes_from_the_cluster_and_embeds_its_plots(tmp_path: Path) -> None:
    hostile = ServedModel(name="<script>alert(1)</script>", version="2", uri="s3://m/2?a=1&b=2")
    status = ModelDeploymentStatus(
        history=[entry("rev2", hostile, "RolledBack", 0, 60, reason="AnalysisFailed", message="<b>bad</b>")]
    )
    rollout = model.select_rollout(status, None)
    window = model.window_of(rollout, T0)
    series = model.MetricSeries(
        name="success-rate",
        bound=">= 0.95",
        canary=[(T0 + timedelta(seconds=s), 0.5) for s in range(0, 60, 5)],
        stable=[(T0 + timedelta(seconds=s), 1.0) for s in range(0, 60, 5)],
        bounds=[("min 0.95", [(window.start, 0.95), (window.end, 0.95)])],
        ticks=[model.Tick(T0 + timedelta(seconds=58), "Failed", 0.5, 1.0)],
    )
    entries = model.timeline(rollout, status, [event(30, "Odd", "<img src=x onerror=alert(1)>")], LATER)
    report = model.Report(
        namespace="ns",
        name="fraud",
        rollout=rollout,
        window=window,
        timeline=entries,
        decisions=model.decisions(entries),
        metrics=[series],
        lineage=model.lineage(hostile),
        generated_at=T0,
    )
    written = _write(report, tmp_path / "r.html")
    page = written.html.read_text()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert "&lt;b&gt;bad&lt;/b&gt;" in page
    assert "s3://m/2?a=1&amp;b=2" in page
    assert 'src="data:image/png;base64,' in page
    assert [p.name for p in written.plots] == ["r-success-rate.png"]
    png = written.plots[0].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000


@pytest.mark.parametrize("name", ["report.pdf", "report", "report.png"])
def test_an_output_that_is_not_html_is_refused(name: str) -> None:
    with pytest.raises(ReportError, match="unknown output extension"):
        check_output(Path(name))


def test_without_the_report_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(ReportError, match=r"needs matplotlib and jinja2: pip install 'modeldeploy\[report\]'"):
        write_report("ns", "fraud", None, tmp_path / "r.html", None, None, None)
    assert not list(tmp_path.iterdir())


# -- range queries against Prometheus (httpx.MockTransport) -------------------------------------------------


class NoSecrets:
    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        raise AssertionError("no Secret is read for a source without credentials")

    def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        raise AssertionError("no ConfigMap is read for a source without a CA bundle")


def reader(answer: object, seen: list[httpx.Request] | None = None) -> RangeReader:
    def handle(request: httpx.Request) -> httpx.Response:
        (seen if seen is not None else []).append(request)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)

    source = PrometheusSource(address="http://prometheus:9090", headers=[{"name": "X-Scope-OrgID", "value": "risk"}])
    return RangeReader(source, Context("risk", "fraud", NoSecrets()), httpx.MockTransport(handle))


def matrix(*series: tuple[dict[str, str], list[list[object]]]) -> dict[str, object]:
    result = [{"metric": labels, "values": values} for labels, values in series]
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def test_a_range_query_asks_over_the_window_with_the_sources_headers() -> None:
    seen: list[httpx.Request] = []
    t = T0.timestamp()
    values = reader(matrix(({}, [[t, "0.5"], [t + 1, "NaN"], [t + 2, "oops"]])), seen).scalar("up", window_of())
    assert values[0] == (t, 0.5)
    assert math.isnan(values[1][1])
    assert len(values) == 2, "a sample that is not a number is left out"
    [request] = seen
    assert request.url.path == "/api/v1/query_range"
    assert request.url.params["query"] == "up"
    assert request.url.params["step"] == "1s"
    assert float(request.url.params["start"]) == (T0 - timedelta(seconds=10)).timestamp()
    assert request.headers["X-Scope-OrgID"] == "risk"


def test_histogram_buckets_over_the_window_by_bound() -> None:
    t = T0.timestamp()
    answer = matrix(({"le": "0.5"}, [[t, "3"]]), ({"le": "+Inf"}, [[t, "10"]]), ({}, [[t, "1"]]))
    assert reader(answer).histogram("q", window_of()) == {0.5: [(t, 3.0)], math.inf: [(t, 10.0)]}


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (httpx.ConnectError("refused"), "Prometheus at http://prometheus:9090 unreachable: ConnectError"),
        ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "rejected the query"),
        (httpx.Response(502, text="<html>bad gateway</html>"), "HTTP 502 without JSON"),
        ({"status": "success", "data": {"resultType": "vector", "result": []}}, "without a matrix"),
        (matrix(({"a": "1"}, []), ({"a": "2"}, [])), "returned 2 series; aggregate it to one"),
        ({"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}}]}}, "has no values"),
    ],
    ids=["unreachable", "refused", "not-json", "not-a-matrix", "two-series", "no-values"],
)
def test_every_bad_answer_is_a_query_error_that_says_what_came_back(answer: object, says: str) -> None:
    with pytest.raises(QueryError, match=says):
        reader(answer).scalar("q", window_of())
