"""What is served: the model artifact, where it comes from, and how the pods reach it.

A change here starts a new revision. A registry source (`models:/<name>@<alias>`) is resolved by the operator
to a version and a download URI, which are pinned in status; the pods only ever get the pinned ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from modeldeploy.core.api.base import DNS_LABEL, DURATION, HTTP_URL, LABEL_VALUE, ApiModel, Rule

ModelFormat = Literal["sklearn", "xgboost", "lightgbm", "mlflow", "huggingface", "onnx", "custom"]

# Every scheme the fetch step downloads (or, for pvc://, mounts); anything else is refused at admission.
SCHEMES = ("s3://", "gs://", "https://", "http://", "file://", "pvc://", "models:/", "builtin://")
MODEL_URI = r"^[a-zA-Z][a-zA-Z0-9+.-]*:/[^\s]+$"
REGISTRY_URI = r"^models:/([A-Za-z0-9][A-Za-z0-9._-]*)(/([0-9]+)|@([A-Za-z0-9_-]+))$"
PVC_URI = r"^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/[^\s]*)?$"
SHA256 = r"^sha256:[a-f0-9]{64}$"


class S3Options(ApiModel):
    """For S3-compatible stores (MinIO, Ceph, R2 ...) and regions the default chain cannot guess."""

    endpoint: str | None = Field(
        default=None, max_length=2048, pattern=HTTP_URL, description="e.g. http://minio.storage:9000."
    )
    region: str | None = Field(default=None, max_length=64, pattern=r"^[a-z0-9-]+$", description="e.g. eu-west-1.")
    path_style: bool = Field(default=False, description="Bucket in the path, not in the host name (most non-AWS S3).")


class Storage(ApiModel):
    """How the pods' fetch step reaches the object store."""

    secret_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        description="Secret whose keys become the fetch step's environment (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, GOOGLE_APPLICATION_CREDENTIALS_JSON, MODEL_HTTP_BEARER_TOKEN); "
        "only the fetch step sees them. Without it the pods' service account identity is used.",
    )
    s3: S3Options | None = Field(default=None, description="Endpoint, region and addressing for s3:// URIs.")
    timeout_seconds: int = Field(
        default=600, ge=10, le=86400, description="One deadline for the whole download; past it the pod's fetch fails."
    )


class MlflowRegistry(ApiModel):
    """An MLflow tracking server with a Model Registry."""

    tracking_uri: str = Field(max_length=2048, pattern=HTTP_URL, description="e.g. https://mlflow.example.com.")
    secret_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        description="Secret with MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.",
    )
    poll_interval: str = Field(
        default="60s",
        max_length=32,
        pattern=DURATION,
        description="How often an alias is looked up again (jittered by up to 10%); a move starts a canary.",
    )
    tag_outcome: bool = Field(
        default=False,
        description="Tag the model version in MLflow with the rollout's outcome (modeldeploy.outcome: Promoted or "
        "RolledBack, modeldeploy.reason).",
    )


class Registry(ApiModel):
    mlflow: MlflowRegistry = Field(description="Resolve models:/ URIs against this MLflow Model Registry.")


@dataclass(frozen=True)
class RegistryReference:
    """A parsed `models:/<name>/<version>` or `models:/<name>@<alias>`."""

    name: str
    version: str | None
    alias: str | None


class ModelSource(ApiModel):
    """What is served. A change here starts a new revision."""

    rules = (
        Rule(
            "self.uri.startsWith('s3://') || self.uri.startsWith('gs://') || self.uri.startsWith('https://') || "
            "self.uri.startsWith('http://') || self.uri.startsWith('file://') || self.uri.startsWith('pvc://') || "
            "self.uri.startsWith('models:/') || self.uri.startsWith('builtin://')",
            "model.uri must start with one of s3://, gs://, https://, http://, file://, pvc://, models:/ or builtin://",
        ),
        Rule(
            f"!self.uri.startsWith('models:/') || self.uri.matches(r'{REGISTRY_URI}')",
            "a registry model.uri is models:/<name>/<version> or models:/<name>@<alias>",
        ),
        Rule(
            f"!self.uri.startsWith('pvc://') || self.uri.matches(r'{PVC_URI}')",
            "a pvc model.uri is pvc://<claim name>/<path inside the claim>",
        ),
        Rule(
            "self.uri.startsWith('models:/') == has(self.registry)",
            "model.registry is required with a models:/ URI, and only then",
        ),
        Rule(
            "self.uri.startsWith('models:/') != has(self.version)",
            "model.version is required, except with a models:/ URI, whose version comes from the registry",
        ),
        Rule(
            "!has(self.storage) || !has(self.storage.s3) || self.uri.startsWith('s3://') || "
            "self.uri.startsWith('models:/')",
            "model.storage.s3 applies only to s3:// URIs (or a registry whose artifacts live in S3)",
        ),
    )

    name: str = Field(
        min_length=1, max_length=63, pattern=DNS_LABEL, description="Model name, a DNS label (e.g. fraud-scorer)."
    )
    version: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE,
        description="Model version, usable as a label value (e.g. '7' or 'v2.1'); resolved from the registry for "
        "models:/ URIs.",
    )
    uri: str = Field(
        max_length=2048,
        pattern=MODEL_URI,
        description="Where the artifact lives: s3://bucket/key, gs://bucket/path, https://host/file, file:///path "
        "(inside the image), pvc://<claim>/<path> (mounted read-only, not copied), models:/<name>/<version> or "
        "models:/<name>@<alias> (MLflow Model Registry), builtin://logistic (a demo model).",
    )
    format: ModelFormat = Field(description="Serialisation format of the artifact; the runtime preset must support it.")
    digest: str | None = Field(
        default=None,
        pattern=SHA256,
        description="Pin the artifact: sha256:<hex> as `modelserver digest` prints it. A different artifact fails "
        "the pods' fetch, so the canary never gets traffic.",
    )
    storage: Storage | None = Field(default=None, description="Credentials and options for the object store.")
    registry: Registry | None = Field(default=None, description="The registry that resolves a models:/ URI.")

    @property
    def registry_reference(self) -> RegistryReference | None:
        """The registry name and version or alias of a models:/ URI; None for a direct URI."""
        match = re.match(REGISTRY_URI, self.uri)
        if match is None:
            return None
        return RegistryReference(name=match.group(1), version=match.group(3), alias=match.group(4))

    @property
    def concrete_version(self) -> str:
        """The version the pods serve; a models:/ source has one only once the operator has resolved it."""
        if self.version is None:
            raise ValueError(f"model {self.name}: the registry has not resolved {self.uri} to a version yet")
        return self.version

    @property
    def scheme(self) -> str:
        return next((s for s in SCHEMES if self.uri.startswith(s)), "")
