"""The model server's digest definition, and how it finds and loads a model in MODEL_DIR by format."""

from __future__ import annotations

import hashlib
import pickle
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelserver.__main__ import main
from modelserver.app import Settings, create_app
from modelserver.digest import FETCH_RECORD, parse_digest, path_digest, tree_digest
from modelserver.models import ModelLoadError, load_from_dir, locate

ROWS = [[0.1, -0.2, 0.3, 1.0], [1.5, 0.2, -0.7, 0.0]]


class CustomEstimator(LogisticRegression):
    """A type skops does not trust unless told to."""


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    features, labels = make_classification(n_samples=60, n_features=4, random_state=2)
    return LogisticRegression().fit(features, labels)


def infer(client: TestClient, name: str = "fraud"):
    data = [v for row in ROWS for v in row]
    return client.post(
        f"/v2/models/{name}/infer",
        json={"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": data}]},
    )


def mlflow_dir(root: Path, estimator: LogisticRegression, flavours: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.pkl").write_bytes(pickle.dumps(estimator))
    (root / "MLmodel").write_text(
        flavours
        or "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n"
        "  sklearn:\n    pickled_model: model.pkl\n    serialization_format: pickle\n"
    )
    (root / "requirements.txt").write_text("scikit-learn\n")
    return root


def onnx_bytes(estimator: LogisticRegression, zipmap: bool = True) -> bytes:
    from skl2onnx import to_onnx

    options = {} if zipmap else {id(estimator): {"zipmap": False}}
    sample = np.asarray(ROWS[:1], dtype=np.float32)
    return bytes(to_onnx(estimator, sample, options=options).SerializeToString())


# The digest ------------------------------------------------------------------------------------------------


def test_a_file_digest_is_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"weights")
    assert path_digest(path) == "sha256:" + hashlib.sha256(b"weights").hexdigest()


def test_a_directory_digest_is_over_sorted_path_and_file_hash_lines(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.bin").write_bytes(b"zz")
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "empty").mkdir()
    (tmp_path / FETCH_RECORD).write_text("{}")  # the fetch's own record is not part of the model
    lines = "".join(
        f"{rel}\0{hashlib.sha256(data).hexdigest()}\n" for rel, data in [("a.txt", b"a"), ("b/z.bin", b"zz")]
    )
    assert path_digest(tmp_path) == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
    # Order-independent and timestamp-independent: only names and contents count.
    assert path_digest(tmp_path) == tree_digest(
        [("b/z.bin", hashlib.sha256(b"zz").hexdigest()), ("a.txt", hashlib.sha256(b"a").hexdigest())]
    )
    (tmp_path / "a.txt").write_bytes(b"A")
    assert path_digest(tmp_path) != "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def test_a_renamed_file_changes_the_directory_digest(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"x")
    before = path_digest(tmp_path)
    (tmp_path / "model.pkl").rename(tmp_path / "other.pkl")
    assert path_digest(tmp_path) != before


def test_pins_must_be_sha256_and_64_hex_digits() -> None:
    assert parse_digest(" SHA256:" + "A" * 64) == "sha256:" + "a" * 64
    for bad in ("sha256:abc", "md5:" + "a" * 64, "a" * 64, "sha256:" + "g" * 64):
        with pytest.raises(ValueError, match="MODEL_DIGEST must be sha256:<64 hex digits>"):
            parse_digest(bad)


def test_the_digest_command_prints_what_to_pin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.pkl").write_bytes(b"weights")
    with pytest.raises(SystemExit) as exited:
        main(["digest", str(tmp_path / "model.pkl"), str(tmp_path)])
    assert exited.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"sha256:{hashlib.sha256(b'weights').hexdigest()}  {tmp_path / 'model.pkl'}"
    assert out[1].startswith("sha256:")
    assert out[1].endswith(str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        main(["digest", str(tmp_path / "missing")])
    assert exited.value.code == 1
    assert "missing" in capsys.readouterr().err


# Formats ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.pkl", "model.joblib", "weights.bin"])
def test_sklearn_files_by_name_or_as_the_only_file(tmp_path: Path, estimator: LogisticRegression, name: str) -> None:
    if name.endswith(".joblib"):
        joblib.dump(estimator, tmp_path / name)
    else:
        (tmp_path / name).write_bytes(pickle.dumps(estimator))
    (tmp_path / FETCH_RECORD).write_text("{}")
    model, found = load_from_dir(tmp_path, None)
    assert found.kind == "sklearn"
    assert found.path.name == name
    assert model.predict_proba(np.asarray(ROWS)).shape == (2, 2)
    assert load_from_dir(tmp_path, "sklearn")[1].path.name == name


def test_model_pkl_wins_among_several_files(tmp_path: Path, estimator: LogisticRegression) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(estimator))
    (tmp_path / "README.md").write_text("notes")
    assert locate(tmp_path, None).path.name == "model.pkl"


