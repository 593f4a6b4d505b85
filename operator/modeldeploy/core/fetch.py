"""What the pods' fetch step reported: the artifact's digest, or why it failed.

The fetch init container writes a JSON report as its termination message (`{"digest": "sha256:..."}` on
success, `{"error": "..."}` on failure; the log's tail when it crashed before writing one). The kubelet puts
that into the pod's status, where the operator reads it. Everything in it is untrusted: a digest must look like
one, and a message is cut to a length status can hold and stripped of control characters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from modeldeploy.core.api.model import SHA256
from modeldeploy.core.delivery import FETCH_CONTAINER

MAX_MESSAGE = 1000
NEEDS_NO_FETCH = ("builtin://", "pvc://")


@dataclass(frozen=True)
class FetchReport:
    digest: str | None
    failure: str | None


def _clean(text: str) -> str:
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text).strip()[-MAX_MESSAGE:]


def _report(message: Any) -> dict[str, Any]:
    if not isinstance(message, str):
        return {}
    try:
        report = json.loads(message)
    except ValueError:
        return {}
    return report if isinstance(report, dict) else {}


def read_fetch_report(pods: list[dict[str, Any]]) -> FetchReport:
    """The digest the revision's pods fetched and the newest failure among them, from their init statuses."""
    digest: str | None = None
    failure: str | None = None
    for pod in pods:
        for container in (pod.get("status") or {}).get("initContainerStatuses") or []:
            if container.get("name") != FETCH_CONTAINER:
                continue
            for state in (container.get("state") or {}, container.get("lastState") or {}):
                terminated = state.get("terminated")
                if not isinstance(terminated, dict):
                    continue
                report = _report(terminated.get("message"))
                if terminated.get("exitCode") == 0:
                    found = report.get("digest")
                    if isinstance(found, str) and re.match(SHA256, found):
                        digest = found
                elif failure is None:
                    why = _clean(
                        str(report.get("error") or terminated.get("message") or terminated.get("reason") or "")
                    )
                    code = terminated.get("exitCode")
                    failure = f"{why} (exit code {code})" if why else f"exit code {code}"
    return FetchReport(digest=digest, failure=failure)


def needs_fetch(uri: str) -> bool:
    return not uri.startswith(NEEDS_NO_FETCH)
