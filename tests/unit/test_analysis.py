"""Measurements: PromQL presets, PSI, bounds, and the four results kept apart."""

import math

import pytest

from modeldeploy.core.analysis import Raw, evaluate, overall, psi, queries, time_to_rollback
from modeldeploy.core.api import Analysis, AnalysisMetric

AT = "2026-11-23T12:00:00Z"


def metric(**fields) -> AnalysisMetric:
    return AnalysisMetric.model_validate({"name": "m", **fields})


def analysis(*metrics, **fields) -> Analysis:
    return Analysis.model_validate({"prometheus": {"address": "http://prom:9090"}, "metrics": list(metrics), **fields})


def test_builtin_queries_select_the_revision_in_the_namespace() -> None:
    planned = queries(
        analysis(
            {"name": "ok", "builtin": "successRate", "min": 0.99},
            {"name": "p99", "builtin": "latencyP99", "relative": {"maxRatio": 1.2}},
            {"name": "drift", "builtin": "predictionDrift", "max": 0.2},
        ),
        "modelserver",
        "risk",
        "fraud",
        "canary1",
        "stable1",
    )
    ok, p99, drift = planned
    assert 'namespace="risk",modeldeploy_io_revision="canary1"' in ok.canary
    assert 'code!~"5.."' in ok.canary
    assert ok.stable is None, "an absolute bound needs no stable measurement"
    assert "histogram_quantile(0.99" in p99.canary
    assert p99.stable is not None
    assert 'modeldeploy_io_revision="stable1"' in p99.stable
    assert drift.kind == "histogram"
    assert drift.stable is not None
    assert "modelserver_prediction_bucket" in drift.stable


def test_custom_queries_get_their_variables() -> None:
    (planned,) = queries(
        analysis(
            {"name": "q", "query": 'x{ns="{{namespace}}",rev="{{revision}}",t="{{track}}"}[{{window}}]', "max": 1}
        ),
        "custom",
        "risk",
        "fraud",
        "c1",
        "s1",
    )
    assert planned.canary == 'x{ns="risk",rev="c1",t="canary"}[1m]'


def test_psi_is_zero_for_equal_distributions_and_grows_with_shift() -> None:
    same = {0.5: 50.0, 1.0: 100.0}
    assert psi(same, same, 10) == pytest.approx(0.0)
    shifted = {0.5: 10.0, 1.0: 100.0}
    score = psi(shifted, same, 10)
    assert score is not None
    assert score > 0.2
    assert psi({0.5: 1.0, 1.0: 5.0}, same, 10) is None, "too few samples is no data"


@pytest.mark.parametrize(
    ("fields", "raw", "result"),
    [
        ({"builtin": "successRate", "min": 0.99}, Raw(canary=0.999), "Successful"),
        ({"builtin": "successRate", "min": 0.99}, Raw(canary=0.9), "Failed"),
        ({"builtin": "successRate", "min": 0.99}, Raw(canary=None), "NoData"),
        ({"builtin": "successRate", "min": 0.99}, Raw(canary=math.nan), "NoData"),
        ({"builtin": "successRate", "min": 0.99}, Raw(canary=None, error="unreachable"), "Error"),
        ({"builtin": "latencyP99", "relative": {"maxRatio": 1.2}}, Raw(canary=0.11, stable=0.1), "Successful"),
        ({"builtin": "latencyP99", "relative": {"maxRatio": 1.2}}, Raw(canary=0.2, stable=0.1), "Failed"),
        ({"builtin": "latencyP99", "relative": {"maxRatio": 1.2}}, Raw(canary=0.2, stable=None), "NoData"),
        ({"query": "x", "relative": {"maxIncrease": 0.005}}, Raw(canary=0.012, stable=0.01), "Successful"),
        ({"query": "x", "relative": {"maxIncrease": 0.005}}, Raw(canary=0.02, stable=0.01), "Failed"),
        (
            {"builtin": "predictionDrift", "max": 0.2},
            Raw(canary={0.5: 500.0, 1.0: 1000.0}, stable={0.5: 520.0, 1.0: 1000.0}),
            "Successful",
        ),
        (
            {"builtin": "predictionDrift", "max": 0.2},
            Raw(canary={0.5: 50.0, 1.0: 1000.0}, stable={0.5: 600.0, 1.0: 1000.0}),
            "Failed",
        ),
        ({"builtin": "predictionDrift", "max": 0.2}, Raw(canary=None, stable=None), "NoData"),
        (
            {"builtin": "predictionDrift", "max": 0.2},
            Raw(canary={0.5: 5.0, 1.0: 100.0}, stable={0.5: 60.0, 1.0: 100.0}),
            "NoData",
        ),
    ],
)
def test_each_measurement_has_one_of_four_results(fields, raw, result) -> None:
    measured = evaluate(metric(**fields), raw, AT)
    assert measured.result == result
    assert measured.bound
    if result == "Failed":
        assert measured.message, "a failure says which value broke which bound"


