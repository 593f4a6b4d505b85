"""`modelserver [serve] [--host H] [--port P]`: serve the model named by MODEL_* variables.
`modelserver fetch`: download MODEL_URI into MODEL_DIR (the operator's init container).
`modelserver digest PATH...`: print the digest to pin as `model.digest`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

COMMANDS = ("serve", "fetch", "digest")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelserver",
        description="modeldeploy's reference model server.",
        epilog="Without a command it serves (the image's default).",
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,fetch,digest}")
    serve = commands.add_parser("serve", help="serve the model (Open Inference Protocol v2, /metrics)")
    serve.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))

    fetch = commands.add_parser(
        "fetch",
        help="download MODEL_URI into MODEL_DIR and check MODEL_DIGEST",
        description="Download the model into MODEL_DIR. Every flag mirrors an environment variable, which the "
        "operator sets; a flag wins over its variable.",
    )
    fetch.add_argument("--uri", help="MODEL_URI")
    fetch.add_argument("--dir", dest="model_dir", help="MODEL_DIR (default /mnt/models)")
    fetch.add_argument("--digest", help="MODEL_DIGEST, sha256:<64 hex>")
    fetch.add_argument("--timeout", type=float, help="MODEL_FETCH_TIMEOUT_SECONDS (default 600)")
    fetch.add_argument("--report", help="MODEL_FETCH_REPORT (default /dev/termination-log when writable)")
    fetch.add_argument(
        "--log-level",
        default=os.environ.get("MODELSERVER_LOG_LEVEL", "INFO"),
        help="MODELSERVER_LOG_LEVEL (default INFO); secrets are masked at every level",
    )

    digest = commands.add_parser("digest", help="print the digest of a model file or directory")
    digest.add_argument("paths", nargs="+", type=Path)
    return parser


def main(argv: list[str] | None = None) -> None:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if not args_in or (args_in[0] not in COMMANDS and args_in[0] not in ("-h", "--help")):
        args_in.insert(0, "serve")  # `modelserver --port 8080`, as before the commands existed
    args = _parser().parse_args(args_in)
    if args.command == "fetch":
        sys.exit(_fetch(args))
    if args.command == "digest":
        sys.exit(_digest(args.paths))
    _serve(args.host, args.port)


def _serve(host: str, port: int) -> None:
    import uvicorn

    from modelserver.app import create_app
    from modelserver.models import ModelLoadError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app = create_app()
    except ModelLoadError as error:
        logging.getLogger("modelserver").error("cannot load the model: %s", error)
        sys.exit(1)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _fetch(args: argparse.Namespace) -> int:
    from modelserver import fetch, redact

    env = dict(os.environ)
    redactor = redact.Redactor.from_env(env)
    for name in ("MODEL_URI", "MLFLOW_TRACKING_URI"):
        redactor.add(_url_password(args.uri if name == "MODEL_URI" and args.uri else env.get(name, "")))
    level = str(args.log_level).upper()
    redact.install(redactor, level if level in logging.getLevelNamesMapping() else logging.INFO)
    overrides = {
        key: value
        for key, value in {
            "uri": args.uri,
            "model_dir": args.model_dir,
            "digest": args.digest,
            "timeout": args.timeout,
            "report": args.report,
        }.items()
        if value is not None
    }
    return fetch.run(overrides, env, redactor)


def _url_password(uri: str) -> str:
    from urllib.parse import urlsplit

    try:
        return urlsplit(uri).password or ""
    except ValueError:
        return ""


def _digest(paths: list[Path]) -> int:
    from modelserver.digest import path_digest

    status = 0
    for path in paths:
        try:
            print(f"{path_digest(path)}  {path}")
        except OSError as error:
            print(f"modelserver digest: {path}: {error.strerror or error}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    main()
