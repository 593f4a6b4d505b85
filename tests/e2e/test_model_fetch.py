"""`modelserver fetch` against real servers, then the model server on what it fetched.

Each scheme is fetched by the real `modelserver fetch` process (as the init container runs it) from a real local
server, and the model server process then answers a v2 inference request from the fetched MODEL_DIR: S3 (the
Versity S3 Gateway, which checks SigV4 signatures), GCS (fake-gcs-server), HTTP (a local file server with a
bearer token), file://, and the MLflow registry (a real `mlflow server`, with a model logged by MLflow itself).
The faults are real too: refused credentials, missing objects, a digest mismatch, a format the server refuses,
an overall timeout. No control plane is needed. The servers come from tests/model_fetch_components.py; when one
cannot be built or started the test fails and says why (it never skips).
"""

from __future__ import annotations

import json
import pickle
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from model_fetch_components import (
    S3_SECRET_KEY,
    ComponentUnavailableError,
    GCSServer,
    MLflowServer,
    ModelServer,
    S3Server,
    http_file_server,
    run_fetch,
    sha256,
    start_failure,
)
from modelserver.digest import path_digest

# A cold machine builds two Go servers and installs MLflow the first time (minutes); later runs take seconds.
pytestmark = pytest.mark.timeout(1800)

ROWS = [[0.1, -0.2, 0.3, 1.0], [1.5, 0.2, -0.7, 0.0]]
TOKEN = "http-bearer-Token-7f3a9c"
T = TypeVar("T")


def component(start: Callable[[], T], what: str) -> T:
    try:
        return start()
    except ComponentUnavailableError as error:
        pytest.fail(f"{what} could not start, so the model-fetch tests cannot run: {error}", pytrace=False)


def echo(line: str) -> None:
    print(line, flush=True)


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    features, labels = make_classification(n_samples=200, n_features=4, random_state=5)
    return LogisticRegression().fit(features, labels)


@pytest.fixture(scope="module")
def model_src(tmp_path_factory: pytest.TempPathFactory, estimator: LogisticRegression) -> Path:
    """A model directory as a data scientist would upload it: the pickle and a note beside it."""
    root = tmp_path_factory.mktemp("model-src")
    (root / "model.pkl").write_bytes(pickle.dumps(estimator))
    (root / "docs").mkdir()
    (root / "docs" / "README.md").write_text("fraud model, trained on synthetic data\n")
    return root


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, model_src: Path) -> Iterator[S3Server]:
    server = component(lambda: S3Server(tmp_path_factory.mktemp("s3")).start(echo), "the S3 server (versitygw)")
    server.put_tree("fraud/v1", model_src)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory, model_src: Path) -> Iterator[GCSServer]:
    server = GCSServer(tmp_path_factory.mktemp("gcs"))
    target = server.data / "models" / "fraud" / "v2"
    target.mkdir(parents=True)
    for path in model_src.rglob("*"):
        if path.is_file():
            (target / path.relative_to(model_src)).parent.mkdir(parents=True, exist_ok=True)
            (target / path.relative_to(model_src)).write_bytes(path.read_bytes())
    component(lambda: server.start(echo), "the GCS emulator (fake-gcs-server)")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLflowServer]:
    server = component(lambda: MLflowServer(tmp_path_factory.mktemp("mlflow")).start(echo), "the MLflow server")
    yield server
    server.stop()


def serve(model_dir: Path, tmp_path: Path, model_format: str | None = None) -> list[float]:
    with ModelServer(model_dir, tmp_path / "modelserver.log", model_format) as server:
        return server.infer(ROWS)


def expected(estimator: LogisticRegression) -> list[float]:
    return [float(p) for p in estimator.predict_proba(np.asarray(ROWS))[:, 1]]


# S3 ---------------------------------------------------------------------------------------------------------


