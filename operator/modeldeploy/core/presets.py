"""Runtime presets: what a serving container looks like for each supported model server."""

from __future__ import annotations

from dataclasses import dataclass, field

from modeldeploy.core.api import ModelDeploymentSpec, Probe, RuntimePreset
from modeldeploy.core.compare import parse_quantity


class SpecError(ValueError):
    """A spec that passed the schema but cannot be served; names the field and says why."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(message if message.startswith(field_path) else f"{field_path}: {message}")


@dataclass(frozen=True)
class Preset:
    image: str
    port: int
    run_as_user: int
    readiness_path: str | None
    liveness_path: str | None
    # model format -> implementation class, for servers that need one
    formats: dict[str, str] = field(default_factory=dict)
    accepts_any_format: bool = False
    # The variable that tells the server where the fetched model is (core/delivery.py mounts it).
    model_dir_env: str = "MODEL_DIR"


MLSERVER = Preset(
    image="docker.io/seldonio/mlserver:1.7.1",
    port=8080,
    run_as_user=1000,
    readiness_path="/v2/health/ready",
    liveness_path="/v2/health/live",
    formats={
        "sklearn": "mlserver_sklearn.SKLearnModel",
        "xgboost": "mlserver_xgboost.XGBoostModel",
        "lightgbm": "mlserver_lightgbm.LightGBMModel",
        "mlflow": "mlserver_mlflow.MLflowRuntime",
        "huggingface": "mlserver_huggingface.HuggingFaceRuntime",
    },
    model_dir_env="MLSERVER_MODEL_URI",
)

# A custom container: image and port come from the spec; probes default to a TCP check.
CUSTOM = Preset(image="", port=0, run_as_user=65532, readiness_path=None, liveness_path=None, accepts_any_format=True)

# modeldeploy's reference model server (the `modelserver` package): its metrics are what the analysis presets
# query. Its image is built from Dockerfile.modelserver.
MODELSERVER = Preset(
    image="ghcr.io/modeldeploy/modelserver:0.1.0",
    port=8080,
    run_as_user=65532,
    readiness_path="/v2/health/ready",
    liveness_path="/v2/health/live",
    # What `modelserver` loads: pickle/joblib/skops, an MLflow model directory, ONNX (its onnx extra).
    formats={"sklearn": "", "mlflow": "", "onnx": ""},
)

PRESETS: dict[RuntimePreset, Preset] = {"modelserver": MODELSERVER, "mlserver": MLSERVER, "custom": CUSTOM}


@dataclass(frozen=True)
class ResolvedRuntime:
    """The preset merged with the spec's overrides: everything the pod template needs."""

    image: str
    port: int
    run_as_user: int
    command: list[str] | None
    args: list[str] | None
    env: list[dict[str, object]]
    readiness: Probe | None
    liveness: Probe | None


def check_resources(spec: ModelDeploymentSpec) -> None:
    """Requests above limits would make the API server reject the pods; say so about the spec's field."""
    resources = spec.runtime.resources
    if resources is None or not resources.requests or not resources.limits:
        return
    for resource, request in resources.requests.items():
        limit = resources.limits.get(resource)
        if limit is None:
            continue
        low, high = parse_quantity(request), parse_quantity(limit)
        if low is not None and high is not None and low > high:
            raise SpecError(
                f"spec.runtime.resources.requests.{resource}",
                f"request {request} exceeds limit {limit}",
            )


def fetch_image(spec: ModelDeploymentSpec) -> str:
    """The image whose `modelserver fetch` downloads the model: a custom build of the reference server if the
    spec names one, else the reference server's own image, whatever runtime serves the model."""
    if spec.runtime.preset == "modelserver" and spec.runtime.image:
        return spec.runtime.image
    return MODELSERVER.image


def resolve_runtime(spec: ModelDeploymentSpec, delivered: dict[str, str] | None = None) -> ResolvedRuntime:
    """The preset, then where the delivered model is (`delivered`), then the spec's own env, which wins."""
    check_resources(spec)
    runtime = spec.runtime
    preset = PRESETS[runtime.preset]
    model = spec.model
    env: dict[str, dict[str, object]] = {}

    def put(name: str, value: str) -> None:
        env[name] = {"name": name, "value": value}

    for key, value in (
        ("MODEL_NAME", model.name),
        ("MODEL_VERSION", model.concrete_version),
        ("MODEL_URI", model.uri),
        ("MODEL_FORMAT", model.format),
    ):
        put(key, value)
    if not preset.accepts_any_format and model.format not in preset.formats:
        raise SpecError(
            "spec.model.format",
            f"format {model.format!r} is not served by runtime preset {runtime.preset!r} "
            f"(supported: {', '.join(sorted(preset.formats))}); use runtime.preset 'custom' for other formats",
        )
    if runtime.preset == "modelserver":
        put("PORT", str(runtime.port or preset.port))
    if runtime.preset == "mlserver":
        implementation = preset.formats[model.format]
        put("MLSERVER_HTTP_PORT", str(runtime.port or preset.port))
        put("MLSERVER_MODEL_NAME", model.name)
        put("MLSERVER_MODEL_VERSION", model.concrete_version)
        put("MLSERVER_MODEL_URI", model.uri)
        put("MLSERVER_MODEL_IMPLEMENTATION", implementation)
    for name, value in (delivered or {}).items():
        put(name, value)
    for var in runtime.env or []:
        env[var.name] = var.model_dump(by_alias=True, exclude_none=True)

    port = runtime.port or preset.port

    def default_probe(path: str | None) -> Probe | None:
        return Probe(path=path) if path else None

    return ResolvedRuntime(
        image=runtime.image or preset.image,
        port=port,
        run_as_user=runtime.run_as_user or preset.run_as_user,
        command=list(runtime.command) if runtime.command else None,
        args=list(runtime.args) if runtime.args else None,
        env=list(env.values()),
        readiness=runtime.readiness_probe or default_probe(preset.readiness_path),
        liveness=runtime.liveness_probe or default_probe(preset.liveness_path),
    )
