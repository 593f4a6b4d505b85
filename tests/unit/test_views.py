"""The views (views.py): what `status` and `history` show a person, cell by cell."""

from __future__ import annotations

from typing import Any, cast, get_args

from rich.console import Console, Group
from rich.table import Table

from modeldeploy.core.api import Outcome
from modeldeploy.views import OUTCOME_COLOURS, history_table, status_view


def _text(renderable: Any) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(renderable)
    return console.export_text()


def _row(table: Table, index: int) -> list[str]:
    return [str(column._cells[index]) for column in table.columns]


MD: dict[str, Any] = {
    "metadata": {"namespace": "risk", "name": "fraud-scorer"},
    "spec": {"traffic": {"router": "gatewayAPI"}},
    "status": {
        "phase": "Progressing",
        "replicas": 3,
        "readyReplicas": 3,
        "stable": {"revision": "aaa111", "model": {"name": "m", "version": "7", "uri": "s3://m/7"}},
        "canary": {
            "revision": "bbb222",
            "model": {"name": "m", "version": "8", "uri": "s3://m/8"},
            "phase": "Progressing",
            "stepIndex": 2,
            "stepCount": 4,
            "replicas": 2,
            "readyReplicas": 1,
            "actualWeight": 25,
            "desiredWeight": 50,
        },
        "analysis": {
            "revision": "bbb222",
            "failures": 1,
            "timeToRollbackSeconds": 60,
            "metrics": [
                {
                    "name": "p99",
                    "measurements": [
                        {"result": "Failed", "value": 0.4321, "stableValue": 0.1, "bound": "<= 0.25", "at": "t"}
                    ],
                }
            ],
        },
        "conditions": [{"type": "Degraded", "status": "False", "reason": "AsExpected", "message": ""}],
        "lastRollback": {
            "at": "2026-11-30T10:00:00Z",
            "revision": "ccc333",
            "reason": "AnalysisFailed",
            "message": "x",
        },
    },
}


def test_status_view_puts_each_value_in_its_track() -> None:
    group = cast(Group, status_view(MD).renderable)
    tracks = next(r for r in group.renderables if isinstance(r, Table) and r.columns[1].header == "stable")
    rows = {_row(tracks, i)[0]: _row(tracks, i)[1:] for i in range(tracks.row_count)}
    assert rows["revision"] == ["aaa111", "bbb222"]
    assert rows["model version"] == ["7", "8"]
    assert rows["pods ready"] == ["3/3", "1/2"]
    assert rows["weight"] == ["75%", "25% (wanted 50%)"]


def test_status_view_shows_progress_analysis_and_last_rollback() -> None:
    text = _text(status_view(MD))
    assert "step 3/4" in text
    assert "router gatewayAPI" in text
    assert "0.4321" in text
    assert "<= 0.25" in text
    assert "revision ccc333 (AnalysisFailed)" in text


def test_status_view_without_a_canary_gives_stable_all_traffic() -> None:
    md = {**MD, "status": {**MD["status"], "canary": None, "analysis": None}}
    group = cast(Group, status_view(md).renderable)
    tracks = next(r for r in group.renderables if isinstance(r, Table) and r.columns[1].header == "stable")
    weight = next(_row(tracks, i) for i in range(tracks.row_count) if _row(tracks, i)[0] == "weight")
    assert weight == ["weight", "100%", "-"]


def test_history_colours_every_outcome_and_shows_the_reason() -> None:
    assert set(OUTCOME_COLOURS) == set(get_args(Outcome))
    entry = {
        "revision": "r1",
        "model": {"version": "9"},
        "outcome": "Deployed",
        "startedAt": "s",
        "finishedAt": "f",
        "message": "first revision",
    }
    table = history_table({"status": {"history": [entry, {**entry, "outcome": "RolledBack", "message": "p99"}]}})
    assert _row(table, 0) == ["r1", "9", "[green]Deployed[/]", "s", "f", "first revision"]
    assert _row(table, 1)[2:] == ["[red]RolledBack[/]", "s", "f", "p99"]


def test_status_view_shows_the_time_left_in_a_timed_pause_and_pods_and_events() -> None:
    from datetime import UTC, datetime

    md = {
        **MD,
        "spec": {"rollout": {"steps": [{"setWeight": 20}, {"pause": {"duration": "5m"}}]}},
        "status": {
            **MD["status"],
            "canary": {
                **MD["status"]["canary"],
                "stepIndex": 1,
                "stepCount": 2,
                "stepStartedAt": "2026-11-30T10:00:00Z",
            },
        },
    }
    now = datetime(2026, 11, 30, 10, 1, 30, tzinfo=UTC)
    pod = {
        "metadata": {
            "name": "fraud-scorer-canary-abc",
            "labels": {"modeldeploy.io/track": "canary", "modeldeploy.io/revision": "bbb222"},
            "creationTimestamp": "2026-11-30T10:00:00Z",
        },
        "status": {"phase": "Running", "containerStatuses": [{"ready": True, "restartCount": 2}]},
    }
    event = {
        "type": "Warning",
        "reason": "AnalysisFailed",
        "message": "p99 0.43 > 0.25",
        "lastTimestamp": "2026-11-30T10:01:00Z",
    }
    text = _text(status_view(md, [event], [pod], now))
    assert "step 2/2, pause 210s left" in text
    assert "fraud-scorer-canary-abc" in text
    assert "AnalysisFailed" in text
    assert "p99 0.43 > 0.25" in text


def test_the_default_steps_count_for_the_pause_left() -> None:
    from datetime import UTC, datetime

    from modeldeploy.views import pause_left

    md = {
        "spec": {},
        "status": {"canary": {"phase": "Progressing", "stepIndex": 1, "stepStartedAt": "2026-11-30T10:00:00Z"}},
    }
    assert pause_left(md, datetime(2026, 11, 30, 10, 0, 10, tzinfo=UTC)) == 20  # the default pause is 30s
    md["status"]["canary"]["stepIndex"] = 0
    assert pause_left(md, datetime(2026, 11, 30, 10, 0, 10, tzinfo=UTC)) is None


def test_list_is_one_row_per_object_and_wide_adds_columns() -> None:
    from modeldeploy.views import list_table

    table = list_table([MD], all_namespaces=True, wide=True)
    headers = [str(c.header) for c in table.columns]
    assert headers == [
        "namespace",
        "name",
        "phase",
        "stable",
        "canary",
        "weight",
        "ready",
        "age",
        "revision",
        "router",
        "step",
        "message",
    ]
    assert _row(table, 0)[:7] == ["risk", "fraud-scorer", "[white]Progressing[/]", "7", "8", "25%", "3/3"]
    assert _row(table, 0)[8:11] == ["aaa111", "gatewayAPI", "3/4"]
    assert str(list_table([MD], all_namespaces=False, wide=False).columns[0].header) == "name"
