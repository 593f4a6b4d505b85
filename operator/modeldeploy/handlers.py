"""The thin Kopf layer: watch events in, keys onto the work queue. Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from modeldeploy import __version__
from modeldeploy.adapters import metrics, redaction
from modeldeploy.adapters.background import BackgroundRunner
from modeldeploy.adapters.cache import CachedKube, Store
from modeldeploy.adapters.kube import Kube, load_api_client
from modeldeploy.adapters.watcher import BackgroundWatcher
from modeldeploy.adapters.webhooks import GateRunner, Notifier
from modeldeploy.core import api, children
from modeldeploy.core.naming import MANAGED_BY, MANAGED_BY_LABEL
from modeldeploy.core.sharding import Shard
from modeldeploy.informer import Informer
from modeldeploy.reconcile import Reconciler
from modeldeploy.sources import SourceResolver
from modeldeploy.workqueue import WorkQueue, in_threads

log = logging.getLogger("modeldeploy.handlers")

PEERING_LIFETIME_SECONDS = 30
LIST_PAGE = 200
WORKER_IDLE_SECONDS = 0.5
# Every kind of child, from the core's registry (the workload plus every router's resources), as Kopf names them.
CHILD_RESOURCES = tuple((r.group, r.version, r.plural) for r in children.CHILD_RESOURCES)


def configure(settings: kopf.OperatorSettings) -> None:
    # Handlers here only enqueue: Kopf keeps no per-object state (no annotations, no finalizers).
    settings.posting.enabled = False
    # Watch only our own children, filtered by the API server: other Deployments, Services and routes in the
    # cluster never reach the operator's memory.
    for resource in CHILD_RESOURCES:
        settings.watching.label_selectors[resource] = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    # With peering, a standby takes over within this many seconds of an active replica dying without a goodbye.
    settings.peering.lifetime = PEERING_LIFETIME_SECONDS
    # Kopf's own listings (at start and after a watch restart) come in pages, not as one response of every object.
    settings.watching.chunk_size = LIST_PAGE
    # Kopf runs a task per object while its events flow; after a start's listing that is every object at once.
    # Let each end soon after its last event (default 5 s), so they do not all pile up in memory.
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    # Only event handlers here: nothing diffs an object against its last handled state, so Kopf need not
    # deep-copy every event's body to build that state.
    settings.persistence.diffbase_storage = NoDiffBase()


class NoDiffBase(kopf.DiffBaseStorage):
    """No last-handled state: kept nowhere, and not built from the body at all."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.startup()
async def start(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)
    shard: Shard = memo.shard
    api_client = load_api_client()
    # Names the shard in the API server's audit log (userAgent), so each write can be traced to its replica.
    api_client.user_agent = f"modeldeploy/{__version__} shard/{shard.index}-of-{shard.count}"
    loop = asyncio.get_running_loop()

    def queue_again(key: tuple[str, str]) -> None:
        loop.call_soon_threadsafe(memo.queue.add, key)

    # Analysis ticks and registry lookups run on their runners' own threads; when one finishes, its object is
    # queued again.
    memo.runners = [BackgroundRunner("analysis", queue_again), BackgroundRunner("registry", queue_again)]
    analysis, registry = memo.runners
    # Reconciles read the ModelDeployment and its children from the informer cache these handlers feed.
    kube = CachedKube(Kube(api_client), Store(clusterwide=not memo.namespaces, owns=shard.owns))
    sources = SourceResolver(kube, runner=registry)
    # Critical bounds are checked on the watcher's own threads; a breach queues its object again.
    memo.watcher = BackgroundWatcher(queue_again)
    # Webhook gates and notifications too: a slow receiver never holds a reconcile worker.
    memo.gates = GateRunner(kube, notify=queue_again)
    memo.notifier = Notifier(kube)
    reconciler = Reconciler(
        kube,
        sources=sources,
        owns=shard.owns,
        runner=analysis,
        gates=memo.gates,
        notify=memo.notifier.send,
        watcher=memo.watcher,
    )
    metrics.SHARD.labels(shard=str(shard.index), shards=str(shard.count)).set(1)
    if shard.sharded:
        log.info("Serving shard %s: the ModelDeployments in %s", shard, shard.selector())

    # `workers` reconciles really run at once: on a pool of that size, not the loop's default executor.
    reconcile, memo.reconcile_pool = in_threads(reconciler.reconcile, memo.workers)
    memo.queue = WorkQueue(reconcile, workers=memo.workers)
    metrics.WORKQUEUE_DEPTH.set_function(memo.queue.depth)
    # The queue's workers start once the cache holds every child (a LIST per kind, in the background).
    memo.informer = Informer(kube, memo.queue, owns=shard.owns, namespaces=memo.namespaces)
    memo.informer.start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await memo.informer.stop()
    await memo.queue.stop()
    for runner in memo.runners:
        runner.close()
    memo.watcher.close()
    memo.gates.close()
    memo.notifier.close()
    memo.reconcile_pool.shutdown(wait=False, cancel_futures=True)


# Kopf's `type` is None for what a listing delivers (at start, and after a watch restart), else the watch's.
@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def modeldeployment_event(*, type: str, event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    memo.informer.modeldeployment_event(type, event["object"])


async def child_event(*, type: str, event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    memo.informer.child_event(type, event["object"])


for group, version, plural in CHILD_RESOURCES:
    kopf.on.event(group, version, plural, labels={MANAGED_BY_LABEL: MANAGED_BY}, id=f"child-{plural}")(child_event)


def run_operator(
    namespaces: list[str],
    liveness_port: int,
    workers: int,
    log_format: str,
    verbose: bool,
    peering: str | None = None,
    priority: int = 0,
    shard: Shard | None = None,
) -> None:
    """Standalone by default; with `peering`, replicas elect one active operator by Kopf peering. With `shard`,
    it serves only the ModelDeployments of that shard (and their children)."""
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
        log_prefix=True,
    )
    if not verbose:
        # Kopf reports every handled watch event; the reconciler logs what actually changed.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Every line any logger writes (kopf, kubernetes, httpx, httpcore...) at any level goes through one handler:
    # mask in it every secret value read from a Secret, Authorization headers and token= parameters.
    redaction.install()
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz",
        memo=kopf.Memo(workers=workers, shard=shard or Shard(), namespaces=namespaces),
    )
