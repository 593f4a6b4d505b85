"""AWS Signature Version 4 for httpx, for Amazon Managed Service for Prometheus (service `aps`).

The signing and the credentials are the AWS Common Runtime's (`awscrt`, the optional extra `modeldeploy[aws]`),
not hand-written: its default chain reads environment variables, a profile, IRSA's web identity token, ECS/EKS
Pod Identity and instance metadata, caches what it gets, and refreshes it before it expires. (botocore would do
the same, but it pins python-dateutil below 3, which the kubernetes client no longer accepts.)
"""

from __future__ import annotations

import io
import threading
from collections.abc import Generator
from typing import Any

import httpx

from modeldeploy.adapters.providers.base import ProviderError

MISSING = "sigv4 needs the optional package awscrt: install modeldeploy[aws] (the operator image has it)"
_lock = threading.Lock()
_default_chain: Any = None


def _crt() -> tuple[Any, Any]:
    try:
        from awscrt import auth, http
    except ImportError as error:
        raise ProviderError(MISSING) from error
    return auth, http


def default_credentials() -> Any:
    """The process's one default-chain provider, so that credentials are fetched once and cached, not per tick."""
    global _default_chain
    auth, _ = _crt()
    with _lock:
        if _default_chain is None:
            _default_chain = auth.AwsCredentialsProvider.new_default_chain()
        return _default_chain


class SigV4Auth(httpx.Auth):
    """Signs each request's method, path, query, host, content type and body hash; adds Authorization,
    X-Amz-Date and, with temporary credentials, X-Amz-Security-Token."""

    requires_request_body = True
    SIGNED = ("host", "content-type")

    def __init__(self, region: str, service: str, timeout: float = 5.0, credentials: Any = None) -> None:
        self.region, self.service, self.timeout = region, service, timeout
        self.credentials = credentials  # an awscrt credentials provider; the default chain when None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request

    def sign(self, request: httpx.Request) -> None:
        auth, http = _crt()
        credentials = self.credentials or default_credentials()
        path = request.url.raw_path.decode()
        pairs = [("host", request.url.netloc.decode())]
        pairs += [(name, request.headers[name]) for name in self.SIGNED[1:] if name in request.headers]
        crt_request = http.HttpRequest(
            method=request.method, path=path, headers=http.HttpHeaders(pairs), body_stream=io.BytesIO(request.content)
        )
        config = auth.AwsSigningConfig(
            algorithm=auth.AwsSigningAlgorithm.V4,
            signature_type=auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
            credentials_provider=credentials,
            region=self.region,
            service=self.service,
        )
        try:
            auth.aws_sign_request(crt_request, config).result(timeout=self.timeout)
        except Exception as error:  # awscrt raises its own AwsCrtError, or a timeout
            raise ProviderError(f"SigV4 signing failed (no usable AWS credentials?): {error}") from error
        for name, value in crt_request.headers:
            if name.lower() not in self.SIGNED:
                request.headers[name] = value
