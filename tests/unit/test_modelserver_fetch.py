"""`modelserver fetch` without a network: its contract, progress and report, failures and their exit codes, the
MLflow REST path and HTTP downloads through httpx.MockTransport, and that no secret reaches any output."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserver import fetch as fetch_module
from modelserver import redact, sources
from modelserver.__main__ import main
from modelserver.digest import FETCH_RECORD, path_digest
from modelserver.errors import ExitCode, FetchError, RegistryError, UnsupportedSchemeError, UsageError
from modelserver.fetch import FetchConfig, Progress, encode_report, run
from modelserver.sources import Artifact, Entry, GCSSource, S3Source, parse_models_uri, safe_relative, store_reason

SECRET = "s3cr3t-Value-0123456789"
PIN_ZERO = "sha256:" + "0" * 64


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run_fetch(
    env: dict[str, str], tmp_path: Path, transport: httpx.AsyncBaseTransport | None = None, level: str = "INFO"
) -> tuple[int, dict[str, Any], str]:
    """The fetch command as the init container runs it: exit code, the report, everything logged."""
    stream = io.StringIO()
    redactor = redact.Redactor.from_env(env)
    handler = redact.install(redactor, level)
    handler.setStream(stream)  # type: ignore[attr-defined]
    report = tmp_path / "report.json"
    env = {"MODEL_DIR": str(tmp_path / "models"), "MODEL_FETCH_REPORT": str(report), **env}
    code = run({}, env, redactor, transport)
    return code, json.loads(report.read_text()) if report.exists() else {}, stream.getvalue()


def local_model(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "model.pkl").write_bytes(b"\x80pickled")
    (root / "sub" / "vocab.txt").write_bytes(b"a\nb\n")
    return root


# Configuration ---------------------------------------------------------------------------------------------


def test_the_contract_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "default_report", lambda: None)
    config = FetchConfig.from_env({"MODEL_URI": "s3://b/k"})
    assert (config.model_dir, config.digest, config.timeout, config.report) == (Path("/mnt/models"), None, 600.0, None)
    config = FetchConfig.from_env(
        {"MODEL_URI": "s3://b/k", "MODEL_DIGEST": PIN_ZERO, "MODEL_FETCH_TIMEOUT_SECONDS": "30", "MODEL_DIR": "/x"},
        model_dir="/flag",
    )
    assert (config.model_dir, config.digest, config.timeout) == (Path("/flag"), PIN_ZERO, 30.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MODEL_URI is not set"),
        ({"MODEL_URI": "s3://b/k", "MODEL_DIGEST": "sha256:abc"}, "MODEL_DIGEST must be sha256:<64 hex digits>"),
        ({"MODEL_URI": "s3://b/k", "MODEL_FETCH_TIMEOUT_SECONDS": "0"}, "must be a positive number of seconds"),
        ({"MODEL_URI": "s3://b/k", "MODEL_FETCH_TIMEOUT_SECONDS": "soon"}, "must be a positive number of seconds"),
    ],
)
def test_bad_configuration_is_a_usage_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        FetchConfig.from_env(env)


def test_the_termination_log_is_the_default_report_only_when_writable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "TERMINATION_LOG", "/nonexistent/termination-log")
    assert fetch_module.default_report() is None


# Progress and the report -----------------------------------------------------------------------------------


def test_progress_logs_each_tenth_and_the_rate(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    progress = Progress(total=100 * 1024 * 1024, clock=lambda: now[0])
    caplog.set_level(logging.INFO, "modelserver.fetch")
    for _ in range(100):
        now[0] += 0.01
        progress.add(1024 * 1024)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0] == "10.0 MiB of 100.0 MiB (10%), 100.0 MiB/s"
    assert lines[-1].startswith("100.0 MiB of 100.0 MiB (100%)")


def test_progress_without_a_total_logs_every_few_seconds(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    progress = Progress(total=None, interval=5.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, "modelserver.fetch")
    for _ in range(12):
        now[0] += 1.0
        progress.add(2048)
    assert [r.getMessage() for r in caplog.records] == ["10.0 KiB, 2.0 KiB/s", "20.0 KiB, 2.0 KiB/s"]


def test_the_report_stays_under_the_termination_message_limit() -> None:
    report = {"uri": "s3://b/" + "k" * 10000, "digest": PIN_ZERO, "bytes": 1, "seconds": 0.5}
    text = encode_report(report, redact.Redactor())
    assert len(text.encode()) <= 4096
    assert json.loads(text)["digest"] == PIN_ZERO


# Fetching file:// (the whole pipeline, locally) ------------------------------------------------------------


def test_a_directory_lands_with_its_digest_report_and_progress(tmp_path: Path) -> None:
    source = local_model(tmp_path)
    code, report, logged = run_fetch({"MODEL_URI": f"file://{source}"}, tmp_path)
    assert code == 0, logged
    models = tmp_path / "models"
    assert (models / "model.pkl").read_bytes() == b"\x80pickled"
    assert (models / "sub" / "vocab.txt").read_bytes() == b"a\nb\n"
    assert report["digest"] == path_digest(source) == path_digest(models)
    assert report["uri"] == f"file://{source}"
    assert report["bytes"] == 12
    assert report["seconds"] >= 0
    assert json.loads((models / FETCH_RECORD).read_text())["digest"] == report["digest"]
    assert "(100%)" in logged
    assert f"fetched file://{source}: {report['digest']}, 12 bytes in 2 files" in logged
    assert not [p for p in models.iterdir() if p.name.startswith(".fetch-staging")]


def test_a_single_file_digest_is_its_sha256_and_the_pin_is_checked(tmp_path: Path) -> None:
    source = local_model(tmp_path) / "model.pkl"
    code, report, _ = run_fetch({"MODEL_URI": f"file://{source}", "MODEL_DIGEST": sha(b"\x80pickled")}, tmp_path)
    assert code == 0
    assert report["digest"] == sha(b"\x80pickled")


def test_a_digest_mismatch_fails_and_leaves_nothing_to_load(tmp_path: Path) -> None:
    source = local_model(tmp_path)
    code, report, logged = run_fetch({"MODEL_URI": f"file://{source}", "MODEL_DIGEST": PIN_ZERO}, tmp_path)
    assert code == ExitCode.DIGEST_MISMATCH == 7
    expected = f"digest mismatch: spec pins {PIN_ZERO}, the artifact at file://{source} is {path_digest(source)}"
    assert expected in logged
    assert report == {"uri": f"file://{source}", "error": report["error"], "exitCode": 7}
    assert report["error"].startswith(expected)
    assert list((tmp_path / "models").iterdir()) == []


def test_an_earlier_fetch_is_replaced_but_foreign_files_are_not(tmp_path: Path) -> None:
    source = local_model(tmp_path)
    assert run_fetch({"MODEL_URI": f"file://{source}"}, tmp_path)[0] == 0
    (source / "sub" / "vocab.txt").unlink()
    assert run_fetch({"MODEL_URI": f"file://{source}"}, tmp_path)[0] == 0
    assert not (tmp_path / "models" / "sub").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    code, report, _ = run_fetch({"MODEL_URI": f"file://{source}", "MODEL_DIR": str(foreign)}, tmp_path)
    assert code == ExitCode.USAGE
    assert "is not empty and holds no earlier fetch (keep.txt)" in report["error"]
    assert (foreign / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("uri", "code", "message"),
    [
        ("builtin://logistic", 0, "nothing to fetch"),
        ("pvc://claim/path", 2, "the operator mounts it at MODEL_DIR, there is nothing to fetch"),
        ("ftp://host/model.pkl", 3, "unsupported model URI scheme 'ftp' in ftp://host/model.pkl: fetch supports s3://"),
        ("file:///nonexistent/model.pkl", 4, "not found: file:///nonexistent/model.pkl"),
        ("s3:///key", 2, "no bucket in s3:///key"),
        ("models:/fraud", 2, "use models:/<name>/<version> or models:/<name>@<alias>"),
    ],
)
def test_each_failure_has_its_exit_code_and_message(tmp_path: Path, uri: str, code: int, message: str) -> None:
    env = {"MODEL_URI": uri, "MLFLOW_TRACKING_URI": "http://mlflow.invalid"}
    got, report, logged = run_fetch(env, tmp_path)
    assert got == code
    assert message in logged
    if code:
        assert message in report["error"]
        assert report["exitCode"] == code


def test_the_overall_deadline_says_how_long_and_how_many_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def slow() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await asyncio.Event().wait()  # the stream stalls for good: only the overall deadline ends it
        yield b"never"

    async def resolve(uri: str, context: sources.Context) -> Artifact:
        return Artifact(uri, True, [Entry("model.pkl", 5000, slow)])

    monkeypatch.setattr(sources, "resolve", resolve)
    code, _report, logged = run_fetch({"MODEL_URI": "s3://b/model.pkl", "MODEL_FETCH_TIMEOUT_SECONDS": "0.3"}, tmp_path)
    assert code == ExitCode.TIMEOUT == 6
    assert (
        "timeout: fetching s3://b/model.pkl did not finish within 0.3 s (MODEL_FETCH_TIMEOUT_SECONDS); "
        "1000 of 5000 bytes had arrived" in logged
    )
    assert list((tmp_path / "models").iterdir()) == []


def test_a_librarys_own_timeout_is_not_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        raise TimeoutError("read timed out")
        yield b""

    async def resolve(uri: str, context: sources.Context) -> Artifact:
        return Artifact(uri, True, [Entry("model.pkl", None, stalls)])

    monkeypatch.setattr(sources, "resolve", resolve)
    code, report, _ = run_fetch({"MODEL_URI": "s3://b/model.pkl"}, tmp_path)
    assert code == ExitCode.UNREACHABLE
    assert report["error"] == "timed out talking to the store for s3://b/model.pkl: read timed out"


def test_an_object_key_that_escapes_model_dir_is_refused() -> None:
    assert safe_relative("a//b/c.bin", "s3://b/") == "a/b/c.bin"
    for bad in ("../etc/passwd", "a/../../x", "./", "a\\b"):
        with pytest.raises(FetchError, match="not a plain relative path"):
            safe_relative(bad, "s3://b/")


def test_the_cli_flags_mirror_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = local_model(tmp_path)
    monkeypatch.delenv("MODEL_URI", raising=False)
    report = tmp_path / "r.json"
    with pytest.raises(SystemExit) as exited:
        main(["fetch", "--uri", f"file://{source}", "--dir", str(tmp_path / "d"), "--report", str(report)])
    assert exited.value.code == 0
    assert json.loads(report.read_text())["digest"] == path_digest(source)


# HTTP through a mock transport -----------------------------------------------------------------------------


def http_transport(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("authorization") != f"Bearer {SECRET}":
            return httpx.Response(401, text=f"bad token {request.headers.get('authorization')}")
        if request.url.path == "/models/model.pkl":
            return httpx.Response(200, content=b"\x80weights")
        return httpx.Response(404)

    return httpx.MockTransport(handle)


def test_http_downloads_one_file_with_the_bearer_token(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    env = {"MODEL_URI": "https://models.example/models/model.pkl", "MODEL_HTTP_BEARER_TOKEN": SECRET}
    code, report, logged = run_fetch(env, tmp_path, http_transport(seen))
    assert code == 0, logged
    assert (tmp_path / "models" / "model.pkl").read_bytes() == b"\x80weights"
    assert report["digest"] == sha(b"\x80weights")


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        (
            {"MODEL_URI": "https://models.example/models/other.pkl", "MODEL_HTTP_BEARER_TOKEN": SECRET},
            4,
            "not found: https://models.example/models/other.pkl answered HTTP 404",
        ),
        (
            {"MODEL_URI": "https://models.example/models/model.pkl", "MODEL_HTTP_BEARER_TOKEN": "wrong-" + SECRET},
            5,
            "access denied: https://models.example/models/model.pkl answered HTTP 401 to the bearer token from "
            "MODEL_HTTP_BEARER_TOKEN",
        ),
        (
            {"MODEL_URI": "https://models.example/models/model.pkl"},
            5,
            "answered HTTP 401 to no credentials",
        ),
    ],
)
def test_http_failures(tmp_path: Path, env: dict[str, str], code: int, message: str) -> None:
    got, report, logged = run_fetch(env, tmp_path, http_transport([]), level="DEBUG")
    assert got == code
    assert message in logged
    assert message in report["error"]
    assert SECRET not in logged + json.dumps(report)


def test_http_unreachable(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    code, report, _ = run_fetch({"MODEL_URI": "http://127.0.0.1:9/m.pkl"}, tmp_path, httpx.MockTransport(refuse))
    assert code == ExitCode.UNREACHABLE
    assert report["error"] == "cannot reach http://127.0.0.1:9/m.pkl: Connection refused"


# MLflow through a mock transport ---------------------------------------------------------------------------


class FakeMLflow:
    """The tracking server's REST API as MLflow 3 answers it: registry, aliases, the artifact proxy."""

    def __init__(self, download_uri: str = "mlflow-artifacts:/1/models/m-1/artifacts", auth: str | None = None):
        self.download_uri = download_uri
        self.auth = auth
        self.files = {
            "1/models/m-1/artifacts/MLmodel": b"flavors:\n  sklearn:\n    pickled_model: model.pkl\n",
            "1/models/m-1/artifacts/model.pkl": b"\x80model",
            "1/models/m-1/artifacts/env/requirements.txt": b"scikit-learn\n",
        }
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        if self.auth and request.headers.get("authorization") != self.auth:
            return httpx.Response(401, json={"error_code": "UNAUTHENTICATED", "message": "Unauthorized"})
        path, params = request.url.path, request.url.params
        if path == "/api/2.0/mlflow/registered-models/alias":
            if params["name"] == "fraud" and params["alias"] == "champion":
                return httpx.Response(200, json={"model_version": {"name": "fraud", "version": "3"}})
            message = f"Registered model alias {params['alias']} not found."
            return httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE", "message": message})
        if path == "/api/2.0/mlflow/registered-models/get-latest-versions":
            return httpx.Response(200, json={"model_versions": [{"version": "2"}, {"version": "3"}]})
        if path == "/api/2.0/mlflow/model-versions/get-download-uri":
            if params["name"] == "fraud" and params["version"] in ("2", "3"):
                return httpx.Response(200, json={"artifact_uri": self.download_uri})
            message = f"Model Version (name={params['name']}, version={params['version']}) not found"
            return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": message})
        prefix = "/api/2.0/mlflow-artifacts/artifacts"
        if path == prefix:
            below = params["path"] + "/"
            names = {k[len(below) :].split("/")[0] for k in self.files if k.startswith(below)}
            listing = [
                {"path": n, "is_dir": f"{below}{n}" not in self.files, "file_size": len(self.files.get(below + n, b""))}
                for n in sorted(names)
            ]
            return httpx.Response(200, json={"files": listing} if listing else {})
        if path.startswith(prefix + "/"):
            data = self.files.get(path[len(prefix) + 1 :])
            return httpx.Response(200, content=data) if data is not None else httpx.Response(404)
        return httpx.Response(404)


