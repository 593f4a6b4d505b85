"""The MLflow Model Registry over its REST API: resolve a version or alias, and tag a version with an outcome.

Every answer maps to a value or to a RegistryError with a reason a person can act on; one deadline bounds each
call. Credentials (a token, or a user and password, from the Secret the spec names) go into the HTTP client only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from modeldeploy.core.api import MlflowRegistry, RegistryReference

TIMEOUT_SECONDS = 10.0


class RegistryError(Exception):
    """The registry could not answer: `reason` is a condition reason, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ModelVersion:
    """A registry version pinned for serving."""

    version: str
    download_uri: str
    run_id: str | None


def _auth(credentials: dict[str, str]) -> httpx.Auth | dict[str, str] | None:
    token = credentials.get("MLFLOW_TRACKING_TOKEN", "").strip()
    if token:
        return {"Authorization": f"Bearer {token}"}
    user = credentials.get("MLFLOW_TRACKING_USERNAME", "").strip()
    if user:
        return httpx.BasicAuth(user, credentials.get("MLFLOW_TRACKING_PASSWORD", "").strip())
    return None


class MlflowClient:
    def __init__(
        self,
        settings: MlflowRegistry,
        credentials: dict[str, str] | None = None,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        auth = _auth(credentials or {})
        self.address = settings.tracking_uri.rstrip("/")
        self.deadline_seconds = timeout
        self.client = httpx.Client(
            base_url=self.address,
            timeout=timeout,
            headers=auth if isinstance(auth, dict) else None,
            auth=auth if isinstance(auth, httpx.Auth) else None,
            transport=transport,
        )

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, deadline: float, **kwargs: Any) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RegistryError(
                "RegistryUnavailable", f"MLflow at {self.address} did not answer in {self.deadline_seconds:g}s"
            )
        try:
            response = self.client.request(method, f"/api/2.0/mlflow/{path}", timeout=remaining, **kwargs)
        except httpx.HTTPError as error:
            raise RegistryError(
                "RegistryUnavailable", f"MLflow at {self.address} unreachable: {type(error).__name__}"
            ) from error
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RegistryError(
                "RegistryUnavailable", f"MLflow at {self.address} answered HTTP {response.status_code} without JSON"
            )
        if response.status_code in (401, 403):
            raise RegistryError(
                "RegistryUnauthorized",
                f"MLflow at {self.address} refused the credentials (HTTP {response.status_code}); check the Secret "
                "named in model.registry.mlflow.secretName",
            )
        if response.is_error:
            code = str(body.get("error_code") or f"HTTP {response.status_code}")
            message = str(body.get("message") or "")[:300]
            reason = "ModelNotFound" if code == "RESOURCE_DOES_NOT_EXIST" else "RegistryError"
            raise RegistryError(reason, f"MLflow at {self.address}: {code}: {message}")
        return body

    def resolve(self, reference: RegistryReference) -> ModelVersion:
        """The version an alias points at (or the version named), with its download URI; READY versions only."""
        deadline = time.monotonic() + self.deadline_seconds
        where = f"models:/{reference.name}" + (f"@{reference.alias}" if reference.alias else f"/{reference.version}")
        try:
            if reference.alias is not None:
                body = self._call(
                    "GET",
                    "registered-models/alias",
                    deadline,
                    params={"name": reference.name, "alias": reference.alias},
                )
            else:
                body = self._call(
                    "GET", "model-versions/get", deadline, params={"name": reference.name, "version": reference.version}
                )
        except RegistryError as error:
            if error.reason == "ModelNotFound":
                what = f"alias {reference.alias!r}" if reference.alias else f"version {reference.version}"
                raise RegistryError(
                    "AliasNotFound" if reference.alias else "ModelNotFound",
                    f"{where}: the registry has no {what} of model {reference.name!r}",
                ) from error
            raise
        found = body.get("model_version")
        if not isinstance(found, dict) or not str(found.get("version") or "").isdigit():
            raise RegistryError("RegistryError", f"{where}: MLflow answered without a model version")
        version = str(found["version"])
        status = found.get("status", "READY")
        if status != "READY":
            raise RegistryError(
                "ModelVersionNotReady",
                f"{where} is version {version}, which is {status}: {found.get('status_message', '')}",
            )
        download = self._call(
            "GET", "model-versions/get-download-uri", deadline, params={"name": reference.name, "version": version}
        )
        uri = download.get("artifact_uri")
        if not isinstance(uri, str) or not uri:
            raise RegistryError("RegistryError", f"{where}: MLflow gave no download URI for version {version}")
        run_id = found.get("run_id")
        return ModelVersion(version=version, download_uri=uri, run_id=str(run_id) if run_id else None)

    def tag(self, name: str, version: str, tags: dict[str, str]) -> None:
        """Sets tags on a model version; raises RegistryError."""
        deadline = time.monotonic() + self.deadline_seconds
        for key, value in tags.items():
            self._call(
                "POST",
                "model-versions/set-tag",
                deadline,
                json={"name": name, "version": version, "key": key, "value": value[:5000]},
            )
