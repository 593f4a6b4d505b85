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
from modelserver.feedback import (
    MAX_BATCH,
    MAX_REVISIONS,
    REMEMBERED_IDS,
    FeedbackError,
    Remembered,
    Scored,
    prediction_id,
    score,
)
from modelserver.models import Model, ModelLoadError, builtin_logistic, load_from_dir, load_uri

log = logging.getLogger("modelserver")

PREDICTION_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
ERROR_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Settings:
    """From the environment the operator gives every container (MODEL_*), plus fault injection for drills.

    `model_dir` (MODEL_DIR) is where `modelserver fetch` put the model; `model_format` (MODEL_FORMAT) is
    `sklearn`, `mlflow` or `onnx`, or empty to tell it from the files. `revision` (MODEL_REVISION, which the
    operator fills in from the pod's revision label) goes into every prediction id; without it, the version.
    """

    name: str
    version: str
    uri: str
    revision: str = ""
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
            revision=os.environ.get("MODEL_REVISION", ""),
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
    id: str | None = None
    inputs: list[Tensor]


class Label(BaseModel):
    id: Any = None
    label: Any = None


class Feedback(BaseModel):
    """One label (`id`, `label`) or a batch (`labels`)."""

    id: Any = None
    label: Any = None
    labels: list[Label] | None = None


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
    labelled = Counter(
        "modelserver_feedback_labels",
        "Predictions that got their true label, by the revision that made them.",
        ["model", "prediction_revision"],
        registry=registry,
    )
    correct = Counter(
        "modelserver_feedback_correct",
        "Labelled predictions whose class (prediction >= 0.5) was the label, by the revision that made them.",
        ["model", "prediction_revision"],
        registry=registry,
    )
    errors = Histogram(
        "modelserver_feedback_error",
        "Absolute error |prediction - label| of labelled predictions, by the revision that made them.",
        ["model", "prediction_revision"],
        buckets=ERROR_BUCKETS,
        registry=registry,
    )
    rejected = Counter(
        "modelserver_feedback_rejected",
        "Labels not counted: malformed or unknown ids and labels, or a label this pod already counted.",
        ["model", "reason"],
        registry=registry,
    )
    revision = settings.revision or settings.version
    counted = Remembered(REMEMBERED_IDS)
    revisions = Remembered(MAX_REVISIONS)

    def count(label: Scored) -> None:
        dropped = revisions.add(label.revision)
        if dropped is not None:  # bounded: a pod keeps counters for the most recently labelled revisions only
            for family in (labelled, correct, errors):
                family.remove(settings.name, dropped)
        series = {"model": settings.name, "prediction_revision": label.revision}
        labelled.labels(**series).inc()
        correct.labels(**series).inc(1 if label.correct else 0)
        errors.labels(**series).observe(label.error)
        counted.add(label.id)

    # This revision's series exist from the start, so that increase() over a window counts its first labels too.
    revisions.add(revision)
    for family in (labelled, correct, errors):
        family.labels(model=settings.name, prediction_revision=revision)

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
            ids = []
            for value in scores:
                predictions.labels(**labels).observe(float(value))
                ids.append(prediction_id(revision, float(value)))
            return {
                "model_name": settings.name,
                "model_version": settings.version,
                # Open Inference Protocol: the request's own id comes back; without one, the prediction's id.
                "id": body.id or (ids[0] if len(ids) == 1 else ""),
                "parameters": {"prediction_ids": ids},
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

    @app.post("/v2/models/{name}/feedback")
    def feedback(name: str, body: Feedback) -> dict[str, Any]:
        """Counts true labels. A batch is all or nothing: one bad item refuses it, naming each bad item."""
        if name != settings.name:
            raise HTTPException(404, f"model {name!r} is not served here")
        if body.labels is not None and (body.id is not None or body.label is not None):
            raise HTTPException(422, "send either one label (id, label) or a batch (labels), not both")
        items = body.labels if body.labels is not None else [Label(id=body.id, label=body.label)]
        if len(items) > MAX_BATCH:
            raise HTTPException(413, f"a batch holds at most {MAX_BATCH} labels; this one has {len(items)}")
        scored: list[Scored] = []
        problems: list[str] = []
        for index, item in enumerate(items):
            try:
                scored.append(score(item.id, item.label))
            except FeedbackError as error:
                problems.append(f"labels[{index}]: {error}" if body.labels is not None else str(error))
        if problems:
            rejected.labels(model=settings.name, reason="invalid").inc(len(problems))
            shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
            raise HTTPException(
                422, {"message": "nothing was counted; fix or drop these and send again", "errors": shown}
            )
        accepted = duplicates = 0
        for label in scored:
            if label.id in counted:  # also the same id twice in one batch
                duplicates += 1
                continue
            count(label)
            accepted += 1
        if duplicates:
            rejected.labels(model=settings.name, reason="duplicate").inc(duplicates)
        return {"accepted": accepted, "duplicates": duplicates}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
