"""Sharding: which replica serves which ModelDeployment, and the informer and the reconciler keeping to it."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import Counter
from typing import Any

import pytest
from typer.testing import CliRunner

from fake_kube import FakeKube
from modeldeploy.adapters.cache import CachedKube, Store
from modeldeploy.cli import app
from modeldeploy.core.sharding import HASH_SPACE, MAX_SHARDS, Shard, fnv1a64, shard_of
from modeldeploy.informer import Informer
from modeldeploy.reconcile import Reconciler
from modeldeploy.workqueue import CHANGED
from specs import valid_spec

# Go's hash/fnv New64a, which the API server's shard selector uses (k8s.io/apimachinery/pkg/sharding).
GO_FNV1A64 = {
    "": 0xCBF29CE484222325,
    "a": 0xAF63DC4C8601EC8C,
    "foobar": 0x85944171F73967E8,
    "3f1c2a9e-8b7d-4c6e-9f10-2b3c4d5e6f70": 0xF672150D15B97291,
}


@pytest.mark.parametrize(("text", "expected"), GO_FNV1A64.items())
def test_the_hash_is_fnv1a64_as_go_computes_it(text: str, expected: int) -> None:
    assert fnv1a64(text) == expected


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, MAX_SHARDS])
def test_the_shards_cover_the_hash_space_without_gaps_or_overlaps(count: int) -> None:
    ranges = [Shard(i, count).hash_range() for i in range(count)]
    assert ranges[0][0] == 0
    assert ranges[-1][1] == HASH_SPACE
    assert all(end == next_start for (_, end), (next_start, _) in itertools.pairwise(ranges))
    for i, (start, end) in enumerate(ranges):
        # The edges of each range land in it, and the hash just below its start does not.
        assert shard_of_hash(start, count) == i
        assert shard_of_hash(end - 1, count) == i
        if start:
            assert shard_of_hash(start - 1, count) == i - 1


def shard_of_hash(value: int, count: int) -> int:
    return value * count >> 64


def test_each_object_is_owned_by_exactly_one_shard_and_the_split_is_even() -> None:
    uids = [str(uuid.UUID(int=random.Random(n).getrandbits(128), version=4)) for n in range(8000)]
    for count in (1, 2, 4):
        owners: Counter[int] = Counter()
        for uid in uids:
            owning = [i for i in range(count) if Shard(i, count).owns(uid)]
            assert owning == [shard_of(uid, count)]
            owners[owning[0]] += 1
        assert all(abs(n - len(uids) / count) < 0.05 * len(uids) / count for n in owners.values()), owners


def test_names_would_split_badly_which_is_why_the_uid_is_hashed() -> None:
    """FNV-1a's top bits hardly change with a string's last bytes: names that differ only in a suffix crowd
    into a few ranges. Uids are random (UUIDv4), so their hashes spread evenly."""
    owners = Counter(shard_of(f"bench/model-{n}", 4) for n in range(1000))
    assert min(owners.get(i, 0) for i in range(4)) < 100


def test_the_selector_is_the_api_servers_shard_range_syntax() -> None:
    assert Shard(0, 1).selector() == "shardRange(object.metadata.uid, '0x0000000000000000', '0x10000000000000000')"
    assert [Shard(i, 2).selector() for i in range(2)] == [
        "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')",
        "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')",
    ]
    assert Shard(1, 3).selector() == "shardRange(object.metadata.uid, '0x5555555555555556', '0xaaaaaaaaaaaaaaab')"
    # The API server's shard for a uid is the one whose range holds its hash, as here.
    uid = "3f1c2a9e-8b7d-4c6e-9f10-2b3c4d5e6f70"
    start, end = Shard(shard_of(uid, 3), 3).hash_range()
    assert start <= GO_FNV1A64[uid] < end


@pytest.mark.parametrize(("index", "count"), [(0, 0), (1, 1), (-1, 2), (2, 2), (0, MAX_SHARDS + 1)])
def test_impossible_shards_are_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard(index, count)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--shards", "2", "--shard", "2"], "out of range for 2 shards"), (["--shards", "0"], "--shards")],
)
def test_run_refuses_a_shard_outside_the_shards(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["run", *args])
    assert result.exit_code != 0
    assert message in result.output


# -- the informer keeps and queues only its shard's objects ---------------------------------------------------


class RecordingQueue:
    def __init__(self) -> None:
        self.added: list[tuple[str, str]] = []
        self.forgotten: list[tuple[str, str]] = []

    def add(self, key: tuple[str, str], priority: int = CHANGED) -> None:
        self.added.append(key)

    def forget(self, key: tuple[str, str]) -> None:
        self.forgotten.append(key)

    def start(self) -> None:
        pass

    def depth(self) -> int:
        return len(self.added)

    def idle(self) -> bool:
        return True


def uid_in(shard: Shard) -> str:
    """A random uid, as the API server makes them, in this shard."""
    return next(uid for _ in range(1000) if shard.owns(uid := str(uuid.uuid4())))


def informer_for(shard: Shard) -> tuple[Informer, RecordingQueue]:
    queue = RecordingQueue()
    kube = CachedKube(FakeKube(valid_spec()), Store(owns=shard.owns))
    return Informer(kube, queue, owns=shard.owns), queue


def md(name: str, uid: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": "1"}
    return {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment", "metadata": meta, "spec": {}}


def child(owner: str, owner_uid: str) -> dict[str, Any]:
    ref = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment", "name": owner, "uid": owner_uid}
    meta = {"name": owner, "namespace": "ns", "resourceVersion": "2", "ownerReferences": [{**ref, "controller": True}]}
    return {"kind": "Deployment", "metadata": meta, "spec": {}}


def test_each_shard_queues_only_its_own_modeldeployments_and_their_children() -> None:
    shards = [Shard(i, 2) for i in range(2)]
    informers = [informer_for(shard) for shard in shards]
    mine = {shard.index: uid_in(shard) for shard in shards}
    for inf, _ in informers:
        for index, uid in mine.items():
            inf.modeldeployment_event("ADDED", md(f"model-{index}", uid))
            inf.child_event("MODIFIED", child(f"model-{index}", uid))
    assert [set(queue.added) for _, queue in informers] == [{("ns", "model-0")}, {("ns", "model-1")}]


def test_a_deletion_is_forgotten_by_every_shard() -> None:
    informers = [informer_for(Shard(i, 2)) for i in range(2)]
    for inf, _ in informers:
        inf.modeldeployment_event("DELETED", md("m", "u"))
    assert [queue.forgotten for _, queue in informers] == [[("ns", "m")], [("ns", "m")]]


def test_the_reconciler_leaves_another_shards_object_alone() -> None:
    """A key queued for a deleted object whose namesake, created since, belongs to another shard."""
    kube = FakeKube(valid_spec())
    assert kube.md["metadata"]["uid"] == "uid-1"
    Reconciler(kube, owns=lambda uid: uid != "uid-1").reconcile("ns", "fraud-scorer")
    assert kube.writes == []
    assert kube.events == []
    Reconciler(kube, owns=lambda uid: uid == "uid-1").reconcile("ns", "fraud-scorer")
    assert ("patch-status", "ModelDeployment") in kube.writes
