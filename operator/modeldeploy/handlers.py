"""The thin Kopf layer: watch events in, keys onto the work queue. Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from modeldeploy.adapters import metrics
from modeldeploy.adapters.kube import Kube, load_api_client
from modeldeploy.core import api, children
from modeldeploy.core.naming import MANAGED_BY, MANAGED_BY_LABEL
from modeldeploy.reconcile import Reconciler
from modeldeploy.workqueue import Key, WorkQueue

PEERING_LIFETIME_SECONDS = 30
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


@kopf.on.startup()
async def start(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)
    reconciler = Reconciler(Kube(load_api_client()))

    async def reconcile(key: Key) -> float | None:
        return await asyncio.to_thread(reconciler.reconcile, *key)

    memo.queue = WorkQueue(reconcile, workers=memo.workers)
    metrics.WORKQUEUE_DEPTH.set_function(memo.queue.depth)
    memo.queue.start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await memo.queue.stop()


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def modeldeployment_event(*, type: str, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    if namespace is None:
        return
    key = (namespace, name)
    if type == "DELETED":
        memo.queue.forget(key)
        metrics.OBJECTS.set(namespace, name, None)
        return
    memo.queue.add(key)


async def child_event(*, body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    if namespace is None:
        return
    for ref in body.metadata.get("ownerReferences") or []:
        if (
            ref.get("kind") == api.KIND
            and ref.get("apiVersion", "").startswith(f"{api.GROUP}/")
            and ref.get("controller")
        ):
            memo.queue.add((namespace, ref["name"]))


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
) -> None:
    """Standalone by default; with `peering`, replicas elect one active operator by Kopf peering."""
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
        log_prefix=True,
    )
    if not verbose:
        # Kopf reports every handled watch event; the reconciler logs what actually changed.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz",
        memo=kopf.Memo(workers=workers),
    )
