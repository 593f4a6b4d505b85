"""Watch events into the informer cache and onto the work queue, at the right priority.

The Kopf handlers hand every event here (Kopf itself stays in `handlers.py`). A ModelDeployment's event stores it
and queues it; a child's event stores the child and queues its owner. Three things keep the queue short:

- an event that only echoes our own write (the cache already holds that version, from the API server's answer)
  queues nothing, except for routing objects, whose weight the status reads back one reconcile after writing it;
- a new object's first reconcile (`NEW`) waits behind what changed for the objects already served, so that in a
  bulk create each reaches Ready as soon as its pods are ready;
- what a watch's (re)listing delivers is queued behind everything else (`RESYNC`), and a listed child
  queues its owner only if the cache did not have that version yet;
- no reconcile starts before the cache holds every child: `start()` fills it with one paginated LIST per kind,
  then starts the queue's workers. Kopf's own initial listing then finds it current.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from modeldeploy.adapters import metrics
from modeldeploy.adapters.cache import MODELDEPLOYMENT, CachedKube, Ref, Store, controller_of, version_of
from modeldeploy.core.children import CHILD_RESOURCES, ROUTING_RESOURCES
from modeldeploy.core.naming import INSTANCE_LABEL
from modeldeploy.workqueue import CHANGED, NEW, RESYNC, Key


class Queue(Protocol):
    """What the informer needs of the work queue (`WorkQueue`; a recording fake in the tests)."""

    def add(self, key: Key, priority: int = CHANGED) -> None: ...

    def forget(self, key: Key) -> None: ...

    def start(self) -> None: ...

    def depth(self) -> int: ...

    def idle(self) -> bool: ...


log = logging.getLogger("modeldeploy.informer")

ROUTING_KINDS = frozenset(resource.kind for resource in ROUTING_RESOURCES)
CHILD_KINDS = tuple(resource.kind for resource in CHILD_RESOURCES)
LISTING_QUIET_SECONDS = 10.0
"""A (re)listing that delivered nothing for this long is over: what it did not deliver is checked with the API."""
SWEEP_EVERY_SECONDS = 1.0
FILL_RETRY_SECONDS = 5.0
BURST_KEYS = 100
"""A queue this deep is a burst (a start, a bulk change): when it has drained, freed memory goes back to the system."""


M_ARENA_MAX = -8
"""glibc's mallopt parameter: how many malloc arenas the threads share."""
MALLOC_ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_memory() -> None:
    """Collects the garbage cycles a burst left (asyncio's and Kopf's per-event objects), then returns the heap's
    free pages to the system, where the C library can (glibc's malloc_trim)."""
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def share_malloc_arenas() -> None:
    """Before the reconcile threads start: glibc gives each thread an arena of its own (up to 8 per CPU), and the
    cache's long-lived objects, written from every thread, would pin them all. Two shared ones are enough here."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def fillable(namespaces: list[str]) -> list[str] | None:
    """The namespaces the start-up LIST covers: None for all (cluster-wide); globs cannot be listed, so objects
    in the namespaces they match are read from the API instead (the store is not trusted there)."""
    if not namespaces:
        return None
    return [ns for ns in namespaces if not any(c in ns for c in "*?[!")]


class Informer:
    def __init__(
        self,
        kube: CachedKube,
        queue: Queue,
        owns: Callable[[str], bool] = lambda _uid: True,
        namespaces: list[str] | None = None,
    ) -> None:
        """`namespaces`: the ones served (empty or None: all); `owns(uid)`: the ModelDeployments this replica
        serves."""
        self.kube = kube
        self.store: Store = kube.store
        self.queue = queue
        self.owns = owns
        self.namespaces = fillable(namespaces or [])
        self._tasks: list[asyncio.Task[None]] = []
        share_malloc_arenas()

    # -- events ----------------------------------------------------------------------------------------------

    def modeldeployment_event(self, type: str | None, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        namespace, name, uid = meta.get("namespace"), meta.get("name", ""), meta.get("uid", "")
        if namespace is None:
            return
        key = (namespace, name)
        if type == "DELETED":
            self.store.delete(MODELDEPLOYMENT, namespace, name, version_of(obj))
            self.queue.forget(key)
            metrics.OBJECTS.set(namespace, name, None)
            return
        if not self.owns(uid):
            return  # every replica sees every event; each keeps and queues only its own shard's objects
        if type is None:
            self.store.listed(MODELDEPLOYMENT, namespace, name)
        echo = self.store.is_echo(MODELDEPLOYMENT, namespace, name, version_of(obj))
        self.store.upsert(obj)
        if type is None:
            self.queue.add(key, RESYNC)  # after a start or a relisting, every object is looked at once
        elif type == "ADDED":
            self.queue.add(key, NEW)
        elif not echo:
            self.queue.add(key, CHANGED)

    def child_event(self, type: str | None, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        namespace, name, kind = meta.get("namespace"), meta.get("name", ""), obj.get("kind", "")
        if namespace is None:
            return
        controller = controller_of(obj)
        if controller is not None and not self.owns(controller[1]):
            return
        owner = controller[0] if controller else (meta.get("labels") or {}).get(INSTANCE_LABEL)
        version = version_of(obj)
        if type == "DELETED":
            self.store.delete(kind, namespace, name, version)
            if owner:
                self.queue.add((namespace, owner), CHANGED)  # a child deleted by hand comes back
            return
        if type is None:
            self.store.listed(kind, namespace, name)
        echo = self.store.is_echo(kind, namespace, name, version)
        changed = self.store.upsert(obj)
        if not owner:
            return
        if type is None:
            if changed:
                self.queue.add((namespace, owner), RESYNC)
        elif not echo or kind in ROUTING_KINDS:
            self.queue.add((namespace, owner), CHANGED)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Fills the cache, then starts the queue's workers and the relisting checks (in the background)."""
        self._tasks = [asyncio.create_task(self._run(), name="informer")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                held = await asyncio.to_thread(self.kube.fill, CHILD_KINDS, self.namespaces, at=started)
            except Exception as error:  # the API server may not be reachable yet: nothing runs until it is
                log.warning("Could not list the children to fill the cache (%s); retrying", error)
                await asyncio.sleep(FILL_RETRY_SECONDS)
                continue
            break
        where = "all namespaces" if self.namespaces is None else ", ".join(self.namespaces) or "no namespace"
        log.info("Cache filled in %.1fs: %d children in %s", time.monotonic() - started, held, where)
        self.queue.start()
        burst = False
        while True:
            await asyncio.sleep(SWEEP_EVERY_SECONDS)
            self._report()
            if self.queue.depth() >= BURST_KEYS:
                burst = True
            elif burst and self.queue.idle():
                burst = False
                release_memory()  # a pass over many objects is done: its garbage too
            missing = self.store.unlisted(LISTING_QUIET_SECONDS)
            if missing is None:
                continue
            if missing:
                try:
                    await self._recheck(missing)
                except Exception as error:
                    log.warning("Could not check %d objects a relisting left out (%s)", len(missing), error)
            # A listing's pages and its burst of events are garbage now: give the freed heap back to the system
            # (glibc keeps it otherwise, and the resident memory after a start would stay at the burst's peak).
            release_memory()

    async def _recheck(self, refs: Iterable[Ref]) -> None:
        gone = await asyncio.to_thread(lambda: list(self.kube.recheck(refs)))
        for (kind, namespace, name), owner in gone:
            log.info("[%s/%s] %s %s was deleted while the watch was down", namespace, owner, kind, name)
            if kind == MODELDEPLOYMENT:
                self.queue.forget((namespace, name))
                metrics.OBJECTS.set(namespace, name, None)
            elif owner:
                self.queue.add((namespace, owner), CHANGED)

    def _report(self) -> None:
        for kind, count in self.store.counts().items():
            metrics.CACHE_OBJECTS.labels(kind=kind).set(count)