def test_s3_prefix_pinned_fetched_and_served(
    s3: S3Server, model_src: Path, estimator: LogisticRegression, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    pin = path_digest(model_src)
    env = {**s3.env(), "MODEL_URI": "s3://models/fraud/v1", "MODEL_DIR": str(models), "MODEL_DIGEST": pin}
    run = run_fetch({**env, "MODELSERVER_LOG_LEVEL": "DEBUG"}, tmp_path)
    assert run.code == 0, run.output
    assert run.report["digest"] == pin
    assert run.report["bytes"] == sum(p.stat().st_size for p in model_src.rglob("*") if p.is_file())
    assert f"fetched s3://models/fraud/v1: {pin}" in run.output
    assert "(100%)" in run.output
    assert S3_SECRET_KEY not in run.output  # at DEBUG, third-party loggers included
    assert (models / "docs" / "README.md").exists()
    assert serve(models, tmp_path) == pytest.approx(expected(estimator))


def test_s3_single_onnx_object_served_as_onnx(s3: S3Server, estimator: LogisticRegression, tmp_path: Path) -> None:
    from skl2onnx import to_onnx

    onnx = bytes(to_onnx(estimator, np.asarray(ROWS[:1], dtype=np.float32)).SerializeToString())
    s3.put("onnx/fraud.onnx", onnx)
    models = tmp_path / "models"
    run = run_fetch({**s3.env(), "MODEL_URI": "s3://models/onnx/fraud.onnx", "MODEL_DIR": str(models)}, tmp_path)
    assert run.code == 0, run.output
    assert run.report["digest"] == sha256(onnx)  # one object: the SHA-256 of its bytes
    assert serve(models, tmp_path, "onnx") == pytest.approx(expected(estimator), abs=1e-5)


def test_s3_wrong_credentials_are_refused_and_never_shown(s3: S3Server, tmp_path: Path) -> None:
    wrong = "wrong-" + S3_SECRET_KEY[::-1]
    env = {**s3.env(AWS_SECRET_ACCESS_KEY=wrong), "MODEL_URI": "s3://models/fraud/v1"}
    run = run_fetch({**env, "MODEL_DIR": str(tmp_path / "models"), "MODELSERVER_LOG_LEVEL": "DEBUG"}, tmp_path)
    assert run.code == 5, run.output
    assert run.report["error"].startswith(
        "access denied: S3 refused s3://models/fraud/v1 with the access key from AWS_ACCESS_KEY_ID/"
        "AWS_SECRET_ACCESS_KEY (SignatureDoesNotMatch"
    )
    assert wrong not in run.output + json.dumps(run.report)


def test_s3_missing_object_or_bucket_names_the_uri(s3: S3Server, tmp_path: Path) -> None:
    env = {**s3.env(), "MODEL_DIR": str(tmp_path / "models")}
    run = run_fetch({**env, "MODEL_URI": "s3://models/fraud/v9/model.pkl"}, tmp_path)
    assert run.code == 4, run.output
    assert run.report["error"] == "not found: no object s3://models/fraud/v9/model.pkl and nothing under that prefix"
    run = run_fetch({**env, "MODEL_URI": "s3://no-such-bucket/model.pkl"}, tmp_path)
    assert run.code == 4, run.output
    assert run.report["error"].startswith("not found: s3://no-such-bucket/model.pkl (NoSuchBucket")


def test_s3_digest_mismatch_leaves_nothing_to_serve(s3: S3Server, model_src: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    pin = "sha256:" + "0" * 64
    env = {**s3.env(), "MODEL_URI": "s3://models/fraud/v1", "MODEL_DIR": str(models), "MODEL_DIGEST": pin}
    run = run_fetch(env, tmp_path)
    assert run.code == 7, run.output
    assert run.report["error"].startswith(
        f"digest mismatch: spec pins {pin}, the artifact at s3://models/fraud/v1 is {path_digest(model_src)}"
    )
    assert list(models.iterdir()) == []
    code, log = start_failure(models, tmp_path / "server.log")
    assert code == 1
    assert f"the model directory {models} is empty" in log


def test_s3_unreachable_endpoint(tmp_path: Path) -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    run = run_fetch({**env, "MODEL_URI": "s3://models/x", "MODEL_DIR": str(tmp_path / "m")}, tmp_path)
    assert run.code == 9, run.output
    assert run.report["error"].startswith("cannot reach S3 at http://127.0.0.1:9 for s3://models/x")


def test_s3_deadline_stops_a_big_download(s3: S3Server, tmp_path: Path) -> None:
    s3.put("big/model.bin", bytes(64 * 1024 * 1024))
    models = tmp_path / "models"
    env = {**s3.env(), "MODEL_URI": "s3://models/big/model.bin", "MODEL_DIR": str(models)}
    run = run_fetch({**env, "MODEL_FETCH_TIMEOUT_SECONDS": "0.01"}, tmp_path)
    assert run.code == 6, run.output
    assert run.report["error"].startswith(
        "timeout: fetching s3://models/big/model.bin did not finish within 0.01 s (MODEL_FETCH_TIMEOUT_SECONDS); "
    )
    assert list(models.iterdir()) == []


def test_a_format_the_server_cannot_serve_is_named(s3: S3Server, tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert run_fetch({**s3.env(), "MODEL_URI": "s3://models/fraud/v1", "MODEL_DIR": str(models)}, tmp_path).code == 0
    code, log = start_failure(models, tmp_path / "server.log", model_format="onnx")
    assert code == 1
    assert f"MODEL_FORMAT=onnx but {models} holds a scikit-learn model (model.pkl)" in log
    s3.put("torch/MLmodel", b"flavors:\n  python_function: {loader_module: mlflow.pytorch}\n  pytorch: {}\n")
    s3.put("torch/data/model.pth", b"\x00torch")
    torch = tmp_path / "torch"
    assert run_fetch({**s3.env(), "MODEL_URI": "s3://models/torch", "MODEL_DIR": str(torch)}, tmp_path).code == 0
    code, log = start_failure(torch, tmp_path / "server2.log")
    assert code == 1
    assert "the MLflow model in" in log
    assert "has flavours ['python_function', 'pytorch']; this server serves the flavours ['sklearn', 'onnx']" in log


# GCS, HTTP, file:// -----------------------------------------------------------------------------------------


def test_gcs_prefix_fetched_and_served(
    gcs: GCSServer, model_src: Path, estimator: LogisticRegression, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    run = run_fetch({**gcs.env(), "MODEL_URI": "gs://models/fraud/v2", "MODEL_DIR": str(models)}, tmp_path)
    assert run.code == 0, run.output
    assert run.report["digest"] == path_digest(model_src)
    assert serve(models, tmp_path) == pytest.approx(expected(estimator))
    run = run_fetch({**gcs.env(), "MODEL_URI": "gs://models/fraud/v7", "MODEL_DIR": str(tmp_path / "x")}, tmp_path)
    assert run.code == 4, run.output
    assert run.report["error"] == "not found: no object gs://models/fraud/v7 and nothing under that prefix"


def test_http_file_with_a_bearer_token(model_src: Path, estimator: LogisticRegression, tmp_path: Path) -> None:
    data = (model_src / "model.pkl").read_bytes()
    with http_file_server({"/models/fraud.pkl": data}, token=TOKEN) as url:
        models = tmp_path / "models"
        env = {"MODEL_URI": f"{url}/models/fraud.pkl", "MODEL_DIR": str(models), "MODEL_HTTP_BEARER_TOKEN": TOKEN}
        run = run_fetch({**env, "MODELSERVER_LOG_LEVEL": "DEBUG", "MODEL_DIGEST": sha256(data)}, tmp_path)
        assert run.code == 0, run.output
        assert (models / "fraud.pkl").read_bytes() == data
        assert TOKEN not in run.output
        assert serve(models, tmp_path) == pytest.approx(expected(estimator))

        wrong = {**env, "MODEL_HTTP_BEARER_TOKEN": "stale-" + TOKEN, "MODEL_DIR": str(tmp_path / "w")}
        run = run_fetch({**wrong, "MODELSERVER_LOG_LEVEL": "DEBUG"}, tmp_path)
        assert run.code == 5, run.output
        assert run.report["error"] == (
            f"access denied: {url}/models/fraud.pkl answered HTTP 401 to the bearer token from MODEL_HTTP_BEARER_TOKEN"
        )
        assert TOKEN not in run.output + json.dumps(run.report)
        run = run_fetch({**env, "MODEL_URI": f"{url}/models/none.pkl", "MODEL_DIR": str(tmp_path / "n")}, tmp_path)
        assert run.code == 4, run.output
        assert run.report["error"] == f"not found: {url}/models/none.pkl answered HTTP 404"


def test_the_overall_deadline(tmp_path: Path) -> None:
    with http_file_server({"/models/big.pkl": b"\x80" * 200_000}) as url:
        env = {"MODEL_URI": f"{url}/slow/models/big.pkl", "MODEL_DIR": str(tmp_path / "m")}
        run = run_fetch({**env, "MODEL_FETCH_TIMEOUT_SECONDS": "1.5"}, tmp_path)
    assert run.code == 6, run.output
    error = run.report["error"]
    assert error.startswith(
        f"timeout: fetching {url}/slow/models/big.pkl did not finish within 1.5 s (MODEL_FETCH_TIMEOUT_SECONDS); "
    )
    assert error.endswith(" of 200000 bytes had arrived")
    assert list((tmp_path / "m").iterdir()) == []


def test_file_uri_copied_and_served(model_src: Path, estimator: LogisticRegression, tmp_path: Path) -> None:
    models = tmp_path / "models"
    run = run_fetch({"MODEL_URI": f"file://{model_src}", "MODEL_DIR": str(models)}, tmp_path)
    assert run.code == 0, run.output
    assert run.report["digest"] == path_digest(model_src) == path_digest(models)
    assert serve(models, tmp_path) == pytest.approx(expected(estimator))


# MLflow -----------------------------------------------------------------------------------------------------

LOG_MODEL = textwrap.dedent(
    """
    import json, mlflow, mlflow.sklearn
    from mlflow import MlflowClient
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    features, labels = make_classification(n_samples=200, n_features=4, random_state=11)
    model = LogisticRegression().fit(features, labels)
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="model", registered_model_name="fraud")  # MLflow's defaults
    MlflowClient().set_registered_model_alias("fraud", "champion", "1")
    print(json.dumps(model.predict_proba({rows})[:, 1].tolist()))
    """
)


def test_mlflow_alias_resolved_fetched_through_the_proxy_and_served(mlflow: MLflowServer, tmp_path: Path) -> None:
    scores = json.loads(mlflow.python(LOG_MODEL.format(rows=ROWS)).strip().splitlines()[-1])
    models = tmp_path / "models"
    env = {"MODEL_URI": "models:/fraud@champion", "MODEL_DIR": str(models), "MLFLOW_TRACKING_URI": mlflow.tracking_uri}
    run = run_fetch(env, tmp_path)
    assert run.code == 0, run.output
    assert run.report["resolved"]["version"] == "1"
    assert run.report["resolved"]["artifact_uri"].startswith("mlflow-artifacts:/")
    assert "serialization_format: skops" in (models / "MLmodel").read_text()  # MLflow 3's default
    assert serve(models, tmp_path) == pytest.approx(scores)

    run = run_fetch({**env, "MODEL_URI": "models:/fraud@challenger", "MODEL_DIR": str(tmp_path / "c")}, tmp_path)
    assert run.code == 8, run.output
    assert run.report["error"] == (
        f"no alias 'challenger' on the registered model 'fraud' at the MLflow tracking server {mlflow.tracking_uri}: "
        "Registered model alias challenger not found."
    )
    run = run_fetch({**env, "MODEL_URI": "models:/fraud/1", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, tmp_path)
    assert run.code == 8, run.output
    assert run.report["error"].startswith("the MLflow tracking server at http://127.0.0.1:9 is unreachable")


def test_mlflow_version_stored_in_s3_is_fetched_from_s3(
    mlflow: MLflowServer, s3: S3Server, estimator: LogisticRegression, tmp_path: Path
) -> None:
    s3.put("registry/fraud-s3/model.pkl", pickle.dumps(estimator))
    s3.put("registry/fraud-s3/MLmodel", b"flavors:\n  sklearn:\n    pickled_model: model.pkl\n")
    api = f"{mlflow.tracking_uri}/api/2.0/mlflow"
    httpx.post(f"{api}/registered-models/create", json={"name": "fraud-s3"}, timeout=30).raise_for_status()
    created = httpx.post(
        f"{api}/model-versions/create",
        json={"name": "fraud-s3", "source": "s3://models/registry/fraud-s3"},
        timeout=30,
    )
    created.raise_for_status()
    version = created.json()["model_version"]["version"]
    models = tmp_path / "models"
    env = {**s3.env(), "MLFLOW_TRACKING_URI": mlflow.tracking_uri, "MODEL_DIR": str(models)}
    run = run_fetch({**env, "MODEL_URI": f"models:/fraud-s3/{version}"}, tmp_path)
    assert run.code == 0, run.output
    assert run.report["resolved"]["artifact_uri"] == "s3://models/registry/fraud-s3"
    assert serve(models, tmp_path, "mlflow") == pytest.approx(expected(estimator))
