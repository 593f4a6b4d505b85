"""How long `modelserver fetch` takes to bring a model from a local S3-compatible store. Prints figures; asserts
nothing.

    .venv/bin/python hack/bench_fetch.py [--size-mb 100] [--files 1] [--runs 3]

It starts the Versity S3 Gateway on 127.0.0.1 (built once from Go modules, see modeldeploy_dev/stores.py),
uploads a random artifact of --size-mb split into --files objects, and runs the real `modelserver fetch` process
--runs times into a fresh MODEL_DIR, digest pinned. Per run it prints the process's wall time (Python start
included) and the fetch's own time from its report (listing, download, SHA-256, moves).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from modeldeploy_dev.stores import S3Server, run_fetch
from modelserver.digest import tree_digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--files", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as scratch:
        work = Path(scratch)
        server = S3Server(work / "s3").start(echo=lambda line: print(line, file=sys.stderr))
        try:
            size = args.size_mb * 1024 * 1024
            per_file = size // args.files
            hashes = []
            for index in range(args.files):
                data = os.urandom(per_file)
                name = f"model-{index:03d}.bin" if args.files > 1 else "model.bin"
                server.put(f"bench/{name}", data)
                hashes.append((name, hashlib.sha256(data).hexdigest()))
            if args.files == 1:
                uri, pin = "s3://models/bench/model.bin", "sha256:" + hashes[0][1]
            else:
                uri, pin = "s3://models/bench", tree_digest(hashes)
            walls, inner = [], []
            for run in range(args.runs):
                target = work / f"models-{run}"
                env = {**server.env(), "MODEL_URI": uri, "MODEL_DIR": str(target), "MODEL_DIGEST": pin}
                started = time.monotonic()
                result = run_fetch(env, work)
                wall = time.monotonic() - started
                if result.code != 0:
                    raise SystemExit(f"fetch failed ({result.code}): {result.output}")
                walls.append(wall)
                inner.append(float(result.report["seconds"]))
                rate = per_file * args.files / inner[-1] / 1024 / 1024
                print(f"run {run + 1}: wall {wall:.2f} s, fetch {inner[-1]:.2f} s ({rate:.0f} MiB/s)")
            mib = per_file * args.files / 1024 / 1024
            print(
                f"{mib:.0f} MiB in {args.files} object(s) from a local S3 store, {len(walls)} runs: "
                f"median wall {statistics.median(walls):.2f} s, median fetch {statistics.median(inner):.2f} s "
                f"({mib / statistics.median(inner):.0f} MiB/s, digest checked)"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
