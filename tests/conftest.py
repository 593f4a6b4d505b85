"""Fixtures for the tests that run real tools: the control plane's binaries (helm, kubectl) and helm itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modeldeploy_dev.cluster import ClusterError, build
from modeldeploy_dev.testing import Helm


@pytest.fixture(scope="session")
def binaries() -> Path:
    """The directory of the control plane's binaries, built (or found in the cache) once per session."""
    try:
        return build(echo=lambda line: print(line, file=sys.stderr))
    except ClusterError as error:
        pytest.fail(f"helm and kubectl could not be built, so these tests cannot run: {error}", pytrace=False)


@pytest.fixture(scope="session")
def helm(binaries: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm, with its config, cache and data in a temporary directory, not the user's."""
    return Helm(tmp_path_factory.mktemp("helm"))
