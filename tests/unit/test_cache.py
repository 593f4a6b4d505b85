"""The informer cache: watch events in, deletes, relistings, and our own writes' answers; reads as private copies."""

from __future__ import annotations

import copy
from typing import Any

from fake_kube import FakeKube
from modeldeploy.adapters.cache import MODELDEPLOYMENT, CachedKube, Store
from modeldeploy.reconcile import Reconciler
from specs import valid_spec

OWNER_REF = {
    "apiVersion": "modeldeploy.io/v1alpha1",
    "kind": "ModelDeployment",
    "name": "fraud",
    "uid": "uid-1",
    "controller": True,
}


def must(obj: dict[str, Any] | None) -> dict[str, Any]:
    assert obj is not None
    return obj


def child(kind: str, name: str, version: int, owner: str = "fraud", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1" if kind == "Deployment" else "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{kind}-{name}",
            "resourceVersion": str(version),
            "labels": {"app.kubernetes.io/instance": owner, "app.kubernetes.io/managed-by": "modeldeploy"},
            "ownerReferences": [{**OWNER_REF, "name": owner}],
            "managedFields": [{"manager": "modeldeploy", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": spec,
    }


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_events_in_reads_out_as_private_copies_without_managed_fields() -> None:
    store = Store()
    assert store.upsert(child("Deployment", "fraud", 5, replicas=3))
    assert store.upsert(child("Service", "fraud", 6))
    assert store.upsert(child("Deployment", "other", 7, owner="other"))
    [deployment] = store.children("Deployment", "ns", "fraud")
    assert deployment["spec"] == {"replicas": 3}
    assert "managedFields" not in deployment["metadata"], "what no reconcile reads is not kept"
    deployment["spec"]["replicas"] = 99
    assert must(store.get("Deployment", "ns", "fraud"))["spec"] == {"replicas": 3}, "a read cannot edit the cache"
    assert [o["kind"] for o in store.children("Service", "ns", "fraud")] == ["Service"]
    assert store.children("Deployment", "ns", "nobody") == []
    assert store.counts() == {"Deployment": 2, "Service": 1}


def test_an_older_version_never_replaces_a_newer_one() -> None:
    store = Store()
    assert store.upsert(child("Deployment", "fraud", 10, replicas=2), ours=True)  # the apply's answer
    assert not store.upsert(child("Deployment", "fraud", 9, replicas=1)), "a late watch event of an older version"
    assert must(store.get("Deployment", "ns", "fraud"))["spec"] == {"replicas": 2}
    assert store.upsert(child("Deployment", "fraud", 11, replicas=4))
    assert must(store.get("Deployment", "ns", "fraud"))["spec"] == {"replicas": 4}


def test_the_echo_of_our_own_write_is_recognised_and_only_that_version() -> None:
    store = Store()
    store.upsert(child("Deployment", "fraud", 10), ours=True)
    assert store.is_echo("Deployment", "ns", "fraud", 10)
    store.upsert(child("Deployment", "fraud", 10))  # the watch event of that write
    assert store.is_echo("Deployment", "ns", "fraud", 10), "still ours"
    assert not store.is_echo("Deployment", "ns", "fraud", 11)
    store.upsert(child("Deployment", "fraud", 11))  # the controller updated its status
    assert not store.is_echo("Deployment", "ns", "fraud", 11)
    # The watch may deliver our write before the writer stores the answer: it becomes ours then.
    store.upsert(child("Deployment", "fraud", 12))
    store.upsert(child("Deployment", "fraud", 12), ours=True)
    assert store.is_echo("Deployment", "ns", "fraud", 12)


def test_deleted_objects_go_and_a_late_answer_does_not_bring_them_back() -> None:
    store = Store()
    store.upsert(child("Deployment", "fraud", 10))
    assert store.delete("Deployment", "ns", "fraud", 12)
    assert store.get("Deployment", "ns", "fraud") is None
    assert store.children("Deployment", "ns", "fraud") == []
    assert store.deleted("Deployment", "ns", "fraud")
    assert not store.upsert(child("Deployment", "fraud", 11), ours=True), "an apply answered before the delete"
    assert store.get("Deployment", "ns", "fraud") is None
    assert store.upsert(child("Deployment", "fraud", 13)), "created again since"
    assert not store.deleted("Deployment", "ns", "fraud")
    assert not store.delete("Deployment", "ns", "never-seen")


def test_the_late_deleted_event_of_an_earlier_incarnation_leaves_the_new_one() -> None:
    store = Store()
    store.upsert(child("Service", "fraud", 20), ours=True)  # pruned, then created again by our apply
    assert not store.delete("Service", "ns", "fraud", 18), "the old one's DELETED event, arriving late"
    assert store.get("Service", "ns", "fraud") is not None


def test_a_child_relabelled_to_another_owner_moves_in_the_index() -> None:
    store = Store()
    store.upsert(child("Service", "svc", 1, owner="a"))
    store.upsert(child("Service", "svc", 2, owner="b"))
    assert store.children("Service", "ns", "a") == []
    assert [o["metadata"]["name"] for o in store.children("Service", "ns", "b")] == ["svc"]


def test_a_relisting_finds_what_was_deleted_while_the_watch_was_down() -> None:
    clock = Clock()
    store = Store(clock=clock)
    for name in ("a", "b", "c"):
        store.upsert(child("Deployment", name, 1, owner=name))
    store.upsert(child("Service", "a", 1, owner="a"))
    clock.now = 200.0  # the watch restarts and lists again: b is gone, a and c are still there
    store.listed("Deployment", "ns", "a")
    store.upsert(child("Deployment", "a", 1, owner="a"))
    clock.now = 201.0
    store.listed("Deployment", "ns", "c")
    store.upsert(child("Deployment", "c", 1, owner="c"))
    assert store.unlisted(quiet=10) is None, "the listing is still going"
    clock.now = 215.0
    assert store.unlisted(quiet=10) == [("Deployment", "ns", "b")], "only the kind relisted, only what it left out"
    assert store.unlisted(quiet=10) is None, "reported once"


def test_what_was_shown_alive_since_a_relisting_began_is_not_suspected() -> None:
    clock = Clock()
    store = Store(clock=clock)
    store.upsert(child("Deployment", "a", 1, owner="a"))
    store.upsert(child("Deployment", "b", 1, owner="b"))
    clock.now = 200.0
    store.listed("Deployment", "ns", "a")
    clock.now = 201.0
    store.upsert(child("Deployment", "b", 2, owner="b"), ours=True)  # applied while the listing ran
    clock.now = 300.0
    assert store.unlisted(quiet=10) == []


def test_a_namespaced_operator_relists_each_namespace_on_its_own() -> None:
    clock = Clock()
    store = Store(clusterwide=False, clock=clock)
    other = child("Deployment", "x", 1, owner="x")
    other["metadata"]["namespace"] = "other"
    store.upsert(other)
    store.upsert(child("Deployment", "a", 1, owner="a"))
    clock.now = 200.0
    store.listed("Deployment", "ns", "a")
    clock.now = 300.0
    assert store.unlisted(quiet=10) == [], "the other namespace was not relisted: nothing there is suspect"


def test_a_shard_keeps_only_its_own_objects() -> None:
    store = Store(owns=lambda uid: uid == "uid-1")
    assert store.upsert(child("Deployment", "fraud", 1))
    theirs = child("Deployment", "theirs", 1)
    theirs["metadata"]["ownerReferences"][0]["uid"] = "uid-2"
    assert not store.upsert(theirs)
    md = {"kind": MODELDEPLOYMENT, "metadata": {"name": "m", "namespace": "ns", "uid": "uid-2"}}
    assert not store.upsert(md)


# -- CachedKube: the reconcile on the cache ---------------------------------------------------------------------


class CountingKube(FakeKube):
    """FakeKube with resourceVersions, counting reads, and the start-up listing."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.version = 1
        self.md["metadata"]["resourceVersion"] = "1"
        self.gets: list[str] = []
        self.lists: list[str] = []

    def _bump(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets.append(MODELDEPLOYMENT)
        return super().get_modeldeployment(namespace, name)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets.append(kind)
        return super().get(kind, namespace, name)

    def list_children(self, kind: str, namespace: str, owner_name: str) -> list[dict[str, Any]]:
        self.lists.append(kind)
        return super().list_children(kind, namespace, owner_name)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        live = super().apply(obj)
        self._bump(self.objects[(obj["kind"], obj["metadata"]["name"])])
        live["metadata"]["resourceVersion"] = str(self.version)
        return live

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        super().patch_status(namespace, name, patch)
        self._bump(self.md)
        return copy.deepcopy(self.md)

    def list_managed(self, kind: str, namespace: str | None) -> Any:
        self.lists.append(f"all {kind}")
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == kind]


def test_reconciles_read_from_the_cache_and_the_answers_keep_it_current() -> None:
    api = CountingKube(valid_spec())
    store = Store()
    kube = CachedKube(api, store)
    kube.fill(["Deployment", "Service"], None)
    assert api.lists == ["all Deployment", "all Service"]
    store.upsert(must(api.get_modeldeployment("ns", "fraud-scorer")))  # the ModelDeployment's watch event
    api.gets.clear()

    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert ("apply", "Deployment") in api.writes
    assert api.lists == ["all Deployment", "all Service"], "no LIST per reconcile"
    assert api.gets == ["Deployment", "Service"], "only: is the name of a child we are about to create free?"
    stored = store.get("Deployment", "ns", "fraud-scorer")
    assert stored is not None
    assert store.is_echo("Deployment", "ns", "fraud-scorer", int(stored["metadata"]["resourceVersion"]))
    assert must(store.get(MODELDEPLOYMENT, "ns", "fraud-scorer"))["status"]["phase"] == "Ready", (
        "from the patch's answer"
    )

    api.writes.clear()
    api.gets.clear()
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert api.writes == [], "the cache holds what was written: nothing differs"
    assert api.gets == []


def test_a_child_deleted_by_hand_is_recreated_once_its_deleted_event_is_in() -> None:
    api = CountingKube(valid_spec())
    store = Store()
    kube = CachedKube(api, store)
    kube.fill([], None)
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    gone = api.objects.pop(("Service", "fraud-scorer"))
    store.delete("Service", "ns", "fraud-scorer", int(gone["metadata"]["resourceVersion"]) + 1)
    api.writes.clear()
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert api.writes == [("apply", "Service")]


def test_before_the_cache_is_filled_for_a_namespace_children_come_from_the_api() -> None:
    api = CountingKube(valid_spec())
    kube = CachedKube(api, Store(clusterwide=False))
    kube.fill(["Deployment"], ["elsewhere"])
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    assert "Deployment" in api.lists, "ns was not listed at start: its children are read from the API"


def test_a_modeldeployment_not_seen_yet_is_read_once_and_a_deleted_one_not_at_all() -> None:
    api = CountingKube(valid_spec())
    kube = CachedKube(api, Store())
    assert kube.get_modeldeployment("ns", "fraud-scorer") is not None
    assert kube.get_modeldeployment("ns", "fraud-scorer") is not None
    assert api.gets == [MODELDEPLOYMENT]
    kube.store.delete(MODELDEPLOYMENT, "ns", "fraud-scorer", 5)
    assert kube.get_modeldeployment("ns", "fraud-scorer") is None
    assert api.gets == [MODELDEPLOYMENT]


def test_what_a_relisting_left_out_is_checked_with_the_api() -> None:
    api = CountingKube(valid_spec())
    store = Store()
    kube = CachedKube(api, store)
    Reconciler(kube).reconcile("ns", "fraud-scorer")
    gone = api.objects.pop(("Service", "fraud-scorer"))
    assert store.get("Service", "ns", "fraud-scorer") == gone
    dropped = list(kube.recheck([("Service", "ns", "fraud-scorer"), ("Deployment", "ns", "fraud-scorer")]))
    assert dropped == [(("Service", "ns", "fraud-scorer"), "fraud-scorer")]
    assert store.get("Service", "ns", "fraud-scorer") is None
    assert store.get("Deployment", "ns", "fraud-scorer") is not None, "still there: kept"
