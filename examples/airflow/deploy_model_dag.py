"""An Airflow DAG that ships a trained model through a metric-gated canary (Airflow 2.7+ or 3).

The worker needs `pip install modeldeploy` and credentials for the cluster: a kubeconfig, or the pod's
ServiceAccount under the KubernetesExecutor (it needs get and patch on modeldeployments in the namespace).
"""

from __future__ import annotations

from datetime import datetime

from airflow.decorators import dag, task
from modeldeploy_task import deploy_model


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["ml"])
def ship_fraud_scorer() -> None:
    @task(retries=0)  # a rollback is an answer, not a flake: do not retry it
    def deploy(version: str) -> dict[str, object]:
        return deploy_model("/opt/airflow/manifests/fraud-scorer.yaml", version=version, timeout_seconds=1800)

    deploy("{{ dag_run.conf['version'] }}")


ship_fraud_scorer()
