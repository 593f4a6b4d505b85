"""The runtime package stays free of the development tools: the operator image ships only `modeldeploy`."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import typer

from modeldeploy import cli

DEVELOPMENT_ONLY = ("modeldeploy_dev", "cryptography")


def loaded_modules(*modules: str) -> set[str]:
    """The modules a fresh interpreter holds after importing `modules`."""
    code = f"import json, sys\nimport {', '.join(modules)}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(result.stdout))


def test_the_cli_and_the_operator_load_no_development_code() -> None:
    # `modeldeploy run` imports the CLI, then the handlers (and through them the reconcile and the adapters).
    loaded = loaded_modules("modeldeploy.cli", "modeldeploy.handlers")
    assert {"modeldeploy.cli", "modeldeploy.handlers", "modeldeploy.reconcile"} <= loaded
    development = sorted(m for m in loaded if m.split(".")[0] in DEVELOPMENT_ONLY)
    assert development == [], f"the runtime package loads development code: {development}"


def test_modeldeploy_has_only_the_runtime_commands() -> None:
    command = typer.main.get_command(cli.app)
    assert isinstance(command, typer.core.TyperGroup)
    assert set(command.commands) == {
        "crd",
        "run",
        "promote",
        "abort",
        "retry",
        "pause",
        "resume",
        "undo",
        "status",
        "history",
        "report",
    }


def test_modeldeploy_dev_has_the_cluster_and_demo_commands() -> None:
    from modeldeploy_dev import cli as dev_cli

    command = typer.main.get_command(dev_cli.app)
    assert isinstance(command, typer.core.TyperGroup)
    assert set(command.commands) == {"cluster", "demo"}
    cluster = command.commands["cluster"]
    assert isinstance(cluster, typer.core.TyperGroup)
    assert set(cluster.commands) == {"build", "up", "down", "status"}


def test_the_control_plane_files_ship_with_the_development_package() -> None:
    for name in ("build-control-plane.sh", "kwok-stages.yaml"):
        assert resources.files("modeldeploy_dev").joinpath(name).is_file()
        assert not resources.files("modeldeploy").joinpath(name).is_file()
