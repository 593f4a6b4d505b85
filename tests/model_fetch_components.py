"""The model-fetch tests' servers: the real stores and processes come from `modeldeploy_dev.stores` (shared with
the registry end-to-end tests, the benchmarks and the demo); a plain HTTP file server with an optional bearer
token, and a slow path that trickles bytes, lives here.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

from modeldeploy_dev.stores import (
    FAKE_GCS_SERVER,
    MLFLOW_VERSION,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    VERSITYGW,
    ComponentUnavailableError,
    FetchRun,
    GCSServer,
    MLflowServer,
    ModelServer,
    Process,
    S3Server,
    base_env,
    go_tool,
    mlflow_executable,
    run_fetch,
    sha256,
    start_failure,
)

__all__ = [
    "FAKE_GCS_SERVER",
    "MLFLOW_VERSION",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "VERSITYGW",
    "ComponentUnavailableError",
    "FetchRun",
    "GCSServer",
    "MLflowServer",
    "ModelServer",
    "Process",
    "S3Server",
    "base_env",
    "go_tool",
    "http_file_server",
    "mlflow_executable",
    "run_fetch",
    "sha256",
    "start_failure",
]


class _FileHandler(http.server.BaseHTTPRequestHandler):
    server: _FileHTTPServer

    def do_GET(self) -> None:
        server = self.server
        if server.token and self.headers.get("Authorization") != f"Bearer {server.token}":
            self.send_error(401, "bad or missing bearer token")
            return
        if self.path.startswith("/slow/"):
            self._trickle(server.files.get(self.path[len("/slow") :]))
            return
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _trickle(self, data: bytes | None) -> None:
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gives up first: that is the point
            for offset in range(0, len(data), 1024):
                self.wfile.write(data[offset : offset + 1024])
                self.wfile.flush()
                if self.server.stopping.wait(0.2):
                    return

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _FileHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes], token: str | None) -> None:
        super().__init__(("127.0.0.1", 0), _FileHandler)
        self.files = files
        self.token = token
        self.stopping = threading.Event()


@contextlib.contextmanager
def http_file_server(files: dict[str, bytes], token: str | None = None) -> Iterator[str]:
    """Serves `files` (URL path → bytes) on 127.0.0.1; `/slow/<path>` sends 1 KiB each 0.2 s. Yields its URL."""
    server = _FileHTTPServer(files, token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