def test_a_tick_is_as_bad_as_its_worst_metric() -> None:
    assert overall(["Successful", "NoData"]) == "NoData"
    assert overall(["NoData", "Error"]) == "Error"
    assert overall(["Error", "Failed", "Successful"]) == "Failed"
    assert overall(["Successful"]) == "Successful"


def test_time_to_rollback_contract() -> None:
    assert (
        time_to_rollback(analysis({"name": "ok", "builtin": "successRate", "min": 0.9}, interval="10s", failureLimit=2))
        == 30
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"builtin": "successRate"}, "needs a bound"),
        ({"builtin": "successRate", "query": "x", "min": 1}, "exactly one of builtin, query or web"),
        ({"query": "x", "min": 2, "max": 1}, "min must not exceed max"),
    ],
)
def test_incoherent_metrics_are_refused(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        metric(**fields)


def test_mlserver_presets_use_its_real_metric_names() -> None:
    ok, p99 = queries(
        analysis(
            {"name": "ok", "builtin": "successRate", "min": 0.99}, {"name": "p99", "builtin": "latencyP99", "max": 0.3}
        ),
        "mlserver",
        "risk",
        "fraud",
        "c1",
        None,
    )
    assert 'rest_server_requests_total{namespace="risk",modeldeploy_io_revision="c1",status_code!~"5.."}' in ok.canary
    assert "rest_server_request_duration_seconds_bucket" in p99.canary


def test_accuracy_and_error_count_labels_for_the_revision_of_the_prediction_with_a_minimum() -> None:
    accuracy, error = queries(
        analysis(
            {"name": "acc", "builtin": "accuracy", "window": "10m", "minLabels": 50, "relative": {"maxDecrease": 0.02}},
            {"name": "mae", "builtin": "meanAbsoluteError", "max": 0.3},
        ),
        "modelserver",
        "risk",
        "fraud",
        "canary1",
        "stable1",
    )
    assert accuracy.kind == "scalar"
    assert accuracy.canary == (
        '(sum(increase(modelserver_feedback_correct_total{namespace="risk",prediction_revision="canary1"}[10m])) '
        '/ sum(increase(modelserver_feedback_labels_total{namespace="risk",prediction_revision="canary1"}[10m]))) '
        'and on() (sum(increase(modelserver_feedback_labels_total{namespace="risk",prediction_revision="canary1"}'
        "[10m])) >= 50)"
    )
    assert accuracy.stable is not None
    assert 'prediction_revision="stable1"' in accuracy.stable
    assert "modeldeploy_io_revision" not in accuracy.canary, "not the pod's revision: any pod may count a label"
    assert "modelserver_feedback_error_sum" in error.canary
    assert "modelserver_feedback_error_count" in error.canary
    assert ">= 100)" in error.canary, "minLabels defaults to 100"
    assert error.stable is None


@pytest.mark.parametrize(
    ("fields", "raw", "result", "says"),
    [
        ({"builtin": "accuracy", "min": 0.9}, Raw(canary=0.95), "Successful", "within"),
        ({"builtin": "accuracy", "min": 0.9}, Raw(canary=0.8), "Failed", "< 0.9"),
        ({"builtin": "accuracy", "min": 0.9, "minLabels": 30}, Raw(canary=None), "NoData", "fewer than 30 labels"),
        ({"builtin": "accuracy", "relative": {"maxDecrease": 0.02}}, Raw(canary=0.9, stable=0.95), "Failed", "below"),
        (
            {"builtin": "accuracy", "relative": {"maxDecrease": 0.02}},
            Raw(canary=0.9, stable=None),
            "NoData",
            "labels for the stable track",
        ),
        ({"builtin": "meanAbsoluteError", "max": 0.2}, Raw(canary=0.3), "Failed", "> 0.2"),
        ({"builtin": "meanAbsoluteError", "max": 0.2}, Raw(canary=None), "NoData", "fewer than 100 labels"),
    ],
)
def test_too_few_labels_is_no_data_never_a_pass(fields, raw, result, says) -> None:
    measured = evaluate(metric(**fields), raw, AT)
    assert measured.result == result
    assert says in measured.message


def test_drift_compares_the_tracks_over_the_window_or_a_reference_window_for_stable() -> None:
    windowed, referenced = queries(
        analysis(
            {"name": "drift", "builtin": "predictionDrift", "window": "5m", "max": 0.2},
            {"name": "drift-ref", "builtin": "predictionDrift", "window": "5m", "referenceWindow": "1h", "max": 0.2},
        ),
        "modelserver",
        "risk",
        "fraud",
        "canary1",
        "stable1",
    )
    selector = 'namespace="risk",modeldeploy_io_revision="{}"'
    assert (
        windowed.canary == f"sum by (le) (increase(modelserver_prediction_bucket{{{selector.format('canary1')}}}[5m]))"
    )
    assert (
        windowed.stable == f"sum by (le) (increase(modelserver_prediction_bucket{{{selector.format('stable1')}}}[5m]))"
    )
    assert referenced.canary == windowed.canary
    assert referenced.stable is not None
    assert referenced.stable.endswith("[1h]))")


def cumulative(counts: list[int]) -> dict[float, float]:
    """{bucket bound: cumulative count} of ten equal buckets over [0, 1] holding `counts`."""
    out, total = {}, 0.0
    for index, count in enumerate(counts):
        total += count
        out[round(0.1 * (index + 1), 1)] = total
    return out


def test_a_late_drift_that_the_history_dilutes_is_caught_over_the_window() -> None:
    """What each form sees after a day of the same predictions on both tracks and a drifted last window on the
    canary: since the pods started, the drift is diluted below the bound; over the window it is plain."""
    normal = [5, 10, 15, 20, 20, 15, 8, 4, 2, 1]
    drifted = [1, 2, 4, 8, 15, 20, 20, 15, 10, 5]
    day = [c * 100 for c in normal]
    canary_window, stable_window = [c * 3 for c in drifted], [c * 3 for c in normal]
    drift = metric(builtin="predictionDrift", max=0.2, minSamples=200)
    since_start = Raw(
        canary=cumulative([d + w for d, w in zip(day, canary_window, strict=True)]),
        stable=cumulative([d + w for d, w in zip(day, stable_window, strict=True)]),
    )
    over_window = Raw(canary=cumulative(canary_window), stable=cumulative(stable_window))
    assert evaluate(drift, since_start, AT).result == "Successful"
    caught = evaluate(drift, over_window, AT)
    assert caught.result == "Failed"
    assert caught.value is not None
    assert caught.value > 0.5
    young = Raw(canary=cumulative([c // 2 for c in drifted]), stable=cumulative(stable_window))
    assert evaluate(drift, young, AT).result == "NoData", "a young series' few predictions are no data, not drift"
