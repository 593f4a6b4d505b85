"""How the model reaches the server (core/delivery.py), as the rendered pod template shows it."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy.core.api import parse_spec
from modeldeploy.core.naming import Owner
from modeldeploy.core.render import pod_template
from specs import valid_spec

OWNER = Owner(name="fraud-scorer", namespace="risk", uid="uid-1")
MODEL = {"name": "fraud-scorer", "version": "7", "format": "sklearn"}


def pod(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = pod_template(OWNER, parse_spec(valid_spec(**overrides))).template["spec"]
    return spec


def env(container: dict[str, Any]) -> dict[str, str]:
    return {var["name"]: var["value"] for var in container.get("env", []) if "value" in var}


def test_an_object_store_model_is_fetched_by_an_init_container_into_a_read_only_volume() -> None:
    spec = pod(
        model={
            **MODEL,
            "uri": "s3://models/fraud-scorer/7",
            "digest": "sha256:" + "a" * 64,
            "storage": {
                "secretName": "s3-creds",
                "timeoutSeconds": 120,
                "s3": {"endpoint": "http://minio.storage:9000", "region": "eu-west-1", "pathStyle": True},
            },
        }
    )
    (fetch,) = spec["initContainers"]
    assert fetch["image"].startswith("ghcr.io/modeldeploy/modelserver:")
    assert fetch["args"] == ["fetch"]
    assert env(fetch) == {
        "MODEL_URI": "s3://models/fraud-scorer/7",
        "MODEL_DIR": "/mnt/models",
        "MODEL_FETCH_TIMEOUT_SECONDS": "120",
        "MODEL_DIGEST": "sha256:" + "a" * 64,
        "AWS_ENDPOINT_URL": "http://minio.storage:9000",
        "AWS_REGION": "eu-west-1",
        "AWS_S3_FORCE_PATH_STYLE": "true",
    }
    assert fetch["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert fetch["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert fetch["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["volumes"] == [{"name": "model", "emptyDir": {}}]
    (server,) = spec["containers"]
    assert server["volumeMounts"] == [{"name": "model", "mountPath": "/mnt/models", "readOnly": True}]
    assert env(server)["MODEL_DIR"] == "/mnt/models"
    assert "envFrom" not in server, "only the fetch step sees the storage credentials"


def test_a_pvc_model_is_mounted_read_only_and_not_copied() -> None:
    spec = pod(model={**MODEL, "uri": "pvc://model-store/fraud/7"})
    assert "initContainers" not in spec
    assert spec["volumes"] == [
        {"name": "model", "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True}}
    ]
    (server,) = spec["containers"]
    assert server["volumeMounts"] == [
        {"name": "model", "mountPath": "/mnt/models", "readOnly": True, "subPath": "fraud/7"}
    ]


def test_a_builtin_model_needs_no_fetch() -> None:
    spec = pod(model={**MODEL, "uri": "builtin://logistic"})
    assert "initContainers" not in spec
    assert "volumes" not in spec


@pytest.mark.parametrize(("preset", "variable"), [("modelserver", "MODEL_DIR"), ("mlserver", "MLSERVER_MODEL_URI")])
def test_each_preset_is_told_where_the_model_is(preset: str, variable: str) -> None:
    (server,) = pod(model={**MODEL, "uri": "https://models.example.com/fraud.pkl"}, runtime={"preset": preset})[
        "containers"
    ]
    assert env(server)[variable] == "/mnt/models"


def test_the_fetch_image_follows_a_custom_build_of_the_reference_server() -> None:
    spec = pod(model={**MODEL, "uri": "gs://models/fraud/7"}, runtime={"image": "registry.example/modelserver:dev"})
    assert spec["initContainers"][0]["image"] == "registry.example/modelserver:dev"
    custom = pod(
        model={**MODEL, "uri": "gs://models/fraud/7"}, runtime={"preset": "custom", "image": "r/own:1", "port": 9000}
    )
    assert custom["initContainers"][0]["image"].startswith("ghcr.io/modeldeploy/modelserver:")


def test_pod_placement_reaches_every_pod_and_changes_the_revision() -> None:
    placement = {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
        "serviceAccountName": "fraud-scorer-reader",
        "annotations": {"example.com/owner": "risk"},
        "labels": {"team": "risk"},
        "imagePullSecrets": ["regcred"],
        "priorityClassName": "models",
        "runtimeClassName": "nvidia",
        "envFrom": [{"configMapRef": "settings", "prefix": "APP_"}],
        "volumes": [{"name": "ca", "configMap": {"name": "ca-bundle"}}],
        "volumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/custom"}],
    }
    plain = pod_template(OWNER, parse_spec(valid_spec()))
    placed = pod_template(OWNER, parse_spec(valid_spec(pod=placement)))
    spec = placed.template["spec"]
    assert placed.revision != plain.revision
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["affinity"] == placement["affinity"]
    assert spec["topologySpreadConstraints"] == placement["topologySpreadConstraints"]
    assert spec["serviceAccountName"] == "fraud-scorer-reader"
    assert spec["automountServiceAccountToken"] is False
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert (spec["priorityClassName"], spec["runtimeClassName"]) == ("models", "nvidia")
    assert {"name": "ca", "configMap": {"name": "ca-bundle"}} in spec["volumes"]
    (server,) = spec["containers"]
    assert {"name": "ca", "mountPath": "/etc/ssl/custom", "readOnly": True} in server["volumeMounts"]
    assert server["envFrom"] == [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}]
    metadata = placed.template["metadata"]
    assert metadata["annotations"] == {"example.com/owner": "risk"}
    assert metadata["labels"]["team"] == "risk"
    assert metadata["labels"]["app.kubernetes.io/instance"] == "fraud-scorer"
    for track in ("stable", "canary"):
        assert placed.for_track(track)["metadata"]["annotations"] == {"example.com/owner": "risk"}
