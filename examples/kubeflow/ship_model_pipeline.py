"""A Kubeflow Pipelines (KFP v2) component that ships a model through a metric-gated canary.

The component runs in the modeldeploy image and uses the SDK: it applies the ModelDeployment with the version
the pipeline produced and waits for the outcome; the step fails (exit 1 rolled back, 2 timed out, 3 invalid spec)
unless the canary was promoted. The pipeline's ServiceAccount needs get and patch on modeldeployments.

No `from __future__ import annotations` here: KFP reads the parameter types at run time.

Compile: python ship_model_pipeline.py ship_model_pipeline.yaml   (needs `pip install kfp`; the modeldeploy
package itself is not needed where the pipeline is compiled).
"""

import sys

from kfp import compiler, dsl

IMAGE = "ghcr.io/modeldeploy/modeldeploy:0.1.0"

# Runs inside the modeldeploy image: argv = manifest (YAML), model version, timeout in seconds.
DEPLOY = """
import sys, yaml
from modeldeploy.client import Client, ModelDeployError
manifest = yaml.safe_load(sys.argv[1])
manifest["spec"]["model"]["version"] = sys.argv[2]
manifest["spec"]["model"]["uri"] = manifest["spec"]["model"]["uri"].replace("{version}", sys.argv[2])
try:
    result = Client().deploy(manifest, timeout=float(sys.argv[3]))
except ModelDeployError as error:
    sys.exit(f"error: {error}")
print(f"{result.namespace}/{result.name}: {result.outcome}: {result.reason}")
sys.exit(result.exit_code)
"""

MANIFEST = """\
apiVersion: modeldeploy.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud-scorer, namespace: risk}
spec:
  model: {name: fraud-scorer, version: "", uri: "s3://models/fraud-scorer/{version}", format: sklearn}
"""


@dsl.container_component
def deploy_model(model_version: str, manifest: str = MANIFEST, timeout_seconds: int = 1800) -> dsl.ContainerSpec:
    """Apply the ModelDeployment at `model_version` and wait for the canary's outcome."""
    return dsl.ContainerSpec(
        image=IMAGE,
        command=["python", "-c", DEPLOY],
        args=[manifest, model_version, timeout_seconds],
    )


@dsl.pipeline(name="ship-fraud-scorer", description="Ship a model version through a metric-gated canary.")
def ship_fraud_scorer(model_version: str = "8") -> None:
    deploy_model(model_version=model_version).set_retry(num_retries=0)


if __name__ == "__main__":
    compiler.Compiler().compile(ship_fraud_scorer, package_path=sys.argv[1] if len(sys.argv) > 1 else "pipeline.yaml")
