import pytest

from modeldeploy.core.api import parse_spec
from modeldeploy.core.naming import REVISION_LABEL, TRACK_LABEL, Owner
from modeldeploy.core.presets import SpecError
from modeldeploy.core.render import pod_template, render
from specs import valid_spec

OWNER = Owner(name="fraud-scorer", namespace="risk", uid="uid-1")


class Desired:
    """The children of a ModelDeployment with no canary in progress."""

    def __init__(self, spec):
        template = pod_template(OWNER, spec)
        self.revision = template.revision
        self.objects = render(OWNER, spec, template, None, 0, 0)


def objects(**overrides):
    desired = Desired(parse_spec(valid_spec(**overrides)))
    by_kind = {o["kind"]: o for o in desired.objects if not o["metadata"]["name"].endswith("-canary")}
    return desired, by_kind


def container(by_kind):
    return by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def test_children_are_owned_labelled_and_namespaced() -> None:
    desired, by_kind = objects()
    assert set(by_kind) == {"Deployment", "Service"}
    assert [o["metadata"]["name"] for o in desired.objects if o["kind"] == "Service"] == ["fraud-scorer"]
    for obj in desired.objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "risk"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "modeldeploy.io/v1alpha1",
                "kind": "ModelDeployment",
                "name": "fraud-scorer",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "modeldeploy"
        assert meta["labels"]["app.kubernetes.io/instance"] == "fraud-scorer"
    deployment = by_kind["Deployment"]
    assert deployment["metadata"]["labels"][TRACK_LABEL] == "stable"
    assert deployment["metadata"]["labels"][REVISION_LABEL] == desired.revision
    assert deployment["spec"]["template"]["metadata"]["labels"][REVISION_LABEL] == desired.revision
    assert deployment["spec"]["replicas"] == 3


def test_service_selects_the_stable_pods_on_the_named_port() -> None:
    _, by_kind = objects(service={"port": 8000})
    service = by_kind["Service"]
    pod_labels = by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in service["spec"]["selector"].items())
    assert service["spec"]["selector"] == {"app.kubernetes.io/instance": "fraud-scorer"}, "replicas router: both tracks"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]


