import kopf
from kopf._cogs.structs.references import Resource

from modeldeploy.handlers import configure


def test_children_are_watched_through_a_server_side_label_selector() -> None:
    settings = kopf.OperatorSettings()
    configure(settings)
    for group, plural in (("apps", "deployments"), ("", "services"), ("networking.istio.io", "virtualservices")):
        resource = Resource(group=group, version="v1", plural=plural, namespaced=True)
        assert list(settings.watching.label_selectors.collect(resource)) == ["app.kubernetes.io/managed-by=modeldeploy"]
    pods = Resource(group="", version="v1", plural="pods", namespaced=True)
    assert list(settings.watching.label_selectors.collect(pods)) == []
    modeldeployments = Resource(group="modeldeploy.io", version="v1alpha1", plural="modeldeployments", namespaced=True)
    assert list(settings.watching.label_selectors.collect(modeldeployments)) == [], "every ModelDeployment is served"
    assert settings.posting.enabled is False


def test_kopf_keeps_no_last_handled_state_and_lists_in_pages() -> None:
    settings = kopf.OperatorSettings()
    configure(settings)
    storage = settings.persistence.diffbase_storage
    body = kopf.Body({"metadata": {"name": "m", "annotations": {"a": "b"}}, "spec": {"big": list(range(100))}})
    assert storage.build(body=body) == {}, "no copy of every event's body"
    assert storage.fetch(body=body) is None
    assert settings.watching.chunk_size is not None