def test_several_files_and_none_named_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"\x80")
    (tmp_path / "b.bin").write_bytes(b"\x80")
    with pytest.raises(ModelLoadError, match=r"cannot tell which file in .* is the model \(it holds a.bin, b.bin\)"):
        locate(tmp_path, None)


def test_an_mlflow_directory_serves_its_sklearn_flavour(tmp_path: Path, estimator: LogisticRegression) -> None:
    root = mlflow_dir(tmp_path / "m", estimator)
    for wanted in (None, "mlflow", "sklearn"):
        found = locate(root, wanted)
        assert (found.kind, found.path.name, found.via_mlflow) == ("sklearn", "model.pkl", True)


def test_a_prefix_holding_one_model_directory_is_followed(tmp_path: Path, estimator: LogisticRegression) -> None:
    mlflow_dir(tmp_path / "model", estimator)
    assert locate(tmp_path, None).path == (tmp_path / "model" / "model.pkl").resolve()


def test_mlmodel_without_a_servable_flavour_names_both(tmp_path: Path, estimator: LogisticRegression) -> None:
    root = mlflow_dir(
        tmp_path / "m",
        estimator,
        "flavors:\n  python_function:\n    loader_module: mlflow.pytorch\n  pytorch:\n    model_data: data\n",
    )
    with pytest.raises(ModelLoadError, match=r"has flavours \['python_function', 'pytorch'\]; .*\['sklearn', 'onnx'\]"):
        locate(root, None)
    with pytest.raises(ModelLoadError, match=r"MODEL_FORMAT=sklearn but the MLflow model .* \['python_function', "):
        locate(root, "sklearn")


def test_mlmodel_naming_a_missing_or_escaping_file_is_refused(tmp_path: Path, estimator: LogisticRegression) -> None:
    root = mlflow_dir(tmp_path / "m", estimator, "flavors:\n  sklearn:\n    pickled_model: ../../etc/passwd\n")
    with pytest.raises(ModelLoadError, match="which is not a file in the model"):
        locate(root, None)


def test_format_mismatches_name_both_sides(tmp_path: Path, estimator: LogisticRegression) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(estimator))
    with pytest.raises(ModelLoadError, match=r"MODEL_FORMAT=onnx but .* holds a scikit-learn model \(model.pkl\)"):
        locate(tmp_path, "onnx")
    with pytest.raises(ModelLoadError, match=r"MODEL_FORMAT=mlflow but .* has no MLmodel file \(it holds model.pkl\)"):
        locate(tmp_path, "mlflow")
    other = tmp_path / "o"
    other.mkdir()
    (other / "model.onnx").write_bytes(onnx_bytes(estimator))
    with pytest.raises(ModelLoadError, match=r"MODEL_FORMAT=sklearn but .* holds an ONNX model \(model.onnx\)"):
        locate(other, "sklearn")
    with pytest.raises(ModelLoadError, match="MODEL_FORMAT='tensorflow' is not a format this server loads"):
        load_from_dir(tmp_path, "tensorflow")


