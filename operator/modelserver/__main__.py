"""`python -m modelserver [--port 8080] [--host 0.0.0.0]`: serve the model named by MODEL_* variables."""

from __future__ import annotations

import argparse
import os

import uvicorn

from modelserver.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="modelserver", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
