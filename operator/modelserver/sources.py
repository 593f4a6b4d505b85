"""Where a model comes from: each URI scheme turned into the list of files to download.

Object stores go through obstore (S3 and S3-compatible stores, GCS); plain HTTP(S) and the MLflow REST API
through httpx. Neither is asked to do anything a library does not do itself: no request is signed here.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import obstore
from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
from obstore.store import GCSStore, S3Store

from modelserver.errors import (
    AccessDeniedError,
    ArtifactNotFoundError,
    FetchError,
    RegistryError,
    UnreachableError,
    UnsupportedSchemeError,
    UsageError,
)
from modelserver.redact import display_uri

if TYPE_CHECKING:
    from obstore.store import ClientConfig, GCSConfig, RetryConfig, S3Config
    from typing_extensions import Buffer

CHUNK = 8 * 1024 * 1024
LIBRARY_GRACE = 30.0  # libraries' own time limits sit past the fetch's deadline, so the deadline speaks first
SCHEMES = "s3://, gs://, https://, http://, file://, mlflow-artifacts:/, models:/"
MLFLOW_ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"


@dataclass(frozen=True)
class Entry:
    """One file to download: where it goes under MODEL_DIR, its size if known, and its bytes."""

    relative: str
    size: int | None
    open: Callable[[], AsyncIterator[Buffer]]


@dataclass
class Artifact:
    """What a URI names. `single`: one object, whose digest is the SHA-256 of its bytes; else a directory."""

    uri: str
    single: bool
    entries: list[Entry]
    resolved: dict[str, str] = field(default_factory=dict)


def scheme_of(uri: str) -> str:
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", uri)
    return match.group(1).lower() if match else ""


def safe_relative(relative: str, uri: str) -> str:
    """A store key made a relative path under MODEL_DIR; keys that would escape it are refused."""
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or "\\" in relative or "\0" in relative:
        raise FetchError(f"refusing the object key {relative!r} under {display_uri(uri)}: not a plain relative path")
    return "/".join(parts)


def store_reason(text: str) -> str:
    """The gist of an obstore error (whose text carries a Rust debug dump): the store's error code and message,
    else the HTTP status, else the start of the text."""
    code = re.search(r"<Code>([^<]+)</Code>", text)
    if code:
        message = re.search(r"<Message>([^<]+)</Message>", text)
        return code.group(1) + (f": {message.group(1)}" if message else "")
    status = re.search(r"status code: (\d{3}[ A-Za-z]*)", text)
    gist = text.split(" Debug source:")[0]
    gist = re.sub(r"^Generic \w+ error: ", "", gist)
    if status and len(gist) > 200:
        return f"HTTP {status.group(1).strip()}"
    sending = re.search(r"(after \d+ retries).*?- (HTTP error: [^,]+)", gist)
    if sending:
        return f"{sending.group(2)} ({sending.group(1)})"
    return gist if len(gist) <= 200 else gist[:199] + "…"


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Context:
    """What every source needs: the environment (credentials, endpoints), the fetch's deadline, a stack that
    closes clients and responses, and (for tests) the HTTP transport httpx uses."""

    env: Mapping[str, str]
    timeout: float
    stack: AsyncExitStack
    transport: httpx.AsyncBaseTransport | None = None


async def resolve(uri: str, context: Context) -> Artifact:
    """The files the URI names, with their sizes, ready to stream. Fails with a FetchError that names the URI."""
    scheme = scheme_of(uri)
    if scheme == "s3":
        return await S3Source(context.env, context.timeout).artifact(uri)
    if scheme == "gs":
        return await GCSSource(context.env, context.timeout).artifact(uri)
    if scheme in ("http", "https"):
        return await http_artifact(uri, context)
    if scheme == "file":
        return file_artifact(uri)
    if scheme in ("models", "mlflow-artifacts"):
        client = await context.stack.enter_async_context(MLflowClient(context.env, context.timeout, context.transport))
        if scheme == "models":
            return await client.model_artifact(uri, context)
        return await client.artifacts(uri)
    raise UnsupportedSchemeError(
        f"unsupported model URI scheme {scheme or '(none)'!r} in {display_uri(uri)}: fetch supports {SCHEMES} "
        "(builtin:// and pvc:// need no fetch)"
    )


# Object stores (obstore) ------------------------------------------------------------------------------------


def _retry(timeout: float) -> RetryConfig:
    return {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=min(30.0, timeout)),
        "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5), "base": 2},
    }


def _client(endpoint: str | None, timeout: float) -> ClientConfig:
    # One deadline for the whole fetch is enforced around it, so a request may take longer than that (a big object
    # streams for minutes) and the deadline fires first, with its own message; a connection attempt takes 10 s.
    options: ClientConfig = {
        "timeout": timedelta(seconds=timeout + LIBRARY_GRACE),
        "connect_timeout": timedelta(seconds=min(10.0, timeout)),
    }
    if endpoint and endpoint.startswith("http://"):
        options["allow_http"] = True
    return options


class ObjectStoreSource:
    scheme = ""
    store_name = ""

    def __init__(self, env: Mapping[str, str], timeout: float) -> None:
        self.env = env
        self.timeout = timeout

    def credential_source(self) -> str:
        raise NotImplementedError

    def endpoint(self) -> str:
        raise NotImplementedError

    def store(self, bucket: str) -> S3Store | GCSStore:
        raise NotImplementedError

    def error(self, error: Exception, uri: str) -> FetchError:
        """The obstore error said plainly: not found, access denied (naming the credential source), unreachable."""
        shown = display_uri(uri)
        text = _one_line(error, limit=2000)
        reason = store_reason(text)
        if isinstance(error, FileNotFoundError) or re.search(r"\b404\b|NoSuchBucket|NoSuchKey", text):
            return ArtifactNotFoundError(f"not found: {shown} ({reason})")
        if isinstance(error, (PermissionDeniedError, UnauthenticatedError, PermissionError)) or re.search(
            r"\b40[13]\b|AccessDenied|SignatureDoesNotMatch|InvalidAccessKeyId|Forbidden|Unauthorized", text
        ):
            return AccessDeniedError(
                f"access denied: {self.store_name} refused {shown} with {self.credential_source()} ({reason})"
            )
        if re.search(r"(?i)error sending request|connect|dns|resolve|unreachable|timed out", text):
            return UnreachableError(f"cannot reach {self.store_name} at {self.endpoint()} for {shown}: {reason}")
        return FetchError(f"{self.store_name} failed for {shown}: {reason}")

    async def artifact(self, uri: str) -> Artifact:
        parts = urlsplit(uri)
        bucket, key = parts.netloc, unquote(parts.path).lstrip("/")
        if not bucket:
            raise UsageError(f"no bucket in {display_uri(uri)}: use {self.scheme}://bucket/key-or-prefix")
        store = self.store(bucket)
        denied: FetchError | None = None
        if key and not key.endswith("/"):
            try:
                head = await obstore.head_async(store, key)
                name = posixpath.basename(key)
                return Artifact(uri, True, [Entry(name, head["size"], self._reader(store, key, uri))])
            except (FileNotFoundError, PermissionDeniedError, UnauthenticatedError) as error:
                # Not an object (or, without s3:GetObject on a missing key, a 403): maybe a prefix; list it.
                denied = self.error(error, uri)
            except Exception as error:
                raise self.error(error, uri) from error
        prefix = key.strip("/")
        metas: list[dict[str, Any]] = []
        try:
            async for batch in obstore.list(store, prefix or None, chunk_size=1000):
                metas.extend({"path": listed["path"], "size": listed["size"]} for listed in batch)
        except Exception as error:
            raise self.error(error, uri) from error
        entries = []
        for meta in metas:
            path = str(meta["path"])
            relative = path[len(prefix) :].lstrip("/") if prefix else path
            if not relative or path.endswith("/"):
                continue  # a "directory" marker object
            entries.append(Entry(safe_relative(relative, uri), int(meta["size"]), self._reader(store, path, uri)))
        if not entries:
            if isinstance(denied, AccessDeniedError):
                raise denied
            raise ArtifactNotFoundError(f"not found: no object {display_uri(uri)} and nothing under that prefix")
        return Artifact(uri, False, entries)

    def _reader(self, store: S3Store | GCSStore, path: str, uri: str) -> Callable[[], AsyncIterator[Buffer]]:
        async def read() -> AsyncIterator[Buffer]:
            try:
                result = await obstore.get_async(store, path)
                async for chunk in result.stream(min_chunk_size=CHUNK):
                    yield chunk
            except FetchError:
                raise
            except Exception as error:
                raise self.error(error, uri) from error

        return read


class S3Source(ObjectStoreSource):
    """s3://bucket/key-or-prefix; AWS_ENDPOINT_URL for S3-compatible stores, path style by default there."""

    scheme = "s3"
    store_name = "S3"

    def credential_source(self) -> str:
        env = self.env
        if env.get("AWS_ACCESS_KEY_ID"):
            token = " and AWS_SESSION_TOKEN" if env.get("AWS_SESSION_TOKEN") else ""
            return f"the access key from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY{token}"
        if env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
            return "the web identity token in AWS_WEB_IDENTITY_TOKEN_FILE (role from AWS_ROLE_ARN)"
        if env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
            return "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*)"
        if env.get("AWS_SKIP_SIGNATURE", "").lower() in ("1", "true"):
            return "no credentials (AWS_SKIP_SIGNATURE)"
        return "the instance metadata service (no AWS credentials in the environment)"

    def endpoint(self) -> str:
        custom = self.env.get("AWS_ENDPOINT_URL_S3") or self.env.get("AWS_ENDPOINT_URL")
        region = self.env.get("AWS_REGION") or self.env.get("AWS_DEFAULT_REGION") or "us-east-1"
        return display_uri(custom) if custom else f"AWS ({region})"

    def config(self, bucket: str) -> tuple[S3Config, ClientConfig]:
        env = self.env
        config: S3Config = {}
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if region:
            config["region"] = region
        force = env.get("AWS_S3_FORCE_PATH_STYLE", "").strip().lower()
        path_style = force in ("1", "true", "yes") or (bool(endpoint) and force not in ("0", "false", "no"))
        if endpoint:
            endpoint = endpoint.rstrip("/")
            if not path_style:  # virtual-hosted style: obstore wants the bucket in the endpoint's host
                scheme, _, host = endpoint.partition("://")
                endpoint = f"{scheme}://{bucket}.{host}"
            config["endpoint"] = endpoint
        config["virtual_hosted_style_request"] = not path_style
        return config, _client(endpoint, self.timeout)

    def store(self, bucket: str) -> S3Store:
        config, client = self.config(bucket)
        # Credentials come from obstore's own chain: AWS_ACCESS_KEY_ID/..., web identity, container, IMDS.
        return S3Store(bucket, config=config, client_options=client, retry_config=_retry(self.timeout))


