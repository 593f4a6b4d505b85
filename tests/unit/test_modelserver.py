"""The reference model server: Open Inference Protocol v2 and the metrics the analysis presets query."""

import pickle

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelserver.app import Settings, create_app

ROWS = [[0.1, -0.2, 0.3, 1.0], [1.5, 0.2, -0.7, 0.0]]


def infer(client: TestClient, name: str = "fraud", rows=ROWS):
    return client.post(
        f"/v2/models/{name}/infer",
        json={
            "inputs": [
                {"name": "x", "shape": [len(rows), 4], "datatype": "FP64", "data": [v for row in rows for v in row]}
            ]
        },
    )


def samples(client: TestClient) -> dict:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_infers_and_counts_requests_latency_and_predictions() -> None:
    client = TestClient(create_app(Settings(name="fraud", version="7", uri="builtin://logistic")))
    assert client.get("/v2/health/ready").json() == {"ready": True}
    response = infer(client)
    assert response.status_code == 200
    scores = response.json()["outputs"][0]["data"]
    assert len(scores) == 2
    assert all(0 <= s <= 1 for s in scores)
    m = samples(client)
    labels = (("model", "fraud"), ("version", "7"))
    assert m[("modelserver_requests_total", (("code", "200"), *labels))] == 1
    assert m[("modelserver_request_duration_seconds_count", labels)] == 1
    assert m[("modelserver_prediction_count", labels)] == 2
    assert m[("modelserver_prediction_bucket", (("le", "1.0"), *labels))] == 2


def test_errors_are_counted_by_status_code() -> None:
    client = TestClient(create_app(Settings(name="fraud", version="7", uri="builtin://logistic", error_rate=1.0)))
    assert infer(client).status_code == 500
    assert infer(client, name="other").status_code == 404
    m = samples(client)
    assert m[("modelserver_requests_total", (("code", "500"), ("model", "fraud"), ("version", "7")))] == 1
    assert m[("modelserver_requests_total", (("code", "404"), ("model", "fraud"), ("version", "7")))] == 1


def test_bad_input_is_a_400_with_the_reason() -> None:
    client = TestClient(create_app(Settings(name="fraud", version="7", uri="builtin://logistic")))
    response = infer(client, rows=[[1.0, 2.0]])
    assert response.status_code == 400
    assert "bad input tensor" in response.json()["detail"]


def test_prediction_shift_moves_the_prediction_histogram() -> None:
    plain = TestClient(create_app(Settings(name="fraud", version="7", uri="builtin://logistic")))
    shifted = TestClient(
        create_app(Settings(name="fraud", version="7", uri="builtin://logistic", prediction_shift=0.5))
    )
    low = infer(plain).json()["outputs"][0]["data"]
    high = infer(shifted).json()["outputs"][0]["data"]
    assert all(h >= min(1.0, lo + 0.5) - 1e-9 for lo, h in zip(low, high, strict=True))


def test_loads_a_pickled_model_and_refuses_unknown_uris(tmp_path) -> None:
    features, labels = make_classification(n_samples=50, n_features=4, random_state=1)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression().fit(features, labels)))
    client = TestClient(create_app(Settings(name="fraud", version="9", uri=f"file://{path}")))
    assert infer(client).status_code == 200
    with pytest.raises(ValueError, match="unsupported model URI"):
        create_app(Settings(name="fraud", version="9", uri="s3://bucket/model"))
