"""Benchmark: how long `modeldeploy deploy --wait` takes to exit once the outcome is visible, and how fast the
command starts. Prints figures; asserts nothing.

    .venv/bin/python hack/bench_deploy_wait.py [--runs 5] [--starts 20]

On a fresh local control plane with the operator running: `deploy --wait` of a new version whose canary
promotes after one step. A thread polls the object every 50 ms with the SDK and notes when the outcome for the
applied generation is first readable (the same rule the command uses); the command's exit is stamped by the
shell that ran it (wall clock), so neither side waits on the other's scheduling. The overhead is the difference:
the command's poll interval (0.5 s), one GET, printing, and interpreter exit.

Cold start: `modeldeploy --version` in a fresh interpreter, `--starts` times; the median and the fastest.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from modeldeploy.client import Client
from modeldeploy.core.status.outcome import verdict
from modeldeploy_dev.cluster import LocalCluster, build
from modeldeploy_dev.testing import Cluster, Operator, model_version, modeldeployment, serving_spec

NAME = "bench"
NAMESPACE = "default"


def spec(version: str) -> dict[str, object]:
    rollout = {"steps": [{"setWeight": 50}], "scaleDownDelaySeconds": 0}
    return serving_spec(model=model_version(version), rollout=rollout, replicas=2)


def one_deploy(cluster: Cluster, sdk: Client, version: str, workdir: Path) -> tuple[float, float, float]:
    """Seconds from the start to the exit, and from the outcome being visible to its line and to the exit."""
    manifest = workdir / f"v{version}.yaml"
    manifest.write_text(yaml.safe_dump(modeldeployment(NAME, NAMESPACE, spec(version))))
    visible: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        generation = None
        while not stop.is_set():
            obj = sdk.get(NAME)
            generation = generation or (
                obj["metadata"]["generation"] if obj["spec"]["model"]["version"] == version else None
            )
            if generation and verdict(obj, generation) is not None:
                visible.append(time.time())
                return
            time.sleep(0.05)

    poller = threading.Thread(target=watch, daemon=True)
    poller.start()
    started = time.time()
    # Each line the command prints to stdout (the outcome) stamped as it arrives, then the exit, by the shell.
    script = '"$@" | while IFS= read -r line; do echo "$(date +%s.%N) $line"; done; date +%s.%N'
    cli = [sys.executable, "-m", "modeldeploy", "deploy", "-f", str(manifest), "--wait", "--timeout", "5m"]
    result = subprocess.run(
        ["sh", "-c", script, "sh", *cli, f"--kubeconfig={cluster.kubeconfig}"],
        capture_output=True,
        text=True,
        timeout=400,
    )
    lines = result.stdout.strip().splitlines()
    printed, exited = float(lines[-2].split()[0]), float(lines[-1])
    poller.join(10)
    stop.set()
    if not visible:
        raise RuntimeError(f"the outcome never became visible: {result.stdout} {result.stderr}")
    return exited - started, printed - visible[0], exited - visible[0]


def cold_starts(count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "modeldeploy", "--version"], check=True, capture_output=True)
        times.append(time.monotonic() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--starts", type=int, default=20)
    args = parser.parse_args()

    starts = cold_starts(args.starts)
    print(
        f"modeldeploy --version cold start: median {statistics.median(starts):.3f}s, fastest {min(starts):.3f}s "
        f"over {len(starts)} runs"
    )
    build(echo=lambda line: print(line, file=sys.stderr))
    local = LocalCluster.temporary(nodes=1)
    local.start()
    try:
        cluster = Cluster.of(local)
        cluster.install_crds()
        with tempfile.TemporaryDirectory() as tmp, Operator(cluster, Path(tmp) / "operator.log"):
            sdk = Client(namespace=NAMESPACE, kubeconfig=str(cluster.kubeconfig))
            first = sdk.deploy(modeldeployment(NAME, NAMESPACE, spec("1")), timeout=300, check=True)
            print(f"first revision Ready after {first.seconds:.1f}s")
            lines, exits = [], []
            for run in range(args.runs):
                total, line, exit_ = one_deploy(cluster, sdk, str(run + 2), Path(tmp))
                lines.append(line)
                exits.append(exit_)
                print(
                    f"run {run + 1}: deploy --wait {total:.1f}s; after the outcome was visible: its line at "
                    f"{line:.2f}s, exit at {exit_:.2f}s"
                )
            print(
                "deploy --wait after the outcome is visible: the outcome's line at median "
                f"{statistics.median(lines):.2f}s, exit at median {statistics.median(exits):.2f}s "
                f"(max {max(exits):.2f}s) over {len(exits)} runs"
            )
    finally:
        local.stop()


if __name__ == "__main__":
    main()
