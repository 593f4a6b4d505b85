"""Keeping secrets out of every line `modelserver fetch` writes, third-party libraries' log records included."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

# Environment variables whose values are secrets. Their values never reach a log line, an error message or the
# report, whatever the level.
SECRET_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_BEARER_TOKEN",
    "MODEL_HTTP_BEARER_TOKEN",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
)
MASK = "***"
# Query parameters of presigned URLs and the like.
_SECRET_QUERY = re.compile(r"(?i)(signature|sig|token|credential|key|password|secret)")


class Redactor:
    """Replaces each known secret value by `***`; short values (under 4 characters) are not secrets worth it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Redactor:
        return cls(env.get(name, "") for name in SECRET_VARIABLES)

    def add(self, secret: str) -> None:
        if len(secret) >= 4 and secret not in self.secrets:
            self.secrets = sorted([*self.secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def display_uri(uri: str) -> str:
    """The URI as logs and reports show it: no password in its user part, no signature in its query."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    netloc = parts.netloc
    if "@" not in netloc and not _SECRET_QUERY.search(parts.query):
        return uri
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = "&".join(
        f"{name}={MASK}" if _SECRET_QUERY.search(name) else f"{name}={value}" if sep else name
        for name, sep, value in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class RedactingFormatter(logging.Formatter):
    """Formats the whole record (message, arguments, traceback), then masks every secret in the result."""

    def __init__(self, redactor: Redactor, fmt: str) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


def install(redactor: Redactor, level: int | str = logging.INFO) -> logging.Handler:
    """One stderr handler on the root logger, so every library's records pass through the redactor."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(redactor, "%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    if root.getEffectiveLevel() > logging.DEBUG:  # a line per HTTP request only when debugging
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler
