"""Delayed ground truth on the reference model server: prediction ids, the feedback endpoint and its counters."""

import json

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from modelserver.app import Settings, create_app
from modelserver.feedback import decode, prediction_id

ROWS = [[0.1, -0.2, 0.3, 1.0], [1.5, 0.2, -0.7, 0.0], [-1.0, 0.4, 0.9, -0.3]]


def server(revision: str = "rev-new", prediction_shift: float = 0.0) -> TestClient:
    settings = Settings(
        name="fraud", version="7", uri="builtin://logistic", revision=revision, prediction_shift=prediction_shift
    )
    return TestClient(create_app(settings))


def predict(client: TestClient, rows: list[list[float]]) -> list[tuple[str, float]]:
    body = {
        "inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP64", "data": [v for row in rows for v in row]}]
    }
    answer = client.post("/v2/models/fraud/infer", json=body).json()
    return list(zip(answer["parameters"]["prediction_ids"], answer["outputs"][0]["data"], strict=True))


def counters(client: TestClient) -> dict[tuple[str, str], float]:
    """(sample name, prediction_revision or reason) -> value, for the feedback families."""
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name.startswith("modelserver_feedback") and "le" not in sample.labels:
                key = sample.labels.get("prediction_revision") or sample.labels.get("reason", "")
                out[(sample.name, key)] = sample.value
    return out


def post_json(client: TestClient, body: object):
    """Posted as Python writes JSON, NaN included (a client may send it; the server must refuse it)."""
    return client.post(
        "/v2/models/fraud/feedback", content=json.dumps(body), headers={"content-type": "application/json"}
    )


def right(score: float) -> int:
    return 1 if score >= 0.5 else 0


def test_every_prediction_gets_an_id_that_carries_its_revision_and_value() -> None:
    client = server()
    predictions = predict(client, ROWS)
    assert len({identifier for identifier, _ in predictions}) == 3
    for identifier, value in predictions:
        decoded = decode(identifier)
        assert decoded.revision == "rev-new"
        assert decoded.prediction == value
    body: dict[str, object] = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}
    assert decode(client.post("/v2/models/fraud/infer", json=body).json()["id"]).revision == "rev-new"
    body["id"] = "client-42"
    assert client.post("/v2/models/fraud/infer", json=body).json()["id"] == "client-42", "the client's id wins"


def test_a_single_label_and_a_batch_are_counted_with_correctness_and_error() -> None:
    client = server()
    (first, *rest) = predict(client, ROWS)
    answer = client.post("/v2/models/fraud/feedback", json={"id": first[0], "label": right(first[1])})
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 1, "duplicates": 0}
    batch = [{"id": rest[0][0], "label": right(rest[0][1])}, {"id": rest[1][0], "label": 1 - right(rest[1][1])}]
    answer = client.post("/v2/models/fraud/feedback", json={"labels": batch})
    assert answer.json() == {"accepted": 2, "duplicates": 0}
    seen = counters(client)
    assert seen[("modelserver_feedback_labels_total", "rev-new")] == 3
    assert seen[("modelserver_feedback_correct_total", "rev-new")] == 2
    assert seen[("modelserver_feedback_error_count", "rev-new")] == 3
    expected_error = abs(first[1] - right(first[1])) + abs(rest[0][1] - right(rest[0][1]))
    expected_error += abs(rest[1][1] - (1 - right(rest[1][1])))
    assert seen[("modelserver_feedback_error_sum", "rev-new")] == pytest.approx(expected_error)


def test_a_label_counts_for_the_revision_that_predicted_whichever_pod_gets_it() -> None:
    old, new = server("rev-old", prediction_shift=0.6), server("rev-new")
    predictions = predict(old, ROWS)  # all shifted to the positive class; the truth is 0
    labels = [{"id": identifier, "label": 0} for identifier, _ in predictions]
    assert new.post("/v2/models/fraud/feedback", json={"labels": labels}).json()["accepted"] == 3
    seen = counters(new)
    assert seen[("modelserver_feedback_labels_total", "rev-old")] == 3
    assert seen[("modelserver_feedback_correct_total", "rev-old")] == 0
    assert seen[("modelserver_feedback_labels_total", "rev-new")] == 0, "the new revision's own counters untouched"
    assert counters(old)[("modelserver_feedback_labels_total", "rev-old")] == 0, "the old pod never saw them"


