"""The FastAPI application: Open Inference Protocol v2 endpoints and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel

from modelserver.digest import FETCH_RECORD
from modelserver.models import Model, ModelLoadError, builtin_logistic, load_from_dir, load_uri

log = logging.getLogger("modelserver")

PREDICTION_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Settings:
    """From the environment the operator gives every container (MODEL_*), plus fault injection for drills.

    `model_dir` (MODEL_DIR) is where `modelserver fetch` put the model; `model_format` (MODEL_FORMAT) is
    `sklearn`, `mlflow` or `onnx`, or empty to tell it from the files.
    """

    name: str
    version: str
    uri: str
    model_dir: str | None = None
    model_format: str | None = None
    error_rate: float = 0.0
    extra_latency_seconds: float = 0.0
    prediction_shift: float = 0.0

    @classmethod
    def from_env(cls) -> Settings:
        model_dir = os.environ.get("MODEL_DIR") or None
        return cls(
            name=os.environ.get("MODEL_NAME", "model"),
            version=os.environ.get("MODEL_VERSION", "1"),
            # The demo model only when nothing names a model: MODEL_DIR alone serves what is there.
            uri=os.environ.get("MODEL_URI") or ("" if model_dir else "builtin://logistic"),
            model_dir=model_dir,
            model_format=os.environ.get("MODEL_FORMAT") or None,
            error_rate=float(os.environ.get("MODELSERVER_ERROR_RATE", "0")),
            extra_latency_seconds=float(os.environ.get("MODELSERVER_EXTRA_LATENCY_SECONDS", "0")),
            prediction_shift=float(os.environ.get("MODELSERVER_PREDICTION_SHIFT", "0")),
        )


def load_model(settings: Settings) -> tuple[Model, str]:
    """The model and its platform: builtin://, else from MODEL_DIR when set, else the file:// URI."""
    if settings.uri.startswith("builtin://"):
        if settings.uri != "builtin://logistic":
            raise ModelLoadError(f"unknown built-in model {settings.uri!r}: the only one is builtin://logistic")
        return builtin_logistic(), "sklearn"
    if settings.model_dir:
        model, found = load_from_dir(Path(settings.model_dir), settings.model_format)
        via = " (MLflow model)" if found.via_mlflow else ""
        log.info("loaded %s model %s%s%s", found.platform, found.path, via, _fetched(Path(settings.model_dir)))
        return model, found.platform
    return load_uri(settings.uri), "sklearn"


def _fetched(model_dir: Path) -> str:
    """What `modelserver fetch` recorded beside the model: its source and digest, for the log."""
    try:
        record = json.loads((model_dir / FETCH_RECORD).read_text())
        return f", fetched from {record['uri']} ({record['digest']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferenceRequest(BaseModel):
    inputs: list[Tensor]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    model, platform = load_model(settings)
    registry = CollectorRegistry()
    labels = {"model": settings.name, "version": settings.version}
    requests = Counter(
        "modelserver_requests",
        "Inference requests by HTTP status code.",
        ["model", "version", "code"],
        registry=registry,
    )
    latency = Histogram(
        "modelserver_request_duration_seconds",
        "Inference latency.",
        ["model", "version"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    predictions = Histogram(
        "modelserver_prediction",
        "Predicted values (probability of the positive class).",
        ["model", "version"],
        buckets=PREDICTION_BUCKETS,
        registry=registry,
    )
    app = FastAPI(title="modelserver")

    @app.get("/v2/health/live")
    def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/v2/models/{name}")
    def metadata(name: str) -> dict[str, Any]:
        if name != settings.name:
            raise HTTPException(404, f"model {name!r} is not served here")
        return {"name": settings.name, "versions": [settings.version], "platform": platform}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, body: InferenceRequest) -> dict[str, Any]:
        started = time.perf_counter()
        code = 200
        try:
            if name != settings.name:
                code = 404
                raise HTTPException(404, f"model {name!r} is not served here")
            if settings.extra_latency_seconds:
                await asyncio.sleep(settings.extra_latency_seconds)
            if settings.error_rate and random.random() < settings.error_rate:
                code = 500
                raise HTTPException(500, "injected failure (MODELSERVER_ERROR_RATE)")
            tensor = body.inputs[0]
            try:
                features = np.asarray(tensor.data, dtype=float).reshape(tensor.shape)
                scores = model.predict_proba(features)[:, 1]
            except ValueError as error:
                code = 400
                raise HTTPException(400, f"bad input tensor {tensor.name!r}: {error}") from error
            scores = np.clip(scores + settings.prediction_shift, 0.0, 1.0)
            for score in scores:
                predictions.labels(**labels).observe(float(score))
            return {
                "model_name": settings.name,
                "model_version": settings.version,
                "outputs": [
                    {
                        "name": "predict_proba",
                        "shape": [len(scores)],
                        "datatype": "FP64",
                        "data": [float(s) for s in scores],
                    }
                ],
            }
        finally:
            requests.labels(code=str(code), **labels).inc()
            latency.labels(**labels).observe(time.perf_counter() - started)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
