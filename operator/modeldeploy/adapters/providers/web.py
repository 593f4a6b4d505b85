"""A web endpoint that answers JSON, like Argo Rollouts' web metric: a custom accuracy or business-KPI service.

Each track is asked with its own URL (and POST body), variables filled in, so canary and stable are measured
separately and relative bounds work. `jsonPath` must point at one number: true and false count as 1 and 0,
numeric strings as numbers; null, nothing or an empty list is no data; anything else (another type, several
matches, NaN, infinity, a number too large for a float, a non-2xx answer) is an error that says what came back.
Both requests of a measurement (canary and stable) share one deadline, the metric's timeout, which bounds every
byte of the answers too.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import httpx
from jsonpath_ng.ext.parser import parse as parse_json_path

from modeldeploy.adapters.providers.base import (
    Context,
    Deadline,
    DeadlineExceededError,
    Provider,
    ProviderError,
    fetch,
    headers,
    verify,
    where,
)
from modeldeploy.core.analysis import MetricQuery, Raw
from modeldeploy.core.api import WebMetric, json_path_expression, parse_duration


class WebError(Exception):
    pass


def number(found: list[Any], json_path: str) -> float | None:
    """The one number that `json_path` matched in an answer, None for no data; WebError otherwise."""
    values = [value for value in found if value is not None and value != []]
    if not values:
        return None
    if len(values) > 1:
        raise WebError(f"jsonPath {json_path} matched {len(values)} values; point it at one")
    (value,) = values
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        try:
            result = float(value)
        except OverflowError:
            raise WebError(f"jsonPath {json_path} matched a number too large for a float") from None
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise WebError(f"jsonPath {json_path} matched {value[:100]!r}, not a number") from None
    else:
        kind = "an object" if isinstance(value, dict) else "a list"
        raise WebError(f"jsonPath {json_path} matched {kind}, not a number")
    if not math.isfinite(result):
        raise WebError(f"jsonPath {json_path} matched {result}, not a finite number")
    return result


class WebProvider(Provider):
    name: ClassVar[str] = "web"

    def __init__(self, settings: WebMetric, client: httpx.Client) -> None:
        self.settings = settings
        self.client = client
        self.path = parse_json_path(json_path_expression(settings.json_path))

    @classmethod
    def build(cls, settings: WebMetric, context: Context, transport: httpx.BaseTransport | None = None) -> WebProvider:
        sent = headers(settings.headers, context)
        if settings.body is not None:
            sent.setdefault("Content-Type", "application/json")
        client = httpx.Client(
            timeout=parse_duration(settings.timeout),
            headers=sent,
            verify=verify(settings.tls, context),
            transport=transport,
        )
        return cls(settings, client)

    def close(self) -> None:
        self.client.close()

    def value(self, url: str, body: str | None, deadline: Deadline) -> float | None:
        try:
            response = fetch(self.client, self.settings.method, url, deadline, content=body)
        except httpx.InvalidURL as error:
            raise WebError(f"the URL {url[:200]!r} is not valid once its variables are filled in: {error}") from error
        except (ProviderError, DeadlineExceededError) as error:
            raise WebError(f"{where(url)}: {error}") from error
        except httpx.HTTPError as error:
            raise WebError(f"{where(url)} unreachable: {type(error).__name__}") from error
        if not response.is_success:
            raise WebError(f"{where(url)} answered HTTP {response.status_code}")
        if not response.content.strip():
            return None
        try:
            answer = response.json()
        except (ValueError, RecursionError) as error:
            raise WebError(f"{where(url)} answered HTTP {response.status_code} without JSON") from error
        return number([match.value for match in self.path.find(answer)], self.settings.json_path)

    def measure(self, query: MetricQuery, deadline: Deadline) -> Raw:
        try:
            canary = self.value(query.canary, query.canary_body, deadline)
            stable = self.value(query.stable, query.stable_body, deadline) if query.stable else None
        except WebError as error:
            return Raw(canary=None, error=str(error))
        return Raw(canary=canary, stable=stable)

    def is_online(self) -> bool:
        """Whether the URL's server answers HTTP at all (any status); {{namespace}}-style hosts are not checked."""
        try:
            url = httpx.URL(self.settings.url)
            if "{{" in url.netloc.decode():
                return True
            self.client.request("HEAD", url.copy_with(path="/", query=None))
        except (httpx.HTTPError, httpx.InvalidURL):
            return False
        return True
