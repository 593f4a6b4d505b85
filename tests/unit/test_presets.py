"""Runtime presets merged with the spec's overrides (core/presets.py), without rendering a pod."""

from __future__ import annotations

from typing import get_args

import pytest

from modeldeploy.core.api import RuntimePreset, parse_spec
from modeldeploy.core.presets import PRESETS, SpecError, resolve_runtime
from specs import valid_spec


def test_every_api_preset_has_a_definition() -> None:
    assert set(PRESETS) == set(get_args(RuntimePreset))


def test_spec_overrides_win_over_the_preset() -> None:
    runtime = resolve_runtime(
        parse_spec(
            valid_spec(
                runtime={
                    "image": "registry.example/modelserver:dev",
                    "port": 9000,
                    "runAsUser": 4242,
                    "args": ["--workers", "2"],
                    "readinessProbe": {"path": "/ready"},
                    "env": [{"name": "MODEL_URI", "value": "file:///override"}],
                }
            )
        )
    )
    env = {var["name"]: var.get("value") for var in runtime.env}
    assert (runtime.image, runtime.port, runtime.run_as_user) == ("registry.example/modelserver:dev", 9000, 4242)
    assert runtime.args == ["--workers", "2"]
    assert runtime.readiness is not None
    assert runtime.readiness.path == "/ready"
    assert runtime.liveness is not None
    assert runtime.liveness.path == "/v2/health/live"
    assert env["MODEL_URI"] == "file:///override"
    assert env["PORT"] == "9000"
    assert [var["name"] for var in runtime.env].count("MODEL_URI") == 1


def test_custom_preset_has_no_http_probes_and_takes_any_format() -> None:
    runtime = resolve_runtime(
        parse_spec(
            valid_spec(
                model={"name": "m", "version": "1", "uri": "s3://b/m", "format": "onnx"},
                runtime={"preset": "custom", "image": "r/i:1", "port": 7000},
            )
        )
    )
    assert (runtime.image, runtime.port) == ("r/i:1", 7000)
    assert runtime.readiness is None
    assert runtime.liveness is None
    assert "PORT" not in {var["name"] for var in runtime.env}


@pytest.mark.parametrize(
    ("preset", "fmt", "served"),
    [
        ("modelserver", "sklearn", True),
        ("modelserver", "xgboost", False),
        ("modelserver", "onnx", True),
        ("modelserver", "mlflow", True),
        ("mlserver", "lightgbm", True),
        ("mlserver", "onnx", False),
        ("custom", "huggingface", True),
    ],
)
def test_formats_each_preset_serves(preset: str, fmt: str, served: bool) -> None:
    runtime = {"preset": preset, **({"image": "r/i:1", "port": 7000} if preset == "custom" else {})}
    spec = parse_spec(
        valid_spec(model={"name": "m", "version": "1", "uri": "s3://b/m", "format": fmt}, runtime=runtime)
    )
    if served:
        resolve_runtime(spec)
        return
    with pytest.raises(SpecError, match=rf"spec.model.format: format '{fmt}' is not served by runtime preset"):
        resolve_runtime(spec)


def test_request_above_limit_names_the_resource() -> None:
    spec = parse_spec(valid_spec(runtime={"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}))
    with pytest.raises(SpecError, match=r"spec.runtime.resources.requests.memory: request 2Gi exceeds limit 1Gi"):
        resolve_runtime(spec)
