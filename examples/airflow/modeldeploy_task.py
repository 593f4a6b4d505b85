"""The Airflow task's callable: apply a ModelDeployment and wait for its rollout, with the modeldeploy SDK.

It needs no Airflow to run or to test: `deploy_model_dag.py` wraps it in a task. A rollback, an invalid spec or
a timeout fails the task with the one-line reason; the returned dict goes to XCom for later tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modeldeploy.client import Client


def deploy_model(
    manifest_path: str,
    version: str | None = None,
    namespace: str | None = None,
    timeout_seconds: float = 1800,
    kubeconfig: str | None = None,
) -> dict[str, Any]:
    """Applies the ModelDeployment in `manifest_path` (with spec.model.version set to `version` if given) and
    waits for the outcome. Raises modeldeploy.client.RolloutFailedError unless the rollout succeeded."""
    manifest = yaml.safe_load(Path(manifest_path).read_text())
    if version is not None:
        manifest["spec"]["model"]["version"] = version
    result = Client(namespace=namespace, kubeconfig=kubeconfig).deploy(manifest, timeout=timeout_seconds, check=True)
    return {
        "name": result.name,
        "namespace": result.namespace,
        "outcome": result.outcome,
        "reason": result.reason,
        "seconds": round(result.seconds, 1),
    }
