"""Everything the operator checks before it renders, with messages that name the field."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from modeldeploy.core.api import ModelDeploymentSpec, check_name, parse_spec
from modeldeploy.core.presets import SpecError


def describe_validation_error(error: ValidationError) -> str:
    """'spec.runtime.port: Input should be less than or equal to 65535' for each problem."""
    problems = []
    for item in error.errors():
        path = ".".join(str(p) for p in ("spec", *item["loc"]))
        problems.append(f"{path}: {item['msg']}")
    return "; ".join(problems)


def validate(name: str, raw_spec: dict[str, Any]) -> ModelDeploymentSpec:
    """The parsed spec; raises SpecError for anything the schema and CEL should have refused."""
    problem = check_name(name)
    if problem:
        raise SpecError("metadata.name", problem)
    try:
        return parse_spec(raw_spec)
    except ValidationError as error:
        raise SpecError("spec", describe_validation_error(error)) from error