def test_an_alias_resolves_to_its_version_and_downloads_through_the_proxy(tmp_path: Path) -> None:
    fake = FakeMLflow()
    env = {"MODEL_URI": "models:/fraud@champion", "MLFLOW_TRACKING_URI": "http://mlflow.test:5000"}
    code, report, logged = run_fetch(env, tmp_path, httpx.MockTransport(fake))
    assert code == 0, logged
    models = tmp_path / "models"
    assert (models / "MLmodel").exists()
    assert (models / "env" / "requirements.txt").exists()
    assert report["resolved"] == {
        "model": "fraud",
        "version": "3",
        "artifact_uri": "mlflow-artifacts:/1/models/m-1/artifacts",
    }
    assert report["digest"] == path_digest(models)
    assert "GET /api/2.0/mlflow/model-versions/get-download-uri" in fake.requests
    assert "fetching models:/fraud@champion (fraud version 3): 3 files" in logged


def test_latest_and_a_numbered_version(tmp_path: Path) -> None:
    for uri in ("models:/fraud/latest", "models:/fraud/2"):
        env = {"MODEL_URI": uri, "MLFLOW_TRACKING_URI": "http://mlflow.test", "MODEL_DIR": str(tmp_path / uri[-1])}
        code, report, _ = run_fetch(env, tmp_path, httpx.MockTransport(FakeMLflow()))
        assert code == 0
        assert report["resolved"]["version"] == ("3" if uri.endswith("latest") else "2")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "models:/fraud@challenger",
            "no alias 'challenger' on the registered model 'fraud' at the MLflow tracking server "
            "http://mlflow.test: Registered model alias challenger not found.",
        ),
        ("models:/fraud/9", "no version 9 of the registered model 'fraud' at the MLflow tracking server"),
    ],
)
def test_a_missing_alias_or_version_is_a_registry_error(tmp_path: Path, uri: str, message: str) -> None:
    env = {"MODEL_URI": uri, "MLFLOW_TRACKING_URI": "http://mlflow.test"}
    code, report, _ = run_fetch(env, tmp_path, httpx.MockTransport(FakeMLflow()))
    assert code == ExitCode.REGISTRY == 8
    assert message in report["error"]