def test_a_resent_label_is_counted_once() -> None:
    client = server()
    (identifier, value), *_ = predict(client, ROWS)
    label = {"id": identifier, "label": right(value)}
    assert client.post("/v2/models/fraud/feedback", json={"labels": [label, label]}).json() == {
        "accepted": 1,
        "duplicates": 1,
    }
    assert client.post("/v2/models/fraud/feedback", json=label).json() == {"accepted": 0, "duplicates": 1}
    seen = counters(client)
    assert seen[("modelserver_feedback_labels_total", "rev-new")] == 1
    assert seen[("modelserver_feedback_rejected_total", "duplicate")] == 2


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ({"id": "not-an-id", "label": 1}, "not a prediction id"),
        ({"id": None, "label": 1}, "not a prediction id"),
        ({"id": 12, "label": 1}, "not a prediction id"),
        ({"id": "rev-new:0.9:0123456789ab:00000000", "label": 1}, "checksum is wrong"),
        ({"label": 1}, "not a prediction id"),
        ({"id": "VALID", "label": "yes"}, "not a finite number"),
        ({"id": "VALID"}, "not a finite number"),
        ({"id": "VALID", "label": float("nan")}, "not a finite number"),
    ],
    ids=["garbage", "null", "number", "forged", "no-id", "label-text", "no-label", "label-nan"],
)
def test_a_malformed_or_unknown_label_is_a_422_and_a_batch_with_one_counts_nothing(item, says) -> None:
    client = server()
    (identifier, _), (other, other_value), _ = predict(client, ROWS)
    item = {k: identifier if v == "VALID" else v for k, v in item.items()}
    single = post_json(client, item)
    assert single.status_code == 422
    assert says in str(single.json()["detail"])
    good = {"id": other, "label": right(other_value)}
    batch = post_json(client, {"labels": [good, item]})
    assert batch.status_code == 422
    detail = batch.json()["detail"]
    assert "nothing was counted" in detail["message"]
    assert detail["errors"][0].startswith("labels[1]:"), "the bad item is named by its place in the batch"
    assert counters(client)[("modelserver_feedback_labels_total", "rev-new")] == 0
    # Nothing lost: the good label, sent again without the bad one, is counted.
    assert client.post("/v2/models/fraud/feedback", json={"labels": [good]}).json()["accepted"] == 1


def test_other_bad_requests_are_clear_4xx() -> None:
    client = server()
    (identifier, _), *_ = predict(client, ROWS)
    assert client.post("/v2/models/other/feedback", json={"id": identifier, "label": 1}).status_code == 404
    both = client.post("/v2/models/fraud/feedback", json={"id": identifier, "label": 1, "labels": []})
    assert both.status_code == 422
    assert "either one label" in both.json()["detail"]
    assert client.post("/v2/models/fraud/feedback", content=b"{").status_code == 422
    too_many = [{"id": identifier, "label": 1}] * 10_001
    answer = client.post("/v2/models/fraud/feedback", json={"labels": too_many})
    assert answer.status_code == 413
    assert "at most 10000" in answer.json()["detail"]


def test_counters_are_kept_for_a_bounded_number_of_revisions() -> None:
    client = server()
    labels = [{"id": prediction_id(f"rev-{n}", 0.9), "label": 1} for n in range(40)]
    assert client.post("/v2/models/fraud/feedback", json={"labels": labels}).json()["accepted"] == 40
    kept = {key for (name, key) in counters(client) if name == "modelserver_feedback_labels_total"}
    assert len(kept) == 32
    assert "rev-39" in kept
    assert "rev-0" not in kept, "the revision labelled least recently went first"
