"""Checks the pipeline examples with the real tools, in .venv-pipelines (kfp needs kubernetes < 31, so it cannot
share the project's environment): compiles the Kubeflow pipeline with kfp, and validates the Argo Workflow
against the Workflow schema of hera's models (generated from Argo's OpenAPI spec), made strict so that an
unknown field is an error. Prints one JSON object: the compiled pipeline and the schema errors."""

from __future__ import annotations

import json
import runpy
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from hera.workflows.models import Workflow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def strict(node: Any) -> None:
    """No properties beyond the schema's: Argo's controller ignores unknown fields, so a typo would pass."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)


def argo_errors(path: Path) -> list[str]:
    schema = Workflow.model_json_schema(by_alias=True, mode="validation")
    strict(schema)
    workflow = yaml.safe_load(path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(workflow)]


def compiled_kfp(path: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pipeline.yaml"
        sys.argv = [str(path), str(out)]
        runpy.run_path(str(path), run_name="__main__")
        return yaml.safe_load(out.read_text())  # type: ignore[no-any-return]


if __name__ == "__main__":
    workflow = Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLES / "argo" / "deploy-model-workflow.yaml"
    pipeline = Path(sys.argv[2]) if len(sys.argv) > 2 else EXAMPLES / "kubeflow" / "ship_model_pipeline.py"
    print(json.dumps({"argo_errors": argo_errors(workflow), "kfp": compiled_kfp(pipeline)}))