def test_refused_mlflow_credentials_name_their_source_not_their_value(tmp_path: Path) -> None:
    fake = FakeMLflow(auth="Basic nope")
    env = {
        "MODEL_URI": "models:/fraud/3",
        "MLFLOW_TRACKING_URI": "http://mlflow.test",
        "MLFLOW_TRACKING_USERNAME": "deployer",
        "MLFLOW_TRACKING_PASSWORD": SECRET,
    }
    code, report, logged = run_fetch(env, tmp_path, httpx.MockTransport(fake), level="DEBUG")
    assert code == ExitCode.ACCESS_DENIED
    assert report["error"] == (
        "access denied: the MLflow tracking server at http://mlflow.test answered HTTP 401 to the user and password "
        "from MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD"
    )
    assert SECRET not in logged


def test_the_mlflow_token_is_sent_and_never_shown(tmp_path: Path) -> None:
    fake = FakeMLflow(auth=f"Bearer {SECRET}")
    env = {"MODEL_URI": "models:/fraud/3", "MLFLOW_TRACKING_URI": "http://mlflow.test", "MLFLOW_TRACKING_TOKEN": SECRET}
    code, _, logged = run_fetch(env, tmp_path, httpx.MockTransport(fake), level="DEBUG")
    assert code == 0
    assert "HTTP Request: GET http://mlflow.test/api/2.0/mlflow/model-versions/get-download-uri" in logged  # DEBUG
    assert SECRET not in logged


