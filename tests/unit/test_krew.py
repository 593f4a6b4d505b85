"""The krew plugin manifest of `kubectl modeldeploy` (.krew.yaml, a krew-release-bot template), rendered as the
release does it, and the executable the release freezes for it."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("krew_manifest", ROOT / "hack" / "krew_manifest.py")
assert _spec is not None
assert _spec.loader is not None
krew_manifest: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(krew_manifest)

TAG = "v0.1.0"
PLATFORMS = {("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64")}


def archives(directory: Path) -> dict[str, str]:
    """Stand-in archives, one per platform: name -> sha256."""
    shas = {}
    for os_name, arch in PLATFORMS:
        name = f"kubectl-modeldeploy_{os_name}_{arch}.tar.gz"
        content = f"archive for {os_name}/{arch}".encode()
        (directory / name).write_bytes(content)
        shas[name] = hashlib.sha256(content).hexdigest()
    return shas


def rendered(directory: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(krew_manifest.render(krew_manifest.TEMPLATE.read_text(), TAG, directory))
    return manifest


def test_the_manifest_names_every_platform_with_its_archive_and_checksum(tmp_path: Path) -> None:
    shas = archives(tmp_path)
    manifest = rendered(tmp_path)
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin"
    assert manifest["metadata"]["name"] == "modeldeploy"
    assert manifest["spec"]["version"] == TAG
    assert manifest["spec"]["shortDescription"]
    found = set()
    for platform in manifest["spec"]["platforms"]:
        labels = platform["selector"]["matchLabels"]
        found.add((labels["os"], labels["arch"]))
        name = f"kubectl-modeldeploy_{labels['os']}_{labels['arch']}.tar.gz"
        assert platform["uri"] == f"https://github.com/modeldeploy/modeldeploy/releases/download/{TAG}/{name}"
        assert platform["sha256"] == shas[name]
        assert platform["bin"] == "kubectl-modeldeploy"
        assert {f["from"] for f in platform["files"]} == {"kubectl-modeldeploy", "LICENSE"}
    assert found == PLATFORMS


def test_the_release_builds_the_archives_the_manifest_names() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yaml").read_text())
    matrix = workflow["jobs"]["krew-binary"]["strategy"]["matrix"]["include"]
    assert {(entry["os"], entry["arch"]) for entry in matrix} == PLATFORMS
    # The binary krew puts on the PATH is the one `pip install modeldeploy` puts there too.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "kubectl-modeldeploy" in scripts


def test_a_missing_archive_fails_the_release(tmp_path: Path) -> None:
    archives(tmp_path)
    (tmp_path / "kubectl-modeldeploy_darwin_arm64.tar.gz").unlink()
    with pytest.raises(SystemExit, match=r"kubectl-modeldeploy_darwin_arm64\.tar\.gz is missing"):
        rendered(tmp_path)


def test_the_frozen_entry_point_is_the_console_script() -> None:
    """The executable krew installs runs what `pip install modeldeploy`'s `kubectl-modeldeploy` runs."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["kubectl-modeldeploy"].split(":")
    assert f"from {module} import {function}\n" in (ROOT / "hack" / "kubectl_modeldeploy.py").read_text()


def test_the_frozen_entry_point_runs_the_plugin() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "kubectl_modeldeploy.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "kubectl modeldeploy" in result.stdout
    assert "promote" in result.stdout