class GCSSource(ObjectStoreSource):
    """gs://bucket/key-or-prefix; STORAGE_EMULATOR_HOST points it at an emulator, without credentials."""

    scheme = "gs"
    store_name = "GCS"

    def credential_source(self) -> str:
        env = self.env
        if env.get("STORAGE_EMULATOR_HOST"):
            return "no credentials (the emulator at STORAGE_EMULATOR_HOST)"
        if env.get("GOOGLE_SERVICE_ACCOUNT_KEY"):
            return "the service account key in GOOGLE_SERVICE_ACCOUNT_KEY"
        for name in ("GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_PATH", "GOOGLE_APPLICATION_CREDENTIALS"):
            if env.get(name):
                return f"the credentials file named by {name} ({env[name]})"
        return "the metadata server (workload identity; no GOOGLE_* credentials in the environment)"

    def endpoint(self) -> str:
        return display_uri(self.env.get("STORAGE_EMULATOR_HOST", "")) or "storage.googleapis.com"

    def config(self) -> tuple[GCSConfig, ClientConfig]:
        emulator = self.env.get("STORAGE_EMULATOR_HOST", "").rstrip("/")
        config: GCSConfig = {}
        if emulator:
            if "://" not in emulator:
                emulator = f"http://{emulator}"
            config["base_url"] = emulator
            config["skip_signature"] = True
        return config, _client(emulator or None, self.timeout)

    def store(self, bucket: str) -> GCSStore:
        config, client = self.config()
        return GCSStore(bucket, config=config, client_options=client, retry_config=_retry(self.timeout))


