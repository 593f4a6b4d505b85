"""The operator's informer cache: ModelDeployments and their children in memory, fed by the watches it already has.

controller-runtime's model. Reconciles read what they need from here instead of from the API server: no GET of
the ModelDeployment and no LIST per child kind on every reconcile. Writes still go to the API server (server-side
applies of what differs); their responses update the cache at once, so the next reconcile compares against what
it wrote, not against a stale copy.

- `Store` is the index: one entry per object (kind, namespace, name), children also by their owner's name (the
  `app.kubernetes.io/instance` label, exactly what the API's label-selected LIST returned). Each entry keeps its
  resourceVersion and the object as compact JSON, so a read is a private copy (a reconcile can never edit the
  cache by accident) and 10,000 objects take tens of MiB, not hundreds. Older versions never replace newer ones
  (an apply's response and the watch race), and a deleted object is not brought back by a late response.
- The handlers feed it: every watch event is an upsert or a delete; a (re)listing marks what it listed, and after
  it goes quiet, what it did not list (deleted while the watch was down: no DELETED event comes for those) is
  checked against the API server and dropped if gone.
- `CachedKube` is the `KubeApi` the reconcile uses: reads from the store, writes through to the API and back into
  the store. A namespace the store was not filled for (a namespace glob) is read from the API, as before.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from modeldeploy.adapters.kube import KubeApi
from modeldeploy.core import api
from modeldeploy.core.naming import INSTANCE_LABEL
from modeldeploy.core.status import Event

MODELDEPLOYMENT = api.KIND
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
TOMBSTONES_KEPT = 10_000
"""Deleted objects remembered (by version), so that a late apply response or watch event does not bring one back."""

Ref = tuple[str, str, str]
"""(kind, namespace, name)"""


def version_of(obj: Mapping[str, Any]) -> int | None:
    """The resourceVersion as a number (etcd's revision), or None when the server does not give one."""
    try:
        return int(obj.get("metadata", {}).get("resourceVersion"))
    except (TypeError, ValueError):
        return None


def controller_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the ModelDeployment that controls `obj`, if one does."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        ours = ref.get("kind") == api.KIND and ref.get("apiVersion", "").startswith(f"{api.GROUP}/")
        if ours and ref.get("controller"):
            return ref.get("name", ""), ref.get("uid", "")
    return None


def _compact(obj: Mapping[str, Any]) -> str:
    """The object without what no reconcile reads and what costs most memory: managedFields and kubectl's copy."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return json.dumps({**obj, "metadata": meta}, separators=(",", ":"))


@dataclass(slots=True)
class _Entry:
    version: int | None
    blob: str
    owner: str | None
    """Its `app.kubernetes.io/instance` label: the owner a label-selected LIST would have returned it for."""
    ours: bool
    """This version is the response to our own write: its watch event is an echo, with nothing new."""
    seen: float


@dataclass
class _Listing:
    started: float
    last: float
    refs: set[Ref] = field(default_factory=set)


class Store:
    """Thread-safe: the handlers write on the event loop, reconciles read and write on worker threads."""

    def __init__(
        self,
        clusterwide: bool = True,
        owns: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`owns(uid)` says which ModelDeployments this replica serves (a shard); the others and their children are
        not kept. `clusterwide`: one watch per kind covers every namespace (else one per namespace)."""
        self._clusterwide = clusterwide
        self._owns = owns
        self._clock = clock
        self._lock = threading.Lock()
        self._objects: dict[Ref, _Entry] = {}
        self._by_owner: dict[tuple[str, str], set[Ref]] = {}  # (namespace, owner name) -> children
        self._tombstones: OrderedDict[Ref, int | None] = OrderedDict()
        self._synced_all = False
        self._synced: set[str] = set()
        self._listings: dict[tuple[str, str | None], _Listing] = {}
        self._counts: dict[str, int] = {}

    # -- filling it ------------------------------------------------------------------------------------------

    def upsert(self, obj: Mapping[str, Any], *, ours: bool = False, at: float | None = None) -> bool:
        """Stores the object unless the store has a newer version (or saw it deleted since); True when it changed.

        `ours`: the object is the API server's answer to our own write. `at`: when it was known to exist (by
        default now; a LIST's items, when the LIST was asked for)."""
        meta = obj.get("metadata") or {}
        kind, namespace, name = obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")
        if not self._wanted(kind, obj):
            return False
        ref = (kind, namespace, name)
        version = version_of(obj)
        owner = None if kind == MODELDEPLOYMENT else (meta.get("labels") or {}).get(INSTANCE_LABEL)
        with self._lock:
            seen = self._clock() if at is None else at
            if self._stale(ref, version, ours, seen):
                return False
        blob = _compact(obj)  # outside the lock: the costly part
        with self._lock:
            if self._stale(ref, version, ours, seen):
                return False  # a newer version, or its deletion, came in meanwhile
            self._tombstones.pop(ref, None)
            current = self._objects.get(ref)
            if current is None:
                self._counts[ref[0]] = self._counts.get(ref[0], 0) + 1
            elif current.owner != owner:
                self._unindex(ref, current.owner)
            self._objects[ref] = _Entry(version, blob, owner, ours, seen)
            if owner is not None:
                self._by_owner.setdefault((ref[1], owner), set()).add(ref)
            return True

    def delete(self, kind: str, namespace: str, name: str, version: int | None = None) -> bool:
        """Forgets the object; True when it was there. It stays a tombstone, so older versions do not return."""
        ref = (kind, namespace, name)
        with self._lock:
            current = self._objects.get(ref)
            if (
                current is not None
                and current.version is not None
                and version is not None
                and current.version > version
            ):
                return False  # the deletion of an earlier incarnation: the one held was created since
            entry = self._objects.pop(ref, None)
            if entry is not None:
                self._unindex(ref, entry.owner)
                self._counts[kind] -= 1
            known = [v for v in (version, entry.version if entry else None) if v is not None]
            self._tombstones[ref] = max(known) if known else None
            self._tombstones.move_to_end(ref)
            while len(self._tombstones) > TOMBSTONES_KEPT:
                self._tombstones.popitem(last=False)
            return entry is not None

    def mark_synced(self, namespaces: Iterable[str] | None = None) -> None:
        """The children of these namespaces (None: of all) are all in the store: reads trust it from now on."""
        with self._lock:
            if namespaces is None:
                self._synced_all = True
            else:
                self._synced.update(namespaces)

    # -- reading it ------------------------------------------------------------------------------------------

    def synced(self, namespace: str) -> bool:
        return self._synced_all or namespace in self._synced

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A private copy of the object, or None."""
        with self._lock:
            entry = self._objects.get((kind, namespace, name))
            blob = entry.blob if entry else None
        return json.loads(blob) if blob is not None else None

    def children(self, kind: str, namespace: str, owner: str) -> list[dict[str, Any]]:
        """Objects of `kind` labelled with this owner's name (what the label-selected LIST returned), as copies."""
        with self._lock:
            blobs = [self._objects[ref].blob for ref in self._by_owner.get((namespace, owner), ()) if ref[0] == kind]
        return [json.loads(blob) for blob in blobs]

    def deleted(self, kind: str, namespace: str, name: str) -> bool:
        """The store saw this object deleted and nothing of that name since."""
        with self._lock:
            return (kind, namespace, name) in self._tombstones

    def is_echo(self, kind: str, namespace: str, name: str, version: int | None) -> bool:
        """This version came back from our own write: its watch event tells the reconcile nothing new."""
        with self._lock:
            entry = self._objects.get((kind, namespace, name))
            return entry is not None and entry.ours and version is not None and entry.version == version

    def owner_of(self, kind: str, namespace: str, name: str) -> str | None:
        """The owner a stored child was indexed under."""
        with self._lock:
            entry = self._objects.get((kind, namespace, name))
            return entry.owner if entry else None

    def counts(self) -> dict[str, int]:
        """Objects held, by kind."""
        with self._lock:
            return dict(self._counts)

    def __len__(self) -> int:
        return len(self._objects)

    # -- relistings ------------------------------------------------------------------------------------------

    def listed(self, kind: str, namespace: str, name: str) -> None:
        """A watch's (re)listing delivered this object (Kopf's events of type None)."""
        key = (kind, None if self._clusterwide else namespace)
        with self._lock:
            now = self._clock()
            listing = self._listings.get(key)
            if listing is None:
                listing = self._listings[key] = _Listing(started=now, last=now)
            listing.last = now
            listing.refs.add((kind, namespace, name))
            entry = self._objects.get((kind, namespace, name))
            if entry is not None:
                entry.seen = now

    def unlisted(self, quiet: float) -> list[Ref] | None:
        """After a listing has delivered nothing for `quiet` seconds: what the store holds in its scope that it did
        not deliver and that nothing else has shown alive since it began. Those were deleted while the watch was
        down (no DELETED event comes for them), or are still on their way: the caller checks each with the API.
        None when no listing has ended."""
        with self._lock:
            now = self._clock()
            done = [key for key, listing in self._listings.items() if now - listing.last >= quiet]
            if not done:
                return None
            missing: list[Ref] = []
            for kind, scope in done:
                listing = self._listings.pop((kind, scope))
                missing.extend(
                    ref
                    for ref, entry in self._objects.items()
                    if ref[0] == kind
                    and (scope is None or ref[1] == scope)
                    and ref not in listing.refs
                    and entry.seen < listing.started
                )
            return missing

    # -- internals -------------------------------------------------------------------------------------------

    def _stale(self, ref: Ref, version: int | None, ours: bool, seen: float) -> bool:
        """The store holds this version or a newer one (then it is marked seen, and ours if it is), or saw the
        object deleted at this version or later."""
        current = self._objects.get(ref)
        if current is not None:
            if not _not_newer(version, current.version):
                return False
            current.seen = max(current.seen, seen)
            if ours and version == current.version:
                current.ours = True
            return True
        return ref in self._tombstones and _not_newer(version, self._tombstones[ref])

    def _wanted(self, kind: str, obj: Mapping[str, Any]) -> bool:
        if self._owns is None:
            return True
        if kind == MODELDEPLOYMENT:
            return self._owns(obj.get("metadata", {}).get("uid", ""))
        controller = controller_of(obj)
        return controller is None or self._owns(controller[1])

    def _unindex(self, ref: Ref, owner: str | None) -> None:
        if owner is None:
            return
        key = (ref[1], owner)
        refs = self._by_owner.get(key)
        if refs is not None:
            refs.discard(ref)
            if not refs:
                del self._by_owner[key]


class ListingKubeApi(KubeApi, Protocol):
    """The API behind the cache: the reconcile's calls, plus the cluster-wide listing that fills it."""

    def list_managed(self, kind: str, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Every object of `kind` labelled as managed by us, in `namespace` or in all (None), page by page."""
        ...


def _not_newer(version: int | None, than: int | None) -> bool:
    """Versions that cannot be compared count as newer: the store then follows the latest event."""
    return version is not None and than is not None and version <= than


class CachedKube:
    """The reconcile's `KubeApi`: reads from the store, writes through to the API server and back into the store."""

    def __init__(self, kube: ListingKubeApi, store: Store) -> None:
        self.kube = kube
        self.store = store

    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        cached = self.store.get(MODELDEPLOYMENT, namespace, name)
        if cached is not None or self.store.deleted(MODELDEPLOYMENT, namespace, name):
            return cached
        # Not seen yet (a child's event came first): ask once; its watch event keeps it fresh from then on.
        fresh = self.kube.get_modeldeployment(namespace, name)
        if fresh is not None:
            self.store.upsert({"kind": MODELDEPLOYMENT, **fresh})
        return fresh

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        return self.kube.read_secret(namespace, name)

    def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        return self.kube.read_config_map(namespace, name)

    def get_analysis_template(self, cluster_scope: bool, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get_analysis_template(cluster_scope, namespace, name)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """From the API: it is asked only for a child the store does not have, to see whose that name is."""
        return self.kube.get(kind, namespace, name)

    def list_children(self, kind: str, namespace: str, owner_name: str) -> list[dict[str, Any]]:
        if self.store.synced(namespace):
            return self.store.children(kind, namespace, owner_name)
        items = self.kube.list_children(kind, namespace, owner_name)
        for item in items:
            self.store.upsert(item)
        return items

    def list_pods(self, namespace: str, owner_name: str, revision: str) -> list[dict[str, Any]]:
        return self.kube.list_pods(namespace, owner_name, revision)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        result = self.kube.apply(obj)
        self.store.upsert({"kind": obj["kind"], **result}, ours=True)
        return result

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        self.kube.delete(kind, namespace, name, uid)
        self.store.delete(kind, namespace, name)

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        result = self.kube.patch_status(namespace, name, patch)
        if result is not None:
            self.store.upsert({"kind": MODELDEPLOYMENT, **result}, ours=True)
        return result

    def emit_event(self, owner: dict[str, Any], event: Event) -> None:
        self.kube.emit_event(owner, event)

    # -- for the handlers ------------------------------------------------------------------------------------

    def fill(self, kinds: Iterable[str], namespaces: list[str] | None, at: float | None = None) -> int:
        """One paginated, label-selected LIST per child kind (and namespace, unless None: all), into the store;
        then the store is trusted for those namespaces. `at`: when the listing began. Returns how many objects
        the store holds."""
        for kind in kinds:
            for namespace in [None] if namespaces is None else namespaces:
                for item in self.kube.list_managed(kind, namespace):
                    self.store.upsert(item, at=at)
        self.store.mark_synced(namespaces)
        return len(self.store)

    def recheck(self, refs: Iterable[Ref]) -> Iterator[tuple[Ref, str | None]]:
        """Asks the API for each object a relisting did not deliver: stored again if it exists, dropped if not.
        Yields (ref, owner name) for the ones dropped."""
        for ref in refs:
            kind, namespace, name = ref
            owner = name if kind == MODELDEPLOYMENT else self.store.owner_of(kind, namespace, name)
            obj = (
                self.kube.get_modeldeployment(namespace, name)
                if kind == MODELDEPLOYMENT
                else self.kube.get(kind, namespace, name)
            )
            if obj is None:
                self.store.delete(kind, namespace, name)
                yield ref, owner
            else:
                self.store.upsert({"kind": kind, **obj})
