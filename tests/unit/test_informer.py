"""Watch events into the cache and onto the queue: what is queued, at which priority, and what is not queued."""

from __future__ import annotations

import asyncio
from typing import Any

from fake_kube import FakeKube
from modeldeploy.adapters.cache import MODELDEPLOYMENT, CachedKube, Store
from modeldeploy.informer import Informer, fillable
from modeldeploy.workqueue import CHANGED, NEW, RESYNC
from specs import valid_spec


class RecordingQueue:
    def __init__(self) -> None:
        self.added: list[tuple[tuple[str, str], int]] = []
        self.forgotten: list[tuple[str, str]] = []
        self.started = False
        self.began = asyncio.Event()

    def add(self, key: tuple[str, str], priority: int = CHANGED) -> None:
        self.added.append((key, priority))

    def forget(self, key: tuple[str, str]) -> None:
        self.forgotten.append(key)

    def start(self) -> None:
        self.started = True
        self.began.set()

    def depth(self) -> int:
        return len(self.added)

    def idle(self) -> bool:
        return True


def child(kind: str, name: str, version: int) -> dict[str, Any]:
    owner = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": MODELDEPLOYMENT, "name": name, "uid": "uid-1"}
    meta = {
        "name": name,
        "namespace": "ns",
        "resourceVersion": str(version),
        "labels": {"app.kubernetes.io/instance": name},
        "ownerReferences": [{**owner, "controller": True}],
    }
    return {"kind": kind, "metadata": meta, "spec": {}}


def md(name: str, version: int, uid: str = "uid-1") -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": str(version)}
    return {"apiVersion": "modeldeploy.io/v1alpha1", "kind": MODELDEPLOYMENT, "metadata": meta, "spec": {}}


def informer(owns: Any = None) -> tuple[Informer, RecordingQueue, Store]:
    queue = RecordingQueue()
    store = Store()
    kube = CachedKube(FakeKube(valid_spec()), store)
    return Informer(kube, queue, owns=owns or (lambda _uid: True)), queue, store


def test_a_listing_queues_every_object_behind_new_ones_and_new_ones_behind_what_changed() -> None:
    inf, queue, store = informer()
    inf.modeldeployment_event(None, md("a", 1))
    inf.modeldeployment_event("ADDED", md("b", 2))
    inf.modeldeployment_event("MODIFIED", md("a", 3))
    assert queue.added == [(("ns", "a"), RESYNC), (("ns", "b"), NEW), (("ns", "a"), CHANGED)]
    assert store.get(MODELDEPLOYMENT, "ns", "a") is not None


def test_the_echo_of_our_own_status_write_queues_nothing() -> None:
    inf, queue, store = informer()
    store.upsert(md("a", 7), ours=True)  # the status patch's answer
    inf.modeldeployment_event("MODIFIED", md("a", 7))
    assert queue.added == []
    inf.modeldeployment_event("MODIFIED", md("a", 8))  # someone edited it since
    assert queue.added == [(("ns", "a"), CHANGED)]


def test_an_older_event_after_our_write_still_queues() -> None:
    """The user's edit (6) landed before our status patch (7), whose answer the cache has: the reconcile that
    patched did not see that spec, so the edit's event must still queue it."""
    inf, queue, store = informer()
    store.upsert(md("a", 7), ours=True)
    inf.modeldeployment_event("MODIFIED", md("a", 6))
    assert queue.added == [(("ns", "a"), CHANGED)]


def test_a_deleted_modeldeployment_is_forgotten() -> None:
    inf, queue, store = informer()
    inf.modeldeployment_event("ADDED", md("a", 1))
    inf.modeldeployment_event("DELETED", md("a", 2))
    assert queue.forgotten == [("ns", "a")]
    assert store.get(MODELDEPLOYMENT, "ns", "a") is None


def test_child_events_queue_the_owner_unless_they_echo_our_write() -> None:
    inf, queue, store = informer()
    store.upsert(child("Deployment", "fraud", 5), ours=True)
    inf.child_event("ADDED", child("Deployment", "fraud", 5))
    assert queue.added == [], "the echo of our apply"
    inf.child_event("MODIFIED", child("Deployment", "fraud", 6))
    inf.child_event("DELETED", child("Service", "fraud", 7))
    assert queue.added == [(("ns", "fraud"), CHANGED)] * 2


def test_a_routing_objects_echo_still_queues_to_read_the_weight_back() -> None:
    inf, queue, store = informer()
    route = child("HTTPRoute", "fraud", 5)
    store.upsert(route, ours=True)
    inf.child_event("MODIFIED", route)
    assert queue.added == [(("ns", "fraud"), CHANGED)]


def test_a_listed_child_queues_its_owner_only_if_the_cache_did_not_have_it() -> None:
    inf, queue, store = informer()
    store.upsert(child("Deployment", "fraud", 5))  # from the start-up LIST
    inf.child_event(None, child("Deployment", "fraud", 5))
    assert queue.added == []
    inf.child_event(None, child("Deployment", "fraud", 6))
    assert queue.added == [(("ns", "fraud"), RESYNC)]


def test_another_shards_objects_are_neither_kept_nor_queued() -> None:
    inf, queue, store = informer(owns=lambda uid: uid == "uid-1")
    inf.modeldeployment_event("ADDED", md("theirs", 1, uid="uid-2"))
    theirs = child("Deployment", "theirs", 2)
    theirs["metadata"]["ownerReferences"][0]["uid"] = "uid-2"
    inf.child_event("MODIFIED", theirs)
    assert queue.added == []
    assert len(store) == 0


def test_namespace_globs_are_not_listed_at_start() -> None:
    assert fillable([]) is None
    assert fillable(["a", "team-*", "b"]) == ["a", "b"]


def test_the_queue_starts_only_once_the_cache_is_filled() -> None:
    async def scenario() -> tuple[bool, bool]:
        inf, queue, store = informer()
        loop = asyncio.get_running_loop()
        release = asyncio.Event()
        listing = asyncio.Event()

        def fill(kinds: Any, namespaces: Any, at: Any = None) -> int:
            loop.call_soon_threadsafe(listing.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result()  # the LIST takes its time
            store.mark_synced(namespaces)
            return 0

        inf.kube.fill = fill  # type: ignore[method-assign]
        inf.start()
        await asyncio.wait_for(listing.wait(), timeout=5)  # the listing is under way, and not done
        before = queue.started
        release.set()
        await asyncio.wait_for(queue.began.wait(), timeout=5)
        await inf.stop()
        return before, queue.started

    assert asyncio.run(scenario()) == (False, True)