# HTTP(S) ----------------------------------------------------------------------------------------------------


def _http_timeout(timeout: float) -> httpx.Timeout:
    return httpx.Timeout(timeout + LIBRARY_GRACE, connect=min(10.0, timeout))


async def http_artifact(uri: str, context: Context) -> Artifact:
    """One file over HTTP(S); MODEL_HTTP_BEARER_TOKEN is sent as `Authorization: Bearer` (not across redirects
    to another host)."""
    token = context.env.get("MODEL_HTTP_BEARER_TOKEN")
    source = "the bearer token from MODEL_HTTP_BEARER_TOKEN" if token else "no credentials"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = await context.stack.enter_async_context(
        httpx.AsyncClient(follow_redirects=True, timeout=_http_timeout(context.timeout), transport=context.transport)
    )
    shown = display_uri(uri)
    try:
        response = await client.send(client.build_request("GET", uri, headers=headers), stream=True)
    except httpx.TimeoutException as error:
        raise UnreachableError(f"cannot reach {shown}: timed out connecting ({type(error).__name__})") from error
    except httpx.TransportError as error:
        raise UnreachableError(f"cannot reach {shown}: {_one_line(error)}") from error
    context.stack.push_async_callback(response.aclose)
    if response.status_code in (401, 403):
        raise AccessDeniedError(f"access denied: {shown} answered HTTP {response.status_code} to {source}")
    if response.status_code in (404, 410):
        raise ArtifactNotFoundError(f"not found: {shown} answered HTTP {response.status_code}")
    if response.status_code >= 400:
        raise FetchError(f"{shown} answered HTTP {response.status_code}")
    length = response.headers.get("content-length")
    size = int(length) if length and length.isdigit() and "content-encoding" not in response.headers else None
    name = posixpath.basename(unquote(urlsplit(uri).path)) or "model"

    async def read() -> AsyncIterator[Buffer]:
        try:
            async for chunk in response.aiter_bytes(CHUNK):
                yield chunk
        except httpx.TransportError as error:
            raise UnreachableError(f"the download of {shown} broke off: {_one_line(error)}") from error

    return Artifact(uri, True, [Entry(safe_relative(name, uri), size, read)])


