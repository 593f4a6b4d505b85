"""What every API model shares: wire conventions, formats, and cross-field rules declared once.

A cross-field rule is one CEL expression. The CRD carries it as an `x-kubernetes-validations` entry, so the
API server refuses a bad object at admission, and the operator evaluates the very same expression with a CEL
engine, so an object that slipped past an older CRD is reported as `InvalidSpec` with the same message.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import cel
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
# A Kubernetes resource.Quantity, e.g. 500m, 2Gi, 1.5, 1e3.
QUANTITY = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
IMAGE = r"^[^\s]+$"
URI = r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^\s]+$"
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DURATION = r"^([0-9]+(ms|s|m|h))+$"
# An http(s) URL with a host (a name, an IPv4 or a bracketed IPv6 address; `{{...}}` variables allowed), an
# optional port 1-65535, and anything after a path, query or fragment delimiter.
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
HTTP_URL = (
    rf"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9{{}}_]([-A-Za-z0-9.{{}}_]*[A-Za-z0-9}}])?)(:{_PORT})?([/?#][^\s]*)?$"
)
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
RULE_RESULTS_KEPT = 4096

Port = Annotated[int, Field(ge=1, le=65535)]
Quantity = Annotated[int | Annotated[str, StringConstraints(pattern=QUANTITY, max_length=64)], Field()]
ShortString = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


def parse_duration(text: str) -> float:
    """'1m30s' -> 90.0 seconds."""
    return sum(float(n) * DURATION_UNITS[unit] for n, unit in re.findall(r"([0-9]+)(ms|s|m|h)", text))


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: one CEL expression over `self`, and the message both admission and the operator give."""

    expression: str
    message: str
    program: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "program", cel.compile(self.expression))

    def holds(self, obj: Mapping[str, Any]) -> bool:
        """Evaluates the rule on a JSON object the way the API server sees it (camelCase, absent when unset)."""
        return _holds(self, json.dumps(obj, sort_keys=True, separators=(",", ":")))

    def validation(self) -> dict[str, JsonValue]:
        """The CRD's `x-kubernetes-validations` entry."""
        return {"rule": self.expression, "message": self.message}


@functools.lru_cache(maxsize=RULE_RESULTS_KEPT)
def _holds(rule: Rule, wire: str) -> bool:
    """A rule's verdict on one JSON text. Kept: every reconcile checks the same specs again, and the CEL engine
    takes tens of microseconds per rule where the lookup takes one."""
    return bool(rule.program.execute({"self": json.loads(wire)}))


def _schema_with_rules(schema: dict[str, Any], model: type[BaseModel]) -> None:
    rules: tuple[Rule, ...] = getattr(model, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.validation() for rule in rules]


class ApiModel(BaseModel):
    """camelCase on the wire, unknown fields rejected, immutable once parsed; `rules` checked after parsing."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        json_schema_extra=_schema_with_rules,
    )
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _rules_hold(self) -> ApiModel:
        if self.rules:
            wire = self.model_dump(by_alias=True, exclude_none=True, mode="json")
            for rule in self.rules:
                if not rule.holds(wire):
                    raise ValueError(rule.message)
        return self