def test_pods_meet_the_restricted_pod_security_profile() -> None:
    _, by_kind = objects()
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    ctx = container(by_kind)["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["runAsNonRoot"] is True


def test_modelserver_is_the_default_preset() -> None:
    _, by_kind = objects()
    c = container(by_kind)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["image"].startswith("ghcr.io/modeldeploy/modelserver:")
    assert (env["MODEL_URI"], env["PORT"]) == ("s3://models/fraud-scorer/7", "8080")
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert by_kind["Deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65532


def test_mlserver_preset_wires_the_model_in() -> None:
    _, by_kind = objects(runtime={"preset": "mlserver"})
    c = container(by_kind)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["image"].startswith("docker.io/seldonio/mlserver:")
    assert env["MLSERVER_MODEL_URI"] == "/mnt/models"  # where the fetch step put the model
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "mlserver_sklearn.SKLearnModel"
    assert env["MODEL_VERSION"] == "7"
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert c["ports"][0]["containerPort"] == 8080


def test_user_env_overrides_preset_env_and_secrets_stay_references() -> None:
    _, by_kind = objects(
        runtime={
            "env": [
                {"name": "MLSERVER_HTTP_PORT", "value": "9999"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ]
        }
    )
    env = {e["name"]: e for e in container(by_kind)["env"]}
    assert env["MLSERVER_HTTP_PORT"]["value"] == "9999"
    assert env["TOKEN"] == {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}


def test_custom_runtime_uses_its_image_port_and_a_tcp_probe_by_default() -> None:
    _, by_kind = objects(
        runtime={
            "preset": "custom",
            "image": "r/srv:2",
            "port": 9000,
            "args": ["--fast"],
            "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": 1}},
        }
    )
    c = container(by_kind)
    assert c["image"] == "r/srv:2"
    assert c["args"] == ["--fast"]
    assert c["readinessProbe"]["tcpSocket"] == {"port": 9000}
    assert c["resources"] == {"requests": {"cpu": "500m"}, "limits": {"cpu": 1}}


def test_autoscaling_renders_an_hpa_and_leaves_replicas_out() -> None:
    _, by_kind = objects(
        replicas=None, autoscaling={"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70}
    )
    assert "replicas" not in by_kind["Deployment"]["spec"]
    hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-scorer"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_revision_changes_with_the_pods_and_only_with_them() -> None:
    base = objects()[0].revision
    assert objects()[0].revision == base, "rendering is deterministic"
    assert objects(replicas=7)[0].revision == base, "scaling does not change the pods"
    assert objects(service={"port": 81})[0].revision == base
    changed = {
        "model version": valid_spec(model={**valid_spec()["model"], "version": "8"}),
        "image": valid_spec(runtime={"image": "docker.io/seldonio/mlserver:1.8.0"}),
        "env": valid_spec(runtime={"env": [{"name": "A", "value": "1"}]}),
        "resources": valid_spec(runtime={"resources": {"limits": {"memory": "1Gi"}}}),
    }
    for what, spec in changed.items():
        assert Desired(parse_spec(spec)).revision != base, what


def test_format_the_preset_cannot_serve_is_refused() -> None:
    with pytest.raises(SpecError, match=r"spec\.model\.format"):
        objects(model={**valid_spec()["model"], "format": "xgboost"})


def test_a_canary_deployment_replaces_all_its_pods_at_once() -> None:
    spec = parse_spec(valid_spec())
    template = pod_template(OWNER, spec)
    children = render(OWNER, spec, template, template, 2, 25)
    canary = next(o for o in children if o["metadata"]["name"] == "fraud-scorer-canary" and o["kind"] == "Deployment")
    assert canary["spec"]["strategy"] == {"type": "Recreate"}
    assert canary["spec"]["replicas"] == 2
    assert canary["spec"]["template"]["metadata"]["labels"][TRACK_LABEL] == "canary"
    stable = next(o for o in children if o["metadata"]["name"] == "fraud-scorer" and o["kind"] == "Deployment")
    assert stable["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


WEIGHTED = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}}


def _names(children: list[dict]) -> list[tuple[str, str]]:
    return sorted((o["kind"], o["metadata"]["name"]) for o in children)


def test_the_canary_service_exists_only_while_a_weighted_router_routes_to_a_canary() -> None:
    spec = parse_spec(valid_spec(traffic=WEIGHTED))
    template = pod_template(OWNER, spec)
    idle = render(OWNER, spec, template, None, 0, 0)
    assert ("Service", "fraud-scorer-canary") not in _names(idle), "an idle model costs one ClusterIP"
    [route] = [o for o in idle if o["kind"] == "HTTPRoute"]
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == ["fraud-scorer"], "no dangling backend"

    running = render(OWNER, spec, template, template, 1, 25)
    assert {("Service", "fraud-scorer-canary"), ("Deployment", "fraud-scorer-canary")} <= set(_names(running))
    canary_service = running.index(next(o for o in running if o["metadata"]["name"] == "fraud-scorer-canary"))
    assert canary_service < [o["kind"] for o in running].index("HTTPRoute"), "the Service before the route to it"

    draining = render(OWNER, spec, template, None, 0, 0, draining=True)
    assert ("Service", "fraud-scorer-canary") in _names(draining), "it outlives the weight for the scale-down delay"
    assert ("Deployment", "fraud-scorer-canary") not in _names(draining), "the draining Deployment is left alone"
    [route] = [o for o in draining if o["kind"] == "HTTPRoute"]
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [100, 0]


def test_the_replicas_router_never_needs_a_canary_service() -> None:
    spec = parse_spec(valid_spec())
    template = pod_template(OWNER, spec)
    for children in (render(OWNER, spec, template, template, 1, 25), render(OWNER, spec, template, None, 0, 0, True)):
        assert [o["metadata"]["name"] for o in children if o["kind"] == "Service"] == ["fraud-scorer"]


def test_the_model_server_reads_its_revision_from_the_pod_label_without_changing_the_revision() -> None:
    desired, by_kind = objects()
    env = {var["name"]: var for var in container(by_kind)["env"]}
    assert env["MODEL_REVISION"]["valueFrom"] == {"fieldRef": {"fieldPath": f"metadata.labels['{REVISION_LABEL}']"}}
    template = pod_template(OWNER, parse_spec(valid_spec()))
    assert "MODEL_REVISION" not in str(template.template), "added per track, after the revision is hashed"
    assert template.revision == desired.revision
    own = objects(runtime={"env": [{"name": "MODEL_REVISION", "value": "mine"}]})[1]
    assert [v for v in container(own)["env"] if v["name"] == "MODEL_REVISION"] == [
        {"name": "MODEL_REVISION", "value": "mine"}
    ]