# file:// ----------------------------------------------------------------------------------------------------


def _file_reader(path: Path) -> Callable[[], AsyncIterator[Buffer]]:
    async def read() -> AsyncIterator[Buffer]:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
                await asyncio.sleep(0)  # lets the overall deadline fire between chunks

    return read


def file_artifact(uri: str) -> Artifact:
    """A local file or directory (a mounted volume, a test): copied, so the server reads MODEL_DIR either way."""
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise UsageError(f"file:// URIs name a local path; {display_uri(uri)} names the host {parts.netloc!r}")
    root = Path(unquote(parts.path))
    try:
        if root.is_file():
            return Artifact(uri, True, [Entry(root.name, root.stat().st_size, _file_reader(root))])
        if root.is_dir():
            from modelserver.digest import tree_files

            entries = [Entry(rel, path.stat().st_size, _file_reader(path)) for rel, path in tree_files(root)]
            if entries:
                return Artifact(uri, False, entries)
            raise ArtifactNotFoundError(f"not found: the directory {root} ({uri}) holds no files")
    except PermissionError as error:
        raise AccessDeniedError(
            f"access denied: cannot read {root} ({uri}) with this process's file permissions"
        ) from error
    raise ArtifactNotFoundError(f"not found: {uri} (no such file or directory)")


