import json
from pathlib import Path

import pytest
import yaml

from modeldeploy.core import crd

ROOT = Path(__file__).resolve().parents[2]
COPIES = [ROOT / "crds", ROOT / "charts" / "modeldeploy" / "crds", ROOT / "manifests" / "base" / "crds"]


@pytest.mark.parametrize("directory", COPIES, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_committed_crd_copy_matches_the_models(directory: Path) -> None:
    for name, text in crd.crd_files().items():
        path = directory / name
        assert path.exists(), f"{path} is missing: run hack/generate-crds.sh"
        assert path.read_text() == text, f"{path} is stale: run hack/generate-crds.sh"


def _walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_schema_is_structural() -> None:
    schema = crd.openapi_schema()
    for path, node in _walk(schema):
        assert "$ref" not in node, path
        assert "title" not in node, path
        assert node.get("type") != "null", path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
        if "properties" in node:
            assert "additionalProperties" not in node, path
    assert "null" not in json.dumps(schema)


def test_crd_names_printer_columns_and_status() -> None:
    body = yaml.safe_load(crd.crd_yaml())
    assert body["spec"]["names"]["shortNames"] == ["mdep"]
    version = body["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Stable", "Canary", "Weight", "Ready", "Age"]


def test_every_cel_rule_has_a_message_and_lists_and_strings_it_touches_are_bounded() -> None:
    schema = crd.openapi_schema()
    rules = [(p, n) for p, n in _walk(schema) if "x-kubernetes-validations" in n]
    assert len(rules) >= 6
    for path, node in rules:
        for rule in node["x-kubernetes-validations"]:
            assert rule["message"], path
    for path, node in _walk(schema):
        if node.get("type") == "array":
            assert "maxItems" in node or path.startswith("$.properties.status"), path


def test_exclusive_bounds_use_the_openapi_v3_0_form() -> None:
    for path, node in _walk(crd.openapi_schema()):
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if key in node:
                assert node[key] is True, path
                assert ("minimum" if key == "exclusiveMinimum" else "maximum") in node, path
