"""`pip install modeldeploy`: the wheel as published. It is built from the sources (offline, with the development
environment's setuptools), installed into a throwaway virtual environment, and its commands run from there. It holds
the operator and the reference model server, never the development tools nor their dependencies."""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_ONLY = {"cryptography", "pytest", "pytest-timeout", "ruff", "mypy", "hypothesis", "skl2onnx", "build"}


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of what the package is made of (the build writes into its source tree)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "operator", source / "operator", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, source)
    (built,) = out.glob("modeldeploy-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; the dependencies come from the development
    environment's site-packages, on the path as a plain directory (so none of its .pth files, which put the
    sources and the development tools on the path, apply)."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel)
    return venv


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_wheel_holds_the_runtime_packages_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"modeldeploy", "modelserver"}
    assert not [n for n in names if "modeldeploy_dev" in n]
    assert "modeldeploy/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "modeldeploy = modeldeploy.cli:app" in entry_points
    assert "kubectl-modeldeploy = modeldeploy.cli:plugin_app" in entry_points
    assert "modeldeploy-dev" not in entry_points


def test_the_metadata_describes_the_package_and_no_development_dependency(wheel: Path) -> None:
    meta = metadata(wheel)
    assert meta["Name"] == "modeldeploy"
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert str(meta.get_payload()).startswith("# modeldeploy")
    assert {url.split(",")[0] for url in meta.get_all("Project-URL", [])} >= {"Homepage", "Source", "Issues"}
    assert "Typing :: Typed" in meta.get_all("Classifier", [])
    assert set(meta.get_all("Provides-Extra", [])) == {"server", "onnx", "aws", "report"}
    required = {Requirement(r).name for r in meta.get_all("Requires-Dist", [])}
    assert {"kopf", "kubernetes", "pydantic"} <= required
    assert not required & DEVELOPMENT_ONLY, required & DEVELOPMENT_ONLY


def test_the_installed_commands_run(installed: Path) -> None:
    bin_dir = installed / "bin"
    assert "Usage: modeldeploy" in run(bin_dir / "modeldeploy", "--help").stdout
    assert "kubectl modeldeploy" in run(bin_dir / "kubectl-modeldeploy", "--help").stdout
    crds = [doc for doc in yaml.safe_load_all(run(bin_dir / "modeldeploy", "crd").stdout) if doc]
    assert "modeldeployments.modeldeploy.io" in {crd["metadata"]["name"] for crd in crds}
    assert not (bin_dir / "modeldeploy-dev").exists()


def test_the_installed_package_is_the_wheel_and_has_no_development_tools(installed: Path) -> None:
    python = installed / "bin" / "python"
    where = run(python, "-c", "import modeldeploy; print(modeldeploy.__file__)").stdout.strip()
    assert Path(where).is_relative_to(installed), f"modeldeploy imported from {where}, not the wheel"
    missing = subprocess.run([python, "-c", "import modeldeploy_dev"], capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0
    assert "No module named 'modeldeploy_dev'" in missing.stderr
