"""Test data shared by the unit and end-to-end suites: the bad-spec catalogue and the example's spec.

The specs that serve on a cluster (and the example itself) live in the end-to-end harness,
`modeldeploy_dev.testing`, which the benchmarks in hack/ use too; they are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modeldeploy_dev.testing import EXAMPLE, SERVING_RUNTIME, example_spec, model_version, serving_spec

__all__ = ["DATA", "EXAMPLE", "SERVING_RUNTIME", "bad_specs", "model_version", "serving_spec", "valid_spec"]

DATA = Path(__file__).parent / "data"


def bad_specs(*stages: str) -> list[dict[str, Any]]:
    cases = yaml.safe_load((DATA / "bad_specs.yaml").read_text())["cases"]
    return [c for c in cases if not stages or c["stage"] in stages]


def valid_spec(**overrides: Any) -> dict[str, Any]:
    """manifests/examples/fraud-scorer.yaml's spec, with top-level fields replaced by `overrides`."""
    return example_spec(**overrides)
