"""Real stores and model-server processes on 127.0.0.1, shared by the end-to-end tests, the benchmarks and the demo.

- an S3-compatible store: the Versity S3 Gateway (`versitygw`, Go, Apache-2.0) over a local directory, with a
  root access key it checks (SigV4), so wrong credentials are refused as by AWS;
- a GCS emulator: `fake-gcs-server` (Go);
- an MLflow tracking server (`mlflow server`, SQLite backend): artifacts in a local directory served through
  its artifact proxy (`mlflow-artifacts:` URIs), or, given an S3Server, in that store's bucket `mlflow`,
  written and read there directly by clients (`s3://` URIs);
- the model server and `modelserver fetch` as processes, as the pod runs them.

The Go servers are built once with `go install` at pinned versions into $MODELDEPLOY_CACHE/bin/fetch-test (like
the control plane's binaries). MLflow (about 850 MB with its dependencies, boto3 included for S3 artifacts) gets
a virtual environment of its own in $MODELDEPLOY_CACHE, created on first use with pip, so the project's own
environment stays light; set MODELDEPLOY_MLFLOW to an `mlflow` executable to use another. (moto's S3 server
cannot join the project's environment: botocore pins python-dateutil < 3, kubernetes >= 37 needs >= 3; MLflow's
own environment has no kubernetes, so boto3 is fine there.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modeldeploy_dev.cluster import cache_dir, free_port

VERSITYGW = ("versitygw", "github.com/versity/versitygw/cmd/versitygw", "v1.8.0")
FAKE_GCS_SERVER = ("fake-gcs-server", "github.com/fsouza/fake-gcs-server", "v1.56.1")
MLFLOW_VERSION = "3.17.2"
BOTO3_VERSION = "1.44.5"
S3_ACCESS_KEY = "AKIAMODELFETCHTEST"
S3_SECRET_KEY = "fetch-test-secret-Zq8vX1pL0wR4"


class ComponentUnavailableError(RuntimeError):
    """A server the tests need could not be built, installed or started; the message says why."""


def go_tool(name: str, module: str, version: str, echo: Any = print) -> Path:
    """The binary of a Go module at a pinned version, built with `go install` into the cache on first use."""
    target = cache_dir() / "bin" / "fetch-test" / f"{name}-{version}"
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise ComponentUnavailableError(f"Go is needed to build {name} ({module}@{version}), and `go` is not on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"gobin-{name}-") as gobin:
        echo(f"building {module}@{version} (once; cached in {target.parent})")
        started = time.monotonic()
        done = subprocess.run(
            [go, "install", "-trimpath", "-ldflags", "-s -w", f"{module}@{version}"],
            env={**os.environ, "GOBIN": gobin},
            capture_output=True,
            text=True,
            timeout=1500,
            check=False,
        )
        if done.returncode != 0:
            raise ComponentUnavailableError(f"go install {module}@{version} failed: {done.stderr.strip()[-2000:]}")
        shutil.move(str(Path(gobin) / Path(module).name), target)
        echo(f"built {name} in {time.monotonic() - started:.0f}s")
    return target


def mlflow_executable(echo: Any = print) -> Path:
    """`mlflow` from MODELDEPLOY_MLFLOW, or from its own cached virtual environment (created on first use)."""
    given = os.environ.get("MODELDEPLOY_MLFLOW")
    if given:
        if not Path(given).exists():
            raise ComponentUnavailableError(f"MODELDEPLOY_MLFLOW={given} does not exist")
        return Path(given)
    import sklearn

    # The same scikit-learn as the server's, so a model logged there unpickles here; boto3 for S3 artifacts.
    requirements = [f"mlflow=={MLFLOW_VERSION}", f"scikit-learn=={sklearn.__version__}", f"boto3=={BOTO3_VERSION}"]
    venv = cache_dir() / f"mlflow-{MLFLOW_VERSION}-sklearn-{sklearn.__version__}"
    executable = venv / "bin" / "mlflow"
    complete = venv / ".complete"
    stamp = " ".join(requirements)
    if complete.exists() and complete.read_text() == stamp:
        return executable
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", *requirements]
    if complete.exists():  # made before a requirement was added: add it, keep the rest
        echo(f"adding {stamp} to {venv}")
        steps = [pip]
    else:
        echo(f"installing mlflow=={MLFLOW_VERSION} into {venv} (once; about 850 MB)")
        shutil.rmtree(venv, ignore_errors=True)
        steps = [[sys.executable, "-m", "venv", str(venv)], pip]
    started = time.monotonic()
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1500, check=False)
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-2000:]
            raise ComponentUnavailableError(f"{' '.join(step[:3])} failed: {output}")
    complete.write_text(stamp)
    echo(f"installed mlflow in {time.monotonic() - started:.0f}s")
    return executable


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float, name: str) -> None:
    """Until `process` (or its process group) listens on the URL's port and answers there. Another process may
    have taken a free port first (other tests run beside these): its answer does not count."""
    deadline = time.monotonic() + timeout
    port = httpx.URL(url).port
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ComponentUnavailableError(f"{name} exited with {process.returncode}: {tail(log)}")
        try:
            httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        if port is None or listens(process.pid, port):
            return
        time.sleep(0.2)
    raise ComponentUnavailableError(f"{name} did not answer {url} within {timeout:.0f}s: {tail(log)}")


def listens(pid: int, port: int) -> bool:
    """Whether process `pid`, or one in the process group it leads, has a TCP socket listening on `port`
    (Linux's /proc; elsewhere assumed)."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return True
    inodes = set()
    for table in tables:
        with contextlib.suppress(OSError):
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].rsplit(":", 1)[1] == f"{port:04X}" and fields[3] == "0A":  # 0A: LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if int(entry.name) != pid and os.getpgid(int(entry.name)) != pid:
                continue
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return True
    return False


def tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass
class Process:
    """A server process this code started, stopped by its own handle."""

    name: str
    args: list[str]
    log: Path
    env: Mapping[str, str] | None = None
    group: bool = False  # its own process group, stopped whole (a server that forks workers)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = self.log.open("wb")
        self.process = subprocess.Popen(
            self.args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=dict(self.env) if self.env is not None else None,
            start_new_session=self.group,
        )
        handle.close()

    def _signal(self, number: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            if self.group:
                os.killpg(self.process.pid, number)  # the group this code created, by its id
            else:
                self.process.send_signal(number)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None or self.group:
            self._signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(10)


@dataclass
class S3Server:
    """The Versity S3 Gateway over a directory: each top-level directory is a bucket."""

    root: Path
    buckets: tuple[str, ...] = ("models",)
    port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **overrides: str) -> dict[str, str]:
        """What the init container gets: the endpoint, a region, path style and the key (from a Secret)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_S3_FORCE_PATH_STYLE": "true",
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            **overrides,
        }

    def start(self, echo: Any = print) -> S3Server:
        binary = go_tool(*VERSITYGW, echo=echo)
        data = self.root / "data"
        for bucket in self.buckets:
            (data / bucket).mkdir(parents=True, exist_ok=True)
        args = [str(binary), "--port", f"127.0.0.1:{self.port}", "--access", S3_ACCESS_KEY]
        args += ["--secret", S3_SECRET_KEY, "--region", "us-east-1", "--quiet", "posix", str(data)]
        self.process = Process("versitygw", args, self.root / "versitygw.log")
        self.process.start()
        assert self.process.process is not None
        wait_until_up(self.endpoint, self.process.process, self.process.log, 30, "versitygw")
        return self

    def store(self, bucket: str = "models") -> Any:
        from obstore.store import S3Store

        return S3Store(
            bucket,
            endpoint=self.endpoint,
            region="us-east-1",
            access_key_id=S3_ACCESS_KEY,
            secret_access_key=S3_SECRET_KEY,
            client_options={"allow_http": True, "timeout": "300s"},
        )

    def put(self, key: str, data: bytes, bucket: str = "models") -> None:
        import obstore

        obstore.put(self.store(bucket), key, data)

    def put_tree(self, prefix: str, source: Path, bucket: str = "models") -> None:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                self.put(f"{prefix}/{path.relative_to(source).as_posix()}", path.read_bytes(), bucket)

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class GCSServer:
    """fake-gcs-server in memory, loaded from a directory (bucket/object files) at start."""

    root: Path
    port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def start(self, echo: Any = print) -> GCSServer:
        binary = go_tool(*FAKE_GCS_SERVER, echo=echo)
        self.data.mkdir(parents=True, exist_ok=True)
        args = [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port), "-backend", "memory"]
        args += ["-data", str(self.data), "-public-host", f"127.0.0.1:{self.port}", "-log-level", "warn"]
        self.process = Process("fake-gcs-server", args, self.root / "fake-gcs-server.log")
        self.process.start()
        assert self.process.process is not None
        wait_until_up(f"{self.endpoint}/storage/v1/b", self.process.process, self.process.log, 30, "fake-gcs-server")
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class MLflowServer:
    """`mlflow server` with a SQLite backend. Artifacts go to a local directory served through its artifact proxy
    (download URIs `mlflow-artifacts:/...`), or, given `artifacts`, to that S3 store's bucket `mlflow` with no
    proxy (`--default-artifact-root s3://mlflow/artifacts --no-serve-artifacts`): clients write there with
    boto3 and the registry's download URIs are `s3://mlflow/artifacts/...`, which the pods' fetch reads straight
    from the store. Stopped and started again, it keeps its port and its database."""

    root: Path
    artifacts: S3Server | None = None
    port: int = field(default_factory=free_port)
    process: Process | None = None
    mlflow: Path | None = None

    ARTIFACTS_BUCKET = "mlflow"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifact_root(self) -> str:
        return f"s3://{self.ARTIFACTS_BUCKET}/artifacts" if self.artifacts else str(self.root / "artifacts")

    def s3_env(self) -> dict[str, str]:
        """What MLflow's S3 client (boto3) needs to reach the artifact store; empty without one."""
        if self.artifacts is None:
            return {}
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.artifacts.endpoint,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, echo: Any = print) -> MLflowServer:
        """Starts the server; again after `stop()`, on the same port and database. On its first start, a port
        another process took meanwhile is given up for a new one (twice at most)."""
        self.mlflow = mlflow_executable(echo=echo)
        self.root.mkdir(parents=True, exist_ok=True)
        if self.artifacts is not None:
            (self.artifacts.root / "data" / self.ARTIFACTS_BUCKET).mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        # No background job runner (seven worker processes): the registry and the artifact proxy are enough.
        env.update(PYTHONUNBUFFERED="1", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **self.s3_env())
        first = self.process is None
        for attempt in range(3):
            args = [str(self.mlflow), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}"]
            if self.artifacts is not None:
                args += ["--default-artifact-root", self.artifact_root, "--no-serve-artifacts"]
            else:
                args += ["--artifacts-destination", self.artifact_root]
            args += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
            self.process = Process("mlflow", args, self.root / "mlflow.log", env, group=True)
            started = time.monotonic()
            self.process.start()
            assert self.process.process is not None
            try:
                wait_until_up(f"{self.tracking_uri}/health", self.process.process, self.process.log, 180, "mlflow")
            except ComponentUnavailableError:
                self.process.stop()
                if not first or attempt == 2 or "address already in use" not in tail(self.process.log).lower():
                    raise
                self.port = free_port()
                continue
            echo(f"mlflow server up in {time.monotonic() - started:.1f}s")
            break
        return self

    def python(self, script: str, env: Mapping[str, str] | None = None) -> str:
        """Run a script with MLflow's own Python, against this server; its stdout."""
        assert self.mlflow is not None
        python = self.mlflow.parent / "python"
        done = subprocess.run(
            [str(python), "-c", script],
            env={**os.environ, **self.s3_env(), **(env or {}), "MLFLOW_TRACKING_URI": self.tracking_uri},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the MLflow script failed: {done.stderr[-3000:]}")
        return done.stdout

    def publish(self, models: Mapping[str, int], alias: str | None = "champion") -> dict[str, list[str]]:
        """Logs, for each registered model name, that many small LogisticRegressions (4 features; the same data,
        regularised a little differently, so their predictions are close and their bytes differ) with MLflow, each
        a new version; `alias` points at each model's first. One run of MLflow's Python (its import takes
        seconds). The version numbers by name, in order."""
        output = self.python(PUBLISH % (dict(models), alias)).strip().splitlines()[-1]
        versions: dict[str, list[str]] = json.loads(output)
        return versions

    def api(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One call to the tracking server's REST API (`/api/2.0/mlflow/<path>`); raises on an HTTP error."""
        response = httpx.request(method, f"{self.tracking_uri}/api/2.0/mlflow/{path}", timeout=30, **kwargs)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Moves `alias` of the registered model `name` to `version`, as a data scientist does to ship it."""
        self.api("POST", "registered-models/alias", json={"name": name, "alias": alias, "version": version})

    def stop(self) -> None:
        if self.process:
            self.process.stop()


# Run with MLflow's own Python: scikit-learn models logged by MLflow itself, artifacts to its artifact store.
PUBLISH = """
import json, mlflow, mlflow.sklearn, skops, sklearn
from mlflow import MlflowClient
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

models, alias = %r, %r
# Named, not inferred: inferring them loads each model in a subprocess, seconds per version.
requirements = [f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}"]
features, labels = make_classification(n_samples=400, n_features=4, random_state=7)
published = {}
for name, count in models.items():
    published[name] = []
    for index in range(count):
        model = LogisticRegression(C=1.0 / (index + 1)).fit(features, labels)
        with mlflow.start_run(run_name=f"{name}-{index + 1}"):
            info = mlflow.sklearn.log_model(
                model, name="model", registered_model_name=name, pip_requirements=requirements
            )
        published[name].append(str(info.registered_model_version))
    if alias is not None:
        MlflowClient().set_registered_model_alias(name, alias, published[name][0])
print(json.dumps(published))
"""


@dataclass
class FetchRun:
    code: int
    output: str  # stdout and stderr
    report: dict[str, Any]


def base_env() -> dict[str, str]:
    """The environment of a fresh container: no credentials or endpoints leak in from the test's own."""
    drop = ("AWS_", "GOOGLE_", "STORAGE_EMULATOR", "MLFLOW_", "MODEL_", "MODELSERVER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def run_fetch(env: Mapping[str, str], workdir: Path, timeout: float = 300) -> FetchRun:
    """`modelserver fetch` as the init container runs it, with its report written to a file."""
    report = workdir / f"report-{time.monotonic_ns()}.json"
    done = subprocess.run(
        [sys.executable, "-m", "modelserver", "fetch"],
        env={**base_env(), "MODEL_FETCH_REPORT": str(report), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    loaded = json.loads(report.read_text()) if report.exists() else {}
    return FetchRun(done.returncode, done.stdout + done.stderr, loaded)


@dataclass
class ModelServer:
    """`modelserver` serving a fetched MODEL_DIR, as the server container does."""

    model_dir: Path
    log: Path
    model_format: str | None = None
    name: str = "fraud"
    port: int = field(default_factory=free_port)
    process: Process | None = None

    def __enter__(self) -> ModelServer:
        env = {**base_env(), "MODEL_NAME": self.name, "MODEL_VERSION": "1", "MODEL_DIR": str(self.model_dir)}
        env["MODEL_URI"] = "s3://unused/by-the-server"
        if self.model_format:
            env["MODEL_FORMAT"] = self.model_format
        args = [sys.executable, "-m", "modelserver", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = Process("modelserver", args, self.log, env)
        self.process.start()
        assert self.process.process is not None
        wait_until_up(
            f"http://127.0.0.1:{self.port}/v2/health/ready", self.process.process, self.log, 60, "modelserver"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process:
            self.process.stop()

    def infer(self, rows: list[list[float]]) -> list[float]:
        body = {"inputs": [{"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP64",
                            "data": [v for row in rows for v in row]}]}  # fmt: skip
        response = httpx.post(f"http://127.0.0.1:{self.port}/v2/models/{self.name}/infer", json=body, timeout=10)
        response.raise_for_status()
        return [float(v) for v in response.json()["outputs"][0]["data"]]


def start_failure(model_dir: Path, log: Path, model_format: str | None = None) -> tuple[int, str]:
    """The model server's exit code and log when it cannot load what MODEL_DIR holds."""
    env = {**base_env(), "MODEL_NAME": "fraud", "MODEL_DIR": str(model_dir), "MODEL_URI": "s3://unused/x"}
    if model_format:
        env["MODEL_FORMAT"] = model_format
    done = subprocess.run(
        [sys.executable, "-m", "modelserver", "--host", "127.0.0.1", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    log.write_text(done.stdout + done.stderr)
    return done.returncode, done.stdout + done.stderr


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
