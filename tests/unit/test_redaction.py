"""Secrets never reach a log line: every registered value, Authorization headers and token= parameters are masked
in whatever a handler on the root logger writes, for every logger and level; credentials are normalised."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from modeldeploy.adapters.redaction import (
    MASK,
    CredentialError,
    RedactingFormatter,
    SecretRegistry,
    credential,
    install,
)

TOKEN = "eyJhbGciOi.s3cret-t0ken.sig"


@pytest.fixture
def registry() -> SecretRegistry:
    registry = SecretRegistry()
    registry.register(TOKEN + "\n")  # as read from a Secret made with --from-file
    return registry


@pytest.mark.parametrize(
    "line",
    [
        f"token {TOKEN}",
        f"Illegal header value b'Bearer {TOKEN}\\n'",  # h11's error, as httpcore logs it at DEBUG
        json.dumps({"message": f"x {TOKEN}\n"}),
        repr(f"{TOKEN}\n"),
        base64.b64encode(f"{TOKEN}\n".encode()).decode(),  # the Secret's data, as an API response carries it
        base64.b64encode(TOKEN.encode()).decode(),
    ],
)
def test_a_registered_secret_is_masked_in_every_form_a_line_carries_it(registry: SecretRegistry, line: str) -> None:
    redacted = registry.redact(line)
    assert "s3cret" not in redacted
    assert MASK in redacted


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("{'authorization': 'Basic dXNlcjpwdw=='}", "{'authorization': 'Basic ***'}"),
        ("(b'Authorization', b'Bearer xyz')", "(b'Authorization', b'Bearer ***')"),
        ("X-Api-Key: k-123", "X-Api-Key: ***"),
        ("GET http://acc/score?apiKey=k-123&window=1m", "GET http://acc/score?apiKey=***&window=1m"),
        ("https://h/p?access_token=abc&X-Amz-Signature=def", "https://h/p?access_token=***&X-Amz-Signature=***"),
        ("password=hunter22 user=bob", "password=*** user=bob"),
        ("nothing secret here: weight 50 -> 25", "nothing secret here: weight 50 -> 25"),
    ],
)
def test_credentials_in_headers_and_query_strings_are_masked_even_unregistered(line: str, expected: str) -> None:
    assert SecretRegistry().redact(line) == expected


def test_short_values_are_not_registered() -> None:
    registry = SecretRegistry()
    registry.register("on\n")
    assert registry.redact("turned on") == "turned on"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A root-like logger with one handler writing JSON lines, as kopf.configure sets up."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter('{"message": "%(message)s", "logger": "%(name)s"}'))
    root = logging.getLogger("redaction-test-root")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    root.propagate = False
    yield root, stream
    root.handlers.clear()


def test_the_installed_formatter_masks_every_logger_every_level_and_tracebacks(
    captured: tuple[logging.Logger, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modeldeploy.adapters import redaction

    registry = SecretRegistry()
    monkeypatch.setattr(redaction, "SECRETS", registry)
    root, stream = captured
    install(root)
    install(root)  # idempotent
    assert isinstance(root.handlers[0].formatter, RedactingFormatter)
    assert not isinstance(root.handlers[0].formatter.inner, RedactingFormatter)
    registry.register(TOKEN)
    for name in ("httpcore.http11", "kopf.objects", "kubernetes.client.rest", "modeldeploy.reconcile"):
        child = logging.getLogger(f"redaction-test-root.{name}")
        child.debug("send_request_headers.failed exception=%r", httpx.LocalProtocolError(f"b'Bearer {TOKEN}\\n'"))
        child.info("headers %s", {"Authorization": f"Bearer {TOKEN}"})
        try:
            raise RuntimeError(f"boom {TOKEN}")
        except RuntimeError:
            child.exception("failed")
    text = stream.getvalue()
    assert text.count("send_request_headers.failed") == 4
    assert text.count("Traceback") == 4
    assert TOKEN not in text
    assert "s3cret" not in text


def test_credentials_lose_surrounding_whitespace_and_refuse_inner_whitespace_naming_where() -> None:
    assert credential(f"  {TOKEN}\r\n", "key 'token' of Secret ns/prom") == TOKEN
    assert credential("Bearer abc\n", "header", spaces=True) == "Bearer abc"
    for bad, what in (("ab cd", "whitespace"), ("ab\ncd", "control characters"), ("ab\x7fcd", "control characters")):
        with pytest.raises(CredentialError) as raised:
            credential(bad, "key 'token' of Secret ns/prom")
        assert str(raised.value).startswith(f"key 'token' of Secret ns/prom has {what} inside it")
        assert bad not in str(raised.value)
    with pytest.raises(CredentialError, match="is empty"):
        credential(" \n", "key 'token' of Secret ns/prom")
    with pytest.raises(CredentialError, match="control characters"):
        credential("Bearer a\tb", "header", spaces=True)
