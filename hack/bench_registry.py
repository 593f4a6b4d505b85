"""Benchmark: ModelDeployments whose model comes from a real MLflow registry. Prints figures; asserts nothing.

    .venv/bin/python hack/bench_registry.py [--objects 5] [--moves 5] [--idle-objects 10] [--window 240]

On a local control plane, with a real MLflow tracking server (SQLite) whose artifacts live in a real S3 server
(versitygw), both on 127.0.0.1, and the operator as a process:

(a) alias move -> canary started: `--objects` ModelDeployments follow `models:/bench-move@champion`; the alias is
    moved `--moves` times (between versions 1 and 2) with pollInterval 2s, then once with the default 60s. Each
    object gives one sample per move: the seconds from the move in MLflow to `status.canary` at the new version
    (polled every 0.1 s or so).
(b) registry calls per idle object per hour: `--idle-objects` objects each for an alias with the default
    pollInterval (60s), an alias with 10s, and a pinned version (`models:/<name>/<version>`), each group served
    by its own operator process (scoped to its namespace, so its `modeldeploy_registry_requests_total` counts that
    group alone). Once all are Ready, the counter is read, then again after `--window` seconds of idling; the
    difference per object is scaled to an hour. Each registry lookup is two HTTP requests (the alias or version,
    then its download URI).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from modeldeploy_dev.cluster import LocalCluster, build
from modeldeploy_dev.stores import MLflowServer, S3Server
from modeldeploy_dev.testing import Cluster, Operator, example_spec, modeldeployment, wait_for

LOOKUPS = 'modeldeploy_registry_requests_total{operation="resolve",result="ok"}'


def echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def spec(uri: str, tracking_uri: str, poll: str | None) -> dict[str, Any]:
    mlflow: dict[str, Any] = {"trackingUri": tracking_uri}
    if poll is not None:
        mlflow["pollInterval"] = poll
    return example_spec(
        model={"name": "bench", "uri": uri, "format": "sklearn", "registry": {"mlflow": mlflow}},
        runtime={"preset": "modelserver"},
        replicas=1,
        rollout={"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}], "scaleDownDelaySeconds": 0},
    )


def listing(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(cluster.kubectl("get", "mdep", "-n", namespace, "-o", "json").stdout)[
        "items"
    ]
    return items


def model_version(md: dict[str, Any], track: str) -> str | None:
    version = (((md.get("status") or {}).get(track) or {}).get("model") or {}).get("version")
    return str(version) if version is not None else None


def all_ready(cluster: Cluster, namespace: str, count: int, version: str | None = None) -> bool:
    items = listing(cluster, namespace)
    return len(items) == count and all(
        (m.get("status") or {}).get("phase") == "Ready"
        and not (m.get("status") or {}).get("canary")
        and (version is None or model_version(m, "stable") == version)
        for m in items
    )


def create(
    cluster: Cluster, namespace: str, count: int, uri: str, tracking_uri: str, poll: str | None, spread: float = 0.0
) -> threading.Thread:
    """Creates the objects one by one over `spread` seconds (in a thread), so that their polls are spread over the
    interval as objects created at different times are, not all at the same moment."""

    def run() -> None:
        for i in range(count):
            doc = modeldeployment(f"m-{i}", namespace, spec(uri, tracking_uri, poll))
            cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(doc))
            time.sleep(spread / count)

    thread = threading.Thread(target=run, name=f"create-{namespace}", daemon=True)
    thread.start()
    return thread


def move_and_time(
    cluster: Cluster, mlflow: MLflowServer, model: str, namespace: str, count: int, version: str, timeout: float
) -> list[float]:
    """Moves `model`'s alias to `version`; per object, the seconds until its canary runs `version`."""
    moved = time.monotonic()
    mlflow.set_alias(model, "champion", version)
    seen: dict[str, float] = {}
    while len(seen) < count and time.monotonic() - moved < timeout:
        now = time.monotonic()
        for md in listing(cluster, namespace):
            name = md["metadata"]["name"]
            if name not in seen and version in (model_version(md, "canary"), model_version(md, "stable")):
                seen[name] = now - moved
        time.sleep(0.05)
    wait_for(lambda: all_ready(cluster, namespace, count, version), timeout, f"{namespace} promoted to {version}")
    return sorted(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=5)
    parser.add_argument("--moves", type=int, default=5)
    parser.add_argument("--idle-objects", type=int, default=10)
    parser.add_argument("--window", type=float, default=240.0)
    args = parser.parse_args()

    build(echo=echo)
    work = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    local = LocalCluster.temporary(nodes=2)
    local.start()
    cluster = Cluster.of(local)
    s3 = S3Server(work / "s3")
    mlflow = MLflowServer(work / "mlflow", artifacts=s3)
    operators: list[Operator] = []
    rows: list[tuple[str, str]] = []
    try:
        s3.start(echo)
        mlflow.start(echo)
        cluster.install_crds()
        for namespace in ("move-2s", "move-60s", "idle-60s", "idle-10s", "pinned"):
            cluster.kubectl("create", "namespace", namespace)
        published = mlflow.publish({"bench-move": 2, "bench-slow": 2, "bench-idle": 1})
        echo(f"published {published} to {mlflow.tracking_uri}, artifacts in {s3.endpoint}")

        # (a) alias move -> canary started. The 60s objects are created over a minute while the 2s ones move.
        mover = Operator(cluster, work / "operator-moves.log", args=("run", "-n", "move-2s", "-n", "move-60s"))
        operators.append(mover)
        mover.start()
        create(cluster, "move-2s", args.objects, "models:/bench-move@champion", mlflow.tracking_uri, "2s").join()
        wait_for(partial(all_ready, cluster, "move-2s", args.objects, "1"), 120, "move-2s Ready")
        slow_objects = create(
            cluster, "move-60s", args.objects, "models:/bench-slow@champion", mlflow.tracking_uri, None, 60
        )
        fast: list[float] = []
        for move in range(args.moves):
            version = "2" if move % 2 == 0 else "1"
            fast += move_and_time(cluster, mlflow, "bench-move", "move-2s", args.objects, version, 60)
        slow_objects.join()
        wait_for(partial(all_ready, cluster, "move-60s", args.objects, "1"), 120, "move-60s Ready")
        slow = move_and_time(cluster, mlflow, "bench-slow", "move-60s", args.objects, "2", 150)
        mover.stop()
        for label, samples, seconds in (("2s", fast, 2.0), ("60s (default)", slow, 60.0)):
            rows.append(
                (
                    f"alias move -> canary started, pollInterval {label}",
                    f"median {statistics.median(samples):.2f} s, min {min(samples):.2f} s, max {max(samples):.2f} s "
                    f"({len(samples)} samples; expected about {seconds * 1.05 / 2:.1f} s on average, "
                    f"{seconds * 1.1:.0f} s at most)",
                )
            )

        # (b) registry calls per idle object per hour
        groups = {
            "idle-60s": ("models:/bench-idle@champion", None),
            "idle-10s": ("models:/bench-idle@champion", "10s"),
            "pinned": ("models:/bench-idle/1", None),
        }
        by_group: dict[str, Operator] = {}
        for namespace in groups:
            operator = Operator(cluster, work / f"operator-{namespace}.log", args=("run", "-n", namespace))
            operators.append(operator)
            operator.start()
            by_group[namespace] = operator
        creating = [
            create(cluster, ns, args.idle_objects, uri, mlflow.tracking_uri, poll, 60)
            for ns, (uri, poll) in groups.items()
        ]
        for thread in creating:
            thread.join()
        for namespace in groups:
            wait_for(partial(all_ready, cluster, namespace, args.idle_objects), 180, f"{namespace} Ready")
        before = {ns: op.metrics().get(LOOKUPS, 0.0) for ns, op in by_group.items()}
        started = time.monotonic()
        time.sleep(args.window)  # a benchmark's measured window, not a wait for a condition
        window = time.monotonic() - started
        for namespace, (uri, poll) in groups.items():
            lookups = by_group[namespace].metrics().get(LOOKUPS, 0.0) - before[namespace]
            per_hour = lookups / args.idle_objects / window * 3600
            what = f"{uri.replace('bench-idle', '<name>')}, pollInterval {poll or '60s (default)'}"
            if "@" not in uri:
                what = f"{uri.replace('bench-idle', '<name>')} (a pinned version)"
            rows.append(
                (
                    f"registry lookups per idle object per hour: {what}",
                    f"{per_hour:.1f} ({per_hour * 2:.1f} HTTP requests); "
                    f"{lookups:.0f} lookups by {args.idle_objects} objects in {window:.0f} s",
                )
            )
    finally:
        for operator in operators:
            operator.stop()
        mlflow.stop()
        s3.stop()
        local.stop()

    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    # A SIGTERM (e.g. from `timeout`) unwinds through the finally blocks, so no server is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
