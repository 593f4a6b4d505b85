"""A real data plane for analysis on the local cluster: a Prometheus server, reference model servers, and a load
generator. The end-to-end tests and the demo use it.

Model servers run as local processes (KWOK pods run nothing). Prometheus scrapes them through a file_sd target
list whose labels are the ones a PodMonitor would keep: namespace, modeldeploy_io_track and
modeldeploy_io_revision. The load generator splits requests in the proportion the operator wrote into the
router object, so the canary gets the traffic the router would give it. With a `labeller` it also sends the true
labels later to the feedback endpoint of any running server, as a Service would spread them over both tracks.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from modeldeploy_dev.cluster import free_port, wait_until

FEATURES = 4


class PrometheusServer:
    def __init__(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError(
                "no prometheus binary: install the Debian package `prometheus` (apt-get install prometheus)"
            )
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="modeldeploy-prometheus-"))
        self.port = free_port()
        self.targets = self.dir / "targets.json"
        self.targets.write_text("[]")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "models", "file_sd_configs": [{"files": [str(self.targets)], "refresh_interval": "1s"}]}
            ],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with (self.dir / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: _ok(f"{self.address}/-/ready"), 60, "Prometheus ready")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def set_targets(self, targets: list[dict[str, Any]]) -> None:
        temporary = self.targets.with_suffix(".tmp")
        temporary.write_text(json.dumps(targets))
        temporary.replace(self.targets)  # atomic, so Prometheus never reads half a file

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.address}/api/v1/query", params={"query": promql}, timeout=5)
        return response.json()["data"]["result"]  # type: ignore[no-any-return]


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class ModelServer:
    track: str
    revision: str
    port: int
    process: subprocess.Popen[bytes]


@dataclass
class ModelServers:
    """Reference model-server processes, registered as Prometheus targets."""

    prometheus: PrometheusServer
    namespace: str
    servers: dict[str, ModelServer] = field(default_factory=dict)

    def start(self, track: str, revision: str, version: str, **faults: float) -> ModelServer:
        """A server for `track` serving the built-in demo model."""
        return self._launch(track, revision, version, {"MODEL_URI": "builtin://logistic"}, faults)

    def start_fetched(self, track: str, revision: str, version: str, model_dir: Path) -> ModelServer:
        """A server for `track` serving what a model fetch put in `model_dir`, as the server container does."""
        return self._launch(track, revision, version, {"MODEL_DIR": str(model_dir)}, {})

    def _launch(
        self, track: str, revision: str, version: str, model: dict[str, str], faults: dict[str, float]
    ) -> ModelServer:
        self.stop(track)
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "MODELSERVER_"))},
            "MODEL_NAME": "fraud-scorer",
            "MODEL_VERSION": version,
            "MODEL_REVISION": revision,
            **model,
            **{f"MODELSERVER_{key.upper()}": str(value) for key, value in faults.items()},
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "modelserver", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _ok(f"http://127.0.0.1:{port}/v2/health/ready"), 60, f"the {track} model server")
        self.servers[track] = ModelServer(track, revision, port, process)
        self._publish()
        return self.servers[track]

    def stop(self, track: str) -> None:
        server = self.servers.pop(track, None)
        if server is not None:
            server.process.terminate()
            server.process.wait(timeout=20)
            self._publish()

    def close(self) -> None:
        for track in list(self.servers):
            self.stop(track)

    def _publish(self) -> None:
        self.prometheus.set_targets(
            [
                {
                    "targets": [f"127.0.0.1:{s.port}"],
                    "labels": {
                        "namespace": self.namespace,
                        "modeldeploy_io_track": s.track,
                        "modeldeploy_io_revision": s.revision,
                    },
                }
                for s in self.servers.values()
            ]
        )


Labeller = Callable[[list[float]], float]


def reference_labeller() -> Labeller:
    """The true label of a request to the demo model: the class the built-in model itself predicts, so an
    unmodified server is always right and one with a prediction shift is wrong where the shift flips the class."""
    from modelserver.models import builtin_logistic

    model = builtin_logistic()
    return lambda features: float(model.predict_proba([features])[0][1] >= 0.5)


class LoadGenerator:
    """Sends inference requests, split between the tracks by the weights `read_weights` returns (stable, canary).

    With `labeller`, a share `label_share` of the predictions gets its true label `label_delay` seconds later, in
    batches to the feedback endpoint of a server picked at random whatever its track."""

    def __init__(
        self,
        servers: ModelServers,
        read_weights: Callable[[], tuple[int, int] | None],
        rate: float = 60.0,
        labeller: Labeller | None = None,
        label_share: float = 1.0,
        label_delay: float = 1.0,
    ) -> None:
        self.servers, self.read_weights, self.interval = servers, read_weights, 1.0 / rate
        self.labeller, self.label_share, self.label_delay = labeller, label_share, label_delay
        self.weights = {"stable": 100, "canary": 0}
        self.sent = {"stable": 0, "canary": 0}
        self.labels_sent = 0
        self.labels_refused = 0
        self._pending: list[tuple[float, str, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._follow_route, daemon=True),
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._send_labels, daemon=True),
        ]

    def __enter__(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _follow_route(self) -> None:
        while not self._stop.is_set():
            weights = self.read_weights()
            if weights is not None:
                self.weights = {"stable": weights[0], "canary": weights[1]}
            self._stop.wait(0.3)

    def _send(self) -> None:
        body = {"inputs": [{"name": "x", "shape": [1, FEATURES], "datatype": "FP64", "data": [0.0] * FEATURES}]}
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                total = sum(self.weights.values())
                track = "canary" if total and random.uniform(0, total) < self.weights["canary"] else "stable"
                server = self.servers.servers.get(track)
                if server is not None:
                    features = [random.gauss(0, 1) for _ in range(FEATURES)]
                    body["inputs"][0]["data"] = features
                    try:
                        response = client.post(
                            f"http://127.0.0.1:{server.port}/v2/models/fraud-scorer/infer", json=body
                        )
                        self.sent[track] += 1
                        if self.labeller and response.status_code == 200 and random.random() < self.label_share:
                            due = time.monotonic() + self.label_delay
                            with self._lock:
                                self._pending.append((due, response.json()["id"], self.labeller(features)))
                    except httpx.HTTPError:
                        pass
                time.sleep(self.interval)

    def _send_labels(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(0.5):
                now = time.monotonic()
                with self._lock:
                    due = [item for item in self._pending if item[0] <= now]
                    self._pending = [item for item in self._pending if item[0] > now]
                running = list(self.servers.servers.values())
                if not due or not running:
                    continue
                batches: dict[int, list[dict[str, Any]]] = {}
                for _, identifier, label in due:  # each label to any server, as a Service spreads requests
                    batches.setdefault(random.choice(running).port, []).append({"id": identifier, "label": label})
                for port, labels in batches.items():
                    try:
                        response = client.post(
                            f"http://127.0.0.1:{port}/v2/models/fraud-scorer/feedback", json={"labels": labels}
                        )
                        accepted = response.status_code == 200
                    except httpx.HTTPError:
                        accepted = False
                    if accepted:
                        self.labels_sent += len(labels)
                    else:
                        self.labels_refused += len(labels)