def test_an_unknown_file_needs_model_format(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(b"PK\x03\x04")
    with pytest.raises(ModelLoadError, match=r"cannot tell the format of .*blob: set MODEL_FORMAT"):
        locate(tmp_path, None)


def test_missing_or_empty_model_dir_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        locate(tmp_path / "nope", None)
    with pytest.raises(ModelLoadError, match="is empty"):
        locate(tmp_path, None)


@pytest.mark.parametrize("zipmap", [True, False])
def test_onnx_models_serve_probabilities(tmp_path: Path, estimator: LogisticRegression, zipmap: bool) -> None:
    (tmp_path / "model.onnx").write_bytes(onnx_bytes(estimator, zipmap))
    model, found = load_from_dir(tmp_path, "onnx")
    assert found.kind == "onnx"
    expected = estimator.predict_proba(np.asarray(ROWS))
    assert np.allclose(model.predict_proba(np.asarray(ROWS)), expected, atol=1e-5)
    with pytest.raises(ValueError, match="INVALID_ARGUMENT"):
        model.predict_proba(np.zeros((1, 2)))


def test_an_mlflow_onnx_flavour_is_served(tmp_path: Path, estimator: LogisticRegression) -> None:
    (tmp_path / "model.onnx").write_bytes(onnx_bytes(estimator))
    (tmp_path / "MLmodel").write_text("flavors:\n  onnx:\n    data: model.onnx\n    onnx_version: 1.17.0\n")
    _model, found = load_from_dir(tmp_path, "mlflow")
    assert (found.kind, found.via_mlflow) == ("onnx", True)


def test_onnx_without_onnxruntime_is_a_clear_error(
    tmp_path: Path, estimator: LogisticRegression, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model.onnx").write_bytes(onnx_bytes(estimator))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an image without the onnx extra has
    with pytest.raises(ModelLoadError, match=r"onnxruntime is not installed: install the `onnx` extra"):
        load_from_dir(tmp_path, None)


# The app ---------------------------------------------------------------------------------------------------


def test_the_server_loads_from_model_dir_and_reports_the_platform(
    tmp_path: Path, estimator: LogisticRegression
) -> None:
    mlflow_dir(tmp_path, estimator)
    client = TestClient(create_app(Settings(name="fraud", version="3", uri="models:/fraud/3", model_dir=str(tmp_path))))
    response = infer(client)
    assert response.status_code == 200
    assert np.allclose(response.json()["outputs"][0]["data"], estimator.predict_proba(np.asarray(ROWS))[:, 1])
    assert client.get("/v2/models/fraud").json()["platform"] == "sklearn"


def test_the_server_serves_onnx_with_the_same_api(tmp_path: Path, estimator: LogisticRegression) -> None:
    (tmp_path / "model.onnx").write_bytes(onnx_bytes(estimator))
    settings = Settings(name="fraud", version="1", uri="s3://b/k", model_dir=str(tmp_path), model_format="onnx")
    client = TestClient(create_app(settings))
    assert client.get("/v2/models/fraud").json()["platform"] == "onnx"
    response = infer(client)
    assert response.status_code == 200
    assert np.allclose(
        response.json()["outputs"][0]["data"], estimator.predict_proba(np.asarray(ROWS))[:, 1], atol=1e-5
    )
    bad = client.post(
        "/v2/models/fraud/infer", json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}
    )
    assert bad.status_code == 400


def test_builtin_wins_over_model_dir(tmp_path: Path) -> None:
    settings = Settings(name="fraud", version="1", uri="builtin://logistic", model_dir=str(tmp_path / "empty"))
    assert infer(TestClient(create_app(settings))).status_code == 200


def test_without_model_dir_a_remote_uri_says_to_fetch_first() -> None:
    with pytest.raises(ValueError, match=r"unsupported model URI 's3://bucket/model' without MODEL_DIR: fetch it"):
        create_app(Settings(name="fraud", version="1", uri="s3://bucket/model"))


def test_settings_read_model_dir_and_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_URI", raising=False)
    monkeypatch.delenv("MODEL_DIR", raising=False)
    assert Settings.from_env().uri == "builtin://logistic"  # nothing named: the demo model
    monkeypatch.setenv("MODEL_DIR", "/mnt/models")
    monkeypatch.setenv("MODEL_FORMAT", "mlflow")
    settings = Settings.from_env()
    assert (settings.uri, settings.model_dir, settings.model_format) == ("", "/mnt/models", "mlflow")


def test_the_log_names_what_the_fetch_recorded(
    tmp_path: Path, estimator: LogisticRegression, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(estimator))
    (tmp_path / FETCH_RECORD).write_text('{"uri": "s3://models/fraud/v1", "digest": "sha256:ab"}')
    caplog.set_level("INFO", "modelserver")
    create_app(Settings(name="fraud", version="1", uri="s3://models/fraud/v1", model_dir=str(tmp_path)))
    assert "fetched from s3://models/fraud/v1 (sha256:ab)" in caplog.text


def test_serving_stays_the_default_command(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[str, int]] = []
    monkeypatch.setattr("modelserver.__main__._serve", lambda host, port: served.append((host, port)))
    main(["--host", "127.0.0.1", "--port", "9001"])
    main(["serve", "--port", "9002"])
    main([])
    assert served[0] == ("127.0.0.1", 9001)
    assert served[1][1] == 9002
    assert len(served) == 3


def test_skops_files_and_mlflow_skops_models_load(tmp_path: Path, estimator: LogisticRegression) -> None:
    import skops.io

    skops.io.dump(estimator, tmp_path / "model.skops")
    model, found = load_from_dir(tmp_path, None)
    assert (found.kind, found.serialization) == ("sklearn", "skops")
    assert np.allclose(model.predict_proba(np.asarray(ROWS)), estimator.predict_proba(np.asarray(ROWS)))
    (tmp_path / "MLmodel").write_text(  # what mlflow.sklearn.log_model writes by default since MLflow 3
        "flavors:\n  sklearn:\n    pickled_model: model.skops\n    serialization_format: skops\n"
        "    skops_trusted_types: null\n"
    )
    _, found = load_from_dir(tmp_path, "mlflow")
    assert (found.serialization, found.via_mlflow) == ("skops", True)


def test_skops_refuses_types_the_mlmodel_does_not_trust(tmp_path: Path) -> None:
    import skops.io

    skops.io.dump(CustomEstimator(), tmp_path / "model.skops")
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: model.skops\n    serialization_format: skops\n"
    )
    with pytest.raises(ModelLoadError, match=r"cannot load the scikit-learn model .*model.skops \(skops\): Untrusted"):
        load_from_dir(tmp_path, None)


def test_an_unknown_mlflow_serialization_is_named(tmp_path: Path, estimator: LogisticRegression) -> None:
    mlflow_dir(tmp_path, estimator, "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    serialization_format: x\n")
    with pytest.raises(ModelLoadError, match="serialization_format 'x' is not one this server reads"):
        locate(tmp_path, None)