def test_an_unreachable_tracking_server(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed")

    env = {"MODEL_URI": "models:/fraud@champion", "MLFLOW_TRACKING_URI": "http://mlflow.test"}
    code, report, _ = run_fetch(env, tmp_path, httpx.MockTransport(refuse))
    assert code == ExitCode.REGISTRY
    assert (
        report["error"]
        == "the MLflow tracking server at http://mlflow.test is unreachable: All connection attempts failed"
    )


def test_a_version_stored_on_the_tracking_servers_disk_cannot_be_fetched(tmp_path: Path) -> None:
    fake = FakeMLflow(download_uri="file:///mlruns/1/abc/artifacts/model")
    env = {"MODEL_URI": "models:/fraud/3", "MLFLOW_TRACKING_URI": "http://mlflow.test"}
    code, report, _ = run_fetch(env, tmp_path, httpx.MockTransport(fake))
    assert code == ExitCode.UNSUPPORTED_SCHEME
    assert "is version 3, stored at file:///mlruns/1/abc/artifacts/model, which this pod cannot read" in report["error"]


def test_a_version_in_s3_is_fetched_from_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    async def from_s3(self: S3Source, uri: str) -> Artifact:
        asked.append(uri)

        async def read() -> AsyncIterator[bytes]:
            yield b"\x80s3"

        return Artifact(uri, True, [Entry("model.pkl", 3, read)])

    monkeypatch.setattr(S3Source, "artifact", from_s3)
    fake = FakeMLflow(download_uri="s3://mlflow/1/abc/artifacts/model.pkl")
    env = {"MODEL_URI": "models:/fraud/3", "MLFLOW_TRACKING_URI": "http://mlflow.test"}
    code, report, _ = run_fetch(env, tmp_path, httpx.MockTransport(fake))
    assert code == 0
    assert asked == ["s3://mlflow/1/abc/artifacts/model.pkl"]
    assert report["uri"] == "models:/fraud/3"
    assert report["digest"] == sha(b"\x80s3")


def test_mlflow_needs_a_tracking_uri(tmp_path: Path) -> None:
    code, report, _ = run_fetch({"MODEL_URI": "models:/fraud/1"}, tmp_path)
    assert code == ExitCode.USAGE
    assert "need MLFLOW_TRACKING_URI" in report["error"]


def test_models_uri_forms() -> None:
    assert parse_models_uri("models:/fraud/3") == ("fraud", "3", None)
    assert parse_models_uri("models:/fraud@champion") == ("fraud", None, "champion")
    assert parse_models_uri("models:/cat.schema.fraud/latest") == ("cat.schema.fraud", "latest", None)
    for bad in ("models:/fraud", "models:/fraud/3@x", "models://profile/fraud/3"):
        with pytest.raises(UsageError):
            parse_models_uri(bad)


def test_an_mlflow_artifacts_uri_that_is_one_file(tmp_path: Path) -> None:
    env = {"MODEL_URI": "mlflow-artifacts:/1/models/m-1/artifacts/model.pkl", "MLFLOW_TRACKING_URI": "http://m"}
    code, report, _ = run_fetch(env, tmp_path, httpx.MockTransport(FakeMLflow()))
    assert code == 0
    assert report["digest"] == sha(b"\x80model")
    env["MODEL_URI"] = "mlflow-artifacts:/1/models/none"
    code, report, _ = run_fetch(env, tmp_path, httpx.MockTransport(FakeMLflow()))
    assert code == ExitCode.NOT_FOUND
    assert "not found: mlflow-artifacts:/1/models/none" in report["error"]


# Object store configuration (the stores themselves are in tests/e2e/test_model_fetch.py) -------------------


def test_s3_with_an_endpoint_is_path_style_over_http_unless_told_otherwise() -> None:
    env = {"AWS_ENDPOINT_URL": "http://minio.store:9000/", "AWS_REGION": "eu-west-3"}
    config, client = S3Source(env, 60).config("models")
    assert config == {
        "endpoint": "http://minio.store:9000",
        "region": "eu-west-3",
        "virtual_hosted_style_request": False,
    }
    assert client["allow_http"] is True
    config, client = S3Source({**env, "AWS_S3_FORCE_PATH_STYLE": "false"}, 60).config("models")
    assert config["endpoint"] == "http://models.minio.store:9000"
    assert config["virtual_hosted_style_request"] is True
    config, client = S3Source({"AWS_DEFAULT_REGION": "us-west-2"}, 60).config("models")
    assert config == {"region": "us-west-2", "virtual_hosted_style_request": True}
    assert "allow_http" not in client
    config, _ = S3Source({"AWS_S3_FORCE_PATH_STYLE": "true"}, 60).config("models")
    assert config["virtual_hosted_style_request"] is False


@pytest.mark.parametrize(
    ("env", "source"),
    [
        ({"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": SECRET}, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"),
        ({"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token", "AWS_ROLE_ARN": "arn"}, "AWS_WEB_IDENTITY_TOKEN_FILE"),
        ({"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1"}, "container credentials"),
        ({}, "the instance metadata service (no AWS credentials in the environment)"),
    ],
)
def test_s3_names_its_credential_source(env: dict[str, str], source: str) -> None:
    described = S3Source(env, 60).credential_source()
    assert source in described
    assert SECRET not in described


def test_gcs_points_at_an_emulator_without_credentials() -> None:
    config, client = GCSSource({"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"}, 60).config()
    assert config == {"base_url": "http://127.0.0.1:4443", "skip_signature": True}
    assert client["allow_http"] is True
    assert (
        "GOOGLE_APPLICATION_CREDENTIALS (/k.json)"
        in GCSSource({"GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}, 60).credential_source()
    )
    assert "workload identity" in GCSSource({}, 60).credential_source()


def test_store_errors_are_cut_to_their_gist() -> None:
    text = (
        "Generic S3 error: Error performing GET http://h/b/k in 1ms - Server returned non-2xx status code: "
        "403 Forbidden: <?xml version='1.0'?><Error><Code>SignatureDoesNotMatch</Code><Message>The request "
        "signature we calculated does not match</Message></Error> Debug source: Generic { ... }"
    )
    assert store_reason(text) == "SignatureDoesNotMatch: The request signature we calculated does not match"
    sending = (
        "Generic S3 error: Error performing HEAD http://127.0.0.1:1/b/k in 496ms, after 3 retries, max_retries: 3, "
        "retry_timeout: 30s - HTTP error: error sending request Debug source: Generic {"
    )
    assert store_reason(sending) == "HTTP error: error sending request (after 3 retries)"


def test_the_unsupported_scheme_error_lists_what_is_supported() -> None:
    async def go() -> None:
        from contextlib import AsyncExitStack

        async with AsyncExitStack() as stack:
            await sources.resolve("hdfs://nn/model", sources.Context({}, 10, stack))

    with pytest.raises(UnsupportedSchemeError, match=r"builtin:// and pvc:// need no fetch"):
        asyncio.run(go())


# Secrets ---------------------------------------------------------------------------------------------------


def test_the_redactor_masks_every_secret_variable_and_url_passwords() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": SECRET, "MLFLOW_TRACKING_TOKEN": "tok-abcdef", "MODEL_HTTP_BEARER_TOKEN": "x"}
    redactor = redact.Redactor.from_env(env)
    assert redactor(f"key={SECRET} token=tok-abcdef x") == "key=*** token=*** x"  # 1-char values are no secrets
    assert redact.display_uri("https://user:pw@host/m.pkl?X-Amz-Signature=abc&v=1") == (
        "https://user:***@host/m.pkl?X-Amz-Signature=***&v=1"
    )
    assert redact.display_uri("s3://bucket/key") == "s3://bucket/key"


def test_third_party_log_records_are_masked_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    redact.install(redact.Redactor([SECRET]), "DEBUG")
    logging.getLogger("botocore.auth").debug("signing with %s", SECRET)
    try:
        raise RuntimeError(f"boom {SECRET}")
    except RuntimeError:
        logging.getLogger("urllib3").exception("failed")
    err = capsys.readouterr().err
    assert "signing with ***" in err
    assert "boom ***" in err
    assert SECRET not in err


def test_a_whole_failed_fetch_at_debug_never_shows_a_secret(tmp_path: Path) -> None:
    env = {
        "MODEL_URI": f"https://user:{SECRET}@models.example/models/model.pkl",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "MODEL_HTTP_BEARER_TOKEN": "another-" + SECRET,
    }
    redactor_env = dict(env)
    code, report, logged = run_fetch(redactor_env, tmp_path, http_transport([]), level="DEBUG")
    assert code == ExitCode.ACCESS_DENIED
    assert "https://user:***@models.example/models/model.pkl" in report["error"]
    assert SECRET not in logged + json.dumps(report)


def test_registry_error_is_a_fetch_error_with_its_code() -> None:
    assert RegistryError("x").code == ExitCode.REGISTRY
    assert FetchError("x", ExitCode.NOT_FOUND).code == 4
