"""Loading a model: from a fetched directory (MODEL_DIR) by format, or the older file:// and builtin:// URIs.

Formats (MODEL_FORMAT, or read from an MLflow `MLmodel` file, or from the file's name):

- `sklearn`: a pickle, joblib or skops file: `model.pkl`, `model.joblib`, `model.skops`, or the only file in the
  directory; also an MLflow model directory whose `MLmodel` has the `sklearn` flavour (MLflow 3 writes skops by
  default; its `skops_trusted_types` are honoured, nothing else beyond skops' defaults is trusted).
- `mlflow`: an MLflow model directory (`MLmodel`): its `sklearn` flavour (`flavors.sklearn.pickled_model`), else
  its `onnx` flavour (`flavors.onnx.data`).
- `onnx`: `model.onnx` or the only `.onnx` file, or an MLflow directory with the `onnx` flavour; needs
  `onnxruntime` (`pip install 'modeldeploy[server,onnx]'`).

Every model is served through `predict_proba(features) -> (n, classes)`; the server reports column 1.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast, get_args
from urllib.parse import urlparse

import numpy as np
import yaml

ModelFormat = Literal["sklearn", "mlflow", "onnx"]
FORMATS: tuple[str, ...] = get_args(ModelFormat)
SKLEARN_NAMES = ("model.pkl", "model.joblib", "model.pickle", "model.skops")
SKLEARN_SUFFIXES = (".pkl", ".pickle", ".joblib", ".skops")
SERVABLE_FLAVOURS = ("sklearn", "onnx")


class ModelLoadError(ValueError):
    """The model cannot be loaded; the message says why and names what was found."""


class Model(Protocol):
    def predict_proba(self, features: Any) -> Any: ...


@dataclass(frozen=True)
class Located:
    """What a model directory holds: the format found and the file to load."""

    kind: Literal["sklearn", "onnx"]
    path: Path
    via_mlflow: bool = False
    serialization: str = "pickle"  # sklearn: pickle (pickle, joblib, cloudpickle) or skops
    trusted: tuple[str, ...] = ()  # skops: types trusted beyond skops' defaults (MLflow's skops_trusted_types)

    @property
    def platform(self) -> str:
        return "onnx" if self.kind == "onnx" else "sklearn"


def parse_format(value: str | None) -> ModelFormat | None:
    if not value:
        return None
    normalised = value.strip().lower()
    if normalised not in FORMATS:
        raise ModelLoadError(f"MODEL_FORMAT={value!r} is not a format this server loads: use one of {FORMATS}")
    return cast(ModelFormat, normalised)


def _visible_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def _sniff(path: Path) -> str:
    """What a file looks like: 'sklearn' (a pickle, joblib or skops file), 'onnx', or 'unknown'."""
    suffix = path.suffix.lower()
    if suffix in SKLEARN_SUFFIXES:
        return "sklearn"
    if suffix == ".onnx":
        return "onnx"
    with path.open("rb") as handle:
        head = handle.read(2)
    # Pickle protocol 2 and later starts with PROTO (0x80); joblib's compressed files with a zlib header.
    if head[:1] == b"\x80" or head in (b"x\x01", b"x\x9c", b"x\xda"):
        return "sklearn"
    return "unknown"


def _describe(kind: str, path: Path) -> str:
    return {"sklearn": "a scikit-learn model", "onnx": "an ONNX model"}.get(kind, "a file of unknown format") + (
        f" ({path.name})"
    )


def _read_mlmodel(directory: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load((directory / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ModelLoadError(f"cannot read the MLflow model file {directory / 'MLmodel'}: {error}") from error
    flavours = document.get("flavors") if isinstance(document, dict) else None
    if not isinstance(flavours, dict):
        raise ModelLoadError(f"{directory / 'MLmodel'} has no `flavors` mapping, so it is not an MLflow model")
    return flavours


def _from_mlmodel(directory: Path, wanted: ModelFormat | None) -> Located:
    flavours = _read_mlmodel(directory)
    names = sorted(flavours)
    order = {"sklearn": ["sklearn"], "onnx": ["onnx"], "mlflow": list(SERVABLE_FLAVOURS), None: ["sklearn", "onnx"]}
    for flavour in order[wanted]:
        config = flavours.get(flavour)
        if not isinstance(config, dict):
            continue
        key = "pickled_model" if flavour == "sklearn" else "data"
        relative = config.get(key)
        if not isinstance(relative, str):
            raise ModelLoadError(f"{directory / 'MLmodel'}: flavour {flavour!r} has no `{key}` file")
        path = (directory / relative).resolve()
        if not path.is_relative_to(directory.resolve()) or not path.is_file():
            raise ModelLoadError(
                f"{directory / 'MLmodel'}: flavour {flavour!r} names {relative!r}, which is not a file in the model"
            )
        if flavour == "onnx":
            return Located("onnx", path, via_mlflow=True)
        serialization = str(config.get("serialization_format") or "pickle")
        if serialization not in ("pickle", "cloudpickle", "skops"):
            raise ModelLoadError(
                f"{directory / 'MLmodel'}: the sklearn flavour's serialization_format {serialization!r} is not one "
                "this server reads (pickle, cloudpickle, skops)"
            )
        trusted = config.get("skops_trusted_types") or []
        return Located("sklearn", path, True, serialization, tuple(str(t) for t in trusted))
    if wanted in ("sklearn", "onnx"):
        raise ModelLoadError(
            f"MODEL_FORMAT={wanted} but the MLflow model in {directory} has flavours {names}, not {wanted!r}"
        )
    source = f"MODEL_FORMAT={wanted}" if wanted else "the MLmodel file"
    raise ModelLoadError(
        f"{source}: the MLflow model in {directory} has flavours {names}; this server serves the flavours "
        f"{list(SERVABLE_FLAVOURS)}"
    )


def locate(target: Path, wanted: ModelFormat | None) -> Located:
    """Find the model file in a fetched directory (or a file) for the format wanted, or say clearly why not."""
    if not target.exists():
        raise ModelLoadError(f"the model path {target} does not exist (did the fetch run?)")
    if target.is_file():
        return _located_file(target, wanted, f"{target}")
    directory = target
    if (directory / "MLmodel").is_file():
        return _from_mlmodel(directory, wanted)
    files = _visible_files(directory)
    subdirs = [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not files and len(subdirs) == 1:  # a prefix that holds one model directory, e.g. `model/MLmodel`
        return locate(subdirs[0], wanted)
    if wanted == "mlflow":
        found = ", ".join(p.name for p in files[:5]) or "no files"
        raise ModelLoadError(f"MODEL_FORMAT=mlflow but {directory} has no MLmodel file (it holds {found})")
    if not files:
        raise ModelLoadError(f"the model directory {directory} is empty (did the fetch run?)")
    by_name = {p.name: p for p in files}
    for name in SKLEARN_NAMES:
        if name in by_name:
            return _located_file(by_name[name], wanted, str(directory))
    if "model.onnx" in by_name:
        return _located_file(by_name["model.onnx"], wanted, str(directory))
    onnx_files = [p for p in files if p.suffix.lower() == ".onnx"]
    if wanted == "onnx" and len(onnx_files) == 1:
        return _located_file(onnx_files[0], wanted, str(directory))
    if len(files) == 1:
        return _located_file(files[0], wanted, str(directory))
    names = ", ".join(p.name for p in files[:8])
    raise ModelLoadError(
        f"cannot tell which file in {directory} is the model (it holds {names}): name it model.pkl, model.joblib "
        "or model.onnx, or ship an MLflow model (MLmodel)"
    )


def _located_file(path: Path, wanted: ModelFormat | None, where: str) -> Located:
    kind = _sniff(path)
    if wanted == "mlflow":
        raise ModelLoadError(f"MODEL_FORMAT=mlflow but {where} holds {_describe(kind, path)}, not an MLflow model")
    if kind == "unknown":
        if wanted is None:
            raise ModelLoadError(f"cannot tell the format of {path}: set MODEL_FORMAT (sklearn or onnx)")
        kind = wanted
    if wanted is not None and kind != wanted:
        raise ModelLoadError(f"MODEL_FORMAT={wanted} but {where} holds {_describe(kind, path)}")
    serialization = "skops" if path.suffix.lower() == ".skops" else "pickle"
    return Located(cast(Literal["sklearn", "onnx"], kind), path, serialization=serialization)


def load_sklearn(path: Path, serialization: str = "pickle", trusted: tuple[str, ...] = ()) -> Model:
    try:
        if serialization == "skops":
            import skops.io  # type: ignore[import-untyped]  # the safe format MLflow 3 writes by default

            model = skops.io.load(path, trusted=list(trusted) or None)
        else:
            import joblib  # type: ignore[import-untyped]  # scikit-learn's; reads pickle, joblib and cloudpickle

            model = joblib.load(path)
    except Exception as error:
        raise ModelLoadError(
            f"cannot load the scikit-learn model {path} ({serialization}): {type(error).__name__}: {error}"
        ) from error
    if not hasattr(model, "predict_proba"):
        raise ModelLoadError(f"the object in {path} ({type(model).__name__}) has no predict_proba")
    return cast(Model, model)


class OnnxModel:
    """An ONNX classifier behind `predict_proba`: the first input, and the output that holds probabilities."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError as error:
            raise ModelLoadError(
                f"{path} is an ONNX model, but onnxruntime is not installed: install the `onnx` extra "
                "(pip install 'modeldeploy[server,onnx]') or use an image built with it"
            ) from error
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:
            raise ModelLoadError(f"onnxruntime cannot load {path}: {error}") from error
        first = self.session.get_inputs()[0]
        self.input_name: str = first.name
        self.dtype = np.float64 if first.type == "tensor(double)" else np.float32

    def predict_proba(self, features: Any) -> Any:
        try:
            outputs = self.session.run(None, {self.input_name: np.asarray(features, dtype=self.dtype)})
        except Exception as error:  # onnxruntime's InvalidArgument and kin: the input does not fit the model
            raise ValueError(str(error).splitlines()[0] if str(error) else type(error).__name__) from error
        for output in outputs[::-1]:  # skl2onnx puts (label, probabilities); a regressor has one output
            if isinstance(output, list) and output and isinstance(output[0], dict):  # ZipMap: [{class: p}]
                keys = sorted(output[0])
                return np.asarray([[row[k] for k in keys] for row in output], dtype=float)
            array = np.asarray(output)
            if array.dtype.kind == "f" and array.ndim == 2 and array.shape[1] >= 2:
                return array.astype(float)
        scores = np.asarray(outputs[-1], dtype=float).reshape(len(features), -1)[:, 0]
        return np.stack([1 - scores, scores], axis=1)


def load_located(found: Located) -> Model:
    if found.kind == "onnx":
        return OnnxModel(found.path)
    return load_sklearn(found.path, found.serialization, found.trusted)


def load_from_dir(target: Path, model_format: str | None) -> tuple[Model, Located]:
    found = locate(target, parse_format(model_format))
    return load_located(found), found


def builtin_logistic() -> Model:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    features, labels = make_classification(n_samples=500, n_features=4, random_state=7)
    return cast(Model, LogisticRegression().fit(features, labels))


def load_uri(uri: str) -> Model:
    """The older contract, without MODEL_DIR: a pickle at file://..., or builtin://logistic."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        with open(parsed.path, "rb") as handle:
            return cast(Model, pickle.load(handle))
    if uri == "builtin://logistic":
        return builtin_logistic()
    raise ModelLoadError(
        f"unsupported model URI {uri!r} without MODEL_DIR: fetch it first (`modelserver fetch`, which the operator "
        "runs as an init container) and set MODEL_DIR, or use file:///path/to/model.pkl or builtin://logistic"
    )