# MLflow -----------------------------------------------------------------------------------------------------

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<ref>[^/@]+))$")


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/<name>/<version|latest|stage>` or `models:/<name>@<alias>` → (name, version-or-stage, alias)."""
    if uri.startswith("models://"):
        raise UsageError(
            f"{uri}: a models:// URI with a profile or host is not supported; use models:/<name>/<version>"
        )
    match = _MODEL_URI.match(uri)
    if not match:
        raise UsageError(f"cannot read {uri!r}: use models:/<name>/<version> or models:/<name>@<alias>")
    return unquote(match["name"]), match["ref"], match["alias"]


class MLflowClient:
    """The MLflow tracking server's REST API: the registry, and the artifact proxy (mlflow-artifacts:)."""

    def __init__(
        self, env: Mapping[str, str], timeout: float, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        tracking = env.get("MLFLOW_TRACKING_URI", "").rstrip("/")
        if not tracking:
            raise UsageError("models:/ and mlflow-artifacts:/ URIs need MLFLOW_TRACKING_URI (the tracking server)")
        if scheme_of(tracking) not in ("http", "https"):
            raise UsageError(
                f"MLFLOW_TRACKING_URI must be the tracking server's http(s):// address, not {display_uri(tracking)}"
            )
        self.tracking = tracking
        self.shown = display_uri(tracking)
        auth: httpx.Auth | None = None
        headers: dict[str, str] = {}
        if env.get("MLFLOW_TRACKING_TOKEN"):
            headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
            self.credential_source = "the token from MLFLOW_TRACKING_TOKEN"
        elif env.get("MLFLOW_TRACKING_USERNAME"):
            auth = httpx.BasicAuth(env["MLFLOW_TRACKING_USERNAME"], env.get("MLFLOW_TRACKING_PASSWORD", ""))
            self.credential_source = "the user and password from MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD"
        else:
            self.credential_source = "no credentials"
        self.client = httpx.AsyncClient(
            base_url=tracking,
            auth=auth,
            headers=headers,
            timeout=_http_timeout(timeout),
            follow_redirects=True,
            transport=transport,
        )

    async def __aenter__(self) -> MLflowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    def _refused(self, status: int) -> AccessDeniedError:
        return AccessDeniedError(
            f"access denied: the MLflow tracking server at {self.shown} answered HTTP {status} to "
            f"{self.credential_source}"
        )

    async def get_json(self, path: str, params: dict[str, str], missing: str) -> dict[str, Any]:
        try:
            response = await self.client.get(path, params=params)
        except httpx.TransportError as error:
            raise RegistryError(
                f"the MLflow tracking server at {self.shown} is unreachable: {_one_line(error)}"
            ) from error
        if response.status_code in (401, 403):
            raise self._refused(response.status_code)
        try:
            body = response.json()
        except ValueError:
            body = {}
        message = body.get("message") if isinstance(body, dict) else None
        if 400 <= response.status_code < 500:
            detail = f": {_one_line(Exception(message))}" if message else f" (HTTP {response.status_code})"
            raise RegistryError(f"{missing} at the MLflow tracking server {self.shown}{detail}")
        if response.status_code >= 300 or not isinstance(body, dict):
            raise RegistryError(
                f"the MLflow tracking server at {self.shown} failed: HTTP {response.status_code} "
                f"{_one_line(Exception(message or response.text[:200]))}"
            )
        return body

    async def model_artifact(self, uri: str, context: Context) -> Artifact:
        name, ref, alias = parse_models_uri(uri)
        if alias is not None:
            body = await self.get_json(
                "/api/2.0/mlflow/registered-models/alias",
                {"name": name, "alias": alias},
                f"no alias {alias!r} on the registered model {name!r}",
            )
            version = str(body.get("model_version", {}).get("version", ""))
            if not version:
                raise RegistryError(f"the alias {alias!r} of {name!r} at {self.shown} points at no version")
        elif ref is not None and not ref.isdigit():
            stages = [] if ref.lower() == "latest" else [ref]
            response = await self._post_latest(name, stages)
            versions = [str(v.get("version", "")) for v in response.get("model_versions", [])]
            versions = [v for v in versions if v.isdigit()]
            if not versions:
                raise RegistryError(f"the registered model {name!r} has no version in {ref!r} at {self.shown}")
            version = max(versions, key=int)
        else:
            version = str(ref)
        body = await self.get_json(
            "/api/2.0/mlflow/model-versions/get-download-uri",
            {"name": name, "version": version},
            f"no version {version} of the registered model {name!r}",
        )
        download = str(body.get("artifact_uri", ""))
        if not download:
            raise RegistryError(f"the MLflow tracking server at {self.shown} gave no artifact URI for {uri}")
        resolved = {"model": name, "version": version, "artifact_uri": display_uri(download)}
        scheme = scheme_of(download)
        if scheme == "mlflow-artifacts":
            artifact = await self.artifacts(download)
        elif scheme in ("s3", "gs", "http", "https"):
            artifact = await resolve(download, context)
        else:
            raise UnsupportedSchemeError(
                f"{uri} is version {version}, stored at {display_uri(download)}, which this pod cannot read: "
                "serve the artifacts through the tracking server (mlflow server --artifacts-destination ...) "
                "or keep them in S3 or GCS"
            )
        artifact.uri = uri
        artifact.resolved = resolved
        return artifact

    async def _post_latest(self, name: str, stages: list[str]) -> dict[str, Any]:
        try:
            response = await self.client.post(
                "/api/2.0/mlflow/registered-models/get-latest-versions", json={"name": name, "stages": stages}
            )
        except httpx.TransportError as error:
            raise RegistryError(
                f"the MLflow tracking server at {self.shown} is unreachable: {_one_line(error)}"
            ) from error
        if response.status_code in (401, 403):
            raise self._refused(response.status_code)
        if response.status_code >= 400:
            raise RegistryError(f"no registered model {name!r} at the MLflow tracking server {self.shown}")
        body = response.json()
        return body if isinstance(body, dict) else {}

    def _artifact_base(self, uri: str) -> tuple[str, str]:
        """mlflow-artifacts:/path (this tracking server) or mlflow-artifacts://host:port/path → (base, path)."""
        parts = urlsplit(uri)
        base = self.tracking
        if parts.netloc:
            base = f"{urlsplit(self.tracking).scheme}://{parts.netloc}"
        return base, unquote(parts.path).strip("/")

    async def _list(self, base: str, path: str, uri: str) -> list[tuple[str, int | None]]:
        """Every file under an artifact path, recursively, as (path relative to it, size)."""
        found: list[tuple[str, int | None]] = []
        pending = [""]
        while pending:
            below = pending.pop()
            full = "/".join(p for p in (path, below) if p)
            body = await self.get_json(
                f"{base}{MLFLOW_ARTIFACTS_API}", {"path": full}, f"no artifacts at {display_uri(uri)}"
            )
            for item in body.get("files", []):
                name = posixpath.basename(str(item.get("path", "")))
                relative = f"{below}/{name}" if below else name
                if item.get("is_dir"):
                    pending.append(relative)
                else:
                    size = item.get("file_size")
                    found.append((relative, int(size) if size is not None else None))
        return found

    def _reader(self, url: str, shown: str) -> Callable[[], AsyncIterator[Buffer]]:
        async def read() -> AsyncIterator[Buffer]:
            try:
                async with self.client.stream("GET", url) as response:
                    if response.status_code in (401, 403):
                        raise self._refused(response.status_code)
                    if response.status_code == 404:
                        raise ArtifactNotFoundError(
                            f"not found: {shown} (the tracking server's artifact proxy answered 404)"
                        )
                    if response.status_code >= 400:
                        raise FetchError(f"the MLflow artifact proxy answered HTTP {response.status_code} for {shown}")
                    async for chunk in response.aiter_bytes(CHUNK):
                        yield chunk
            except httpx.TransportError as error:
                raise RegistryError(
                    f"the MLflow tracking server at {self.shown} is unreachable: {_one_line(error)}"
                ) from error

        return read

    async def artifacts(self, uri: str) -> Artifact:
        """Download through the tracking server's artifact proxy (`mlflow server` serves artifacts by default)."""
        base, path = self._artifact_base(uri)
        files = await self._list(base, path, uri)
        url = f"{base}{MLFLOW_ARTIFACTS_API}/{quote(path)}"
        if not files:  # a single artifact file, or nothing
            return Artifact(uri, True, [Entry(posixpath.basename(path) or "model", None, self._reader(url, uri))])
        entries = [
            Entry(safe_relative(rel, uri), size, self._reader(f"{url}/{quote(rel)}", display_uri(uri)))
            for rel, size in files
        ]
        return Artifact(uri, False, entries)
