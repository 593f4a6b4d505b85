"""Secrets out of every log line, at every level, whatever library writes it; and credentials checked when read.

Every value the operator reads from a Secret is registered here when it is read (`Kube.read_secret`), in one
process-wide registry. `install` wraps the formatter of each handler on the root logger, so the whole formatted
line (message, arguments, traceback, JSON fields) of every logger (modeldeploy, kopf, kubernetes, httpx,
httpcore, urllib3, ...) is masked: each registered value (also as JSON, repr() and base64 would show it),
`Authorization:`-style header values and `token=`-style query parameters become `***`.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import unicodedata

MASK = "***"
MIN_LENGTH = 4
"""Shorter values are not registered: masking every "on" or "1" in the logs would hide more than it protects."""

# Header values that are credentials, in whatever form a library prints them: `Authorization: Bearer x`,
# `'authorization': 'Basic x'`, `(b'Authorization', b'Bearer x')`, `X-Api-Key=x`.
_HEADER = re.compile(
    r"(?i)(\b(?:proxy-)?authorization|\bx-api-key|\bapi-key|\bx-auth-token|\bx-amz-security-token|\bcookie)"
    r"(['\"]?\s*[:=,]\s*(?:b?['\"])?\s*)"
    r"(?:(bearer|basic|token|aws4-hmac-sha256)(\s+))?"
    r"([^\s'\",;)}\]]+)"
)
# Query parameters (and `key=value` pairs in messages) whose values are credentials.
_QUERY = re.compile(
    r"(?i)\b((?:access_|id_|refresh_|auth_|session_)?token|api[_-]?key|apikey|password|passwd|secret|client_secret"
    r"|signature|sig|x-amz-signature|x-amz-security-token|x-amz-credential|credential)=([^&\s'\"#,;)}\]]+)"
)


class SecretRegistry:
    """The secret values this process has read; thread-safe (reconciles and analysis ticks read in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def register(self, value: str) -> None:
        """Masks `value` from now on: as it is, stripped, and in the forms a log line may carry it."""
        forms = set()
        for text in {value, value.strip()}:
            if len(text) < MIN_LENGTH:
                continue
            forms.add(text)
            forms.add(json.dumps(text)[1:-1])  # as a JSON log line escapes it
            forms.add(repr(text)[1:-1])  # as an exception's repr shows it
            forms.add(repr(text.encode())[2:-1])  # as bytes' repr shows it (httpcore, h11)
            forms.add(base64.b64encode(text.encode()).decode())  # as a Secret's data carries it
        with self._lock:
            new = forms - self._values
            if not new:
                return
            self._values |= new
            ordered = sorted(self._values, key=len, reverse=True)  # the longest form first
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{m[3] or ''}{m[4] or ''}{MASK}", text)
        return _QUERY.sub(lambda m: f"{m[1]}={MASK}", text)

    def clear(self) -> None:
        """Forgets every value (for tests)."""
        with self._lock:
            self._values.clear()
            self._pattern = None


SECRETS = SecretRegistry()


def register(value: str) -> None:
    SECRETS.register(value)


def redact(text: str) -> str:
    return SECRETS.redact(text)


class RedactingFormatter(logging.Formatter):
    """Formats a record with the handler's own formatter, then masks secrets in the whole line."""

    def __init__(self, inner: logging.Formatter | None, registry: SecretRegistry | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.registry = registry
        """The process's registry (SECRETS) unless given."""

    def format(self, record: logging.LogRecord) -> str:
        return (self.registry or SECRETS).redact(self.inner.format(record))


def install(logger: logging.Logger | None = None) -> None:
    """Wraps the formatter of every handler on `logger` (the root logger by default) once; call it after the
    handlers exist (after `kopf.configure`). Python warnings go through logging too, so they are masked as well."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter))
    logging.captureWarnings(True)


class CredentialError(ValueError):
    """A credential that cannot be sent as it is; the message names where it came from, never its value."""


def credential(value: str, where: str, *, spaces: bool = False) -> str:
    """A token or password read from a Secret, normalised: surrounding whitespace (the trailing newline that
    `kubectl create secret --from-file` keeps) is removed. Control characters inside it, or whitespace inside
    it unless `spaces` (a header value such as `Bearer x`), are refused with a message naming `where`."""
    text = value.strip()
    if not text:
        raise CredentialError(f"{where} is empty")
    for char in text:
        if unicodedata.category(char) == "Cc" or (char.isspace() and not (spaces and char == " ")):
            inside = "control characters" if unicodedata.category(char) == "Cc" else "whitespace"
            raise CredentialError(
                f"{where} has {inside} inside it; a credential must be one line"
                + ("" if spaces else " without spaces")
                + " (surrounding whitespace, such as a trailing newline, is removed)"
            )
    return text
