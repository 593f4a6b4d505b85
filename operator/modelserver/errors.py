"""What `modelserver fetch` can fail with: one clear line each, and a distinct exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # anything else: a local I/O error, an unexpected answer from the store
    USAGE = 2  # bad configuration: MODEL_URI missing, MODEL_DIGEST malformed, MODEL_DIR not empty, pvc://
    UNSUPPORTED_SCHEME = 3
    NOT_FOUND = 4  # no object at that key, or nothing under that prefix
    ACCESS_DENIED = 5  # refused credentials or missing permission
    TIMEOUT = 6  # MODEL_FETCH_TIMEOUT_SECONDS passed
    DIGEST_MISMATCH = 7
    REGISTRY = 8  # the MLflow tracking server is unreachable, or has no such model, version or alias
    UNREACHABLE = 9  # the object store or HTTP server cannot be reached


class FetchError(Exception):
    """A failure with its exit code; str() is the one-line message."""

    code = ExitCode.ERROR

    def __init__(self, message: str, code: ExitCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(FetchError):
    code = ExitCode.USAGE


class UnsupportedSchemeError(FetchError):
    code = ExitCode.UNSUPPORTED_SCHEME


class ArtifactNotFoundError(FetchError):
    code = ExitCode.NOT_FOUND


class AccessDeniedError(FetchError):
    code = ExitCode.ACCESS_DENIED


class FetchTimeoutError(FetchError):
    code = ExitCode.TIMEOUT


class DigestMismatchError(FetchError):
    code = ExitCode.DIGEST_MISMATCH


class RegistryError(FetchError):
    code = ExitCode.REGISTRY


class UnreachableError(FetchError):
    code = ExitCode.UNREACHABLE
