"""`modelserver fetch`: download the model named by MODEL_URI into MODEL_DIR, check its digest, report.

The operator runs it as an init container from the model server's image; the server container then mounts the
same volume read-only and loads from MODEL_DIR. Everything comes from the environment, so Secrets can be wired
with `secretKeyRef`:

- MODEL_URI (required): s3://, gs://, https://, http://, file://, mlflow-artifacts:/, models:/...; builtin://
  needs no fetch (exit 0); pvc:// is mounted by the operator, not fetched (exit 2).
- MODEL_DIR (default /mnt/models), MODEL_DIGEST (optional pin, sha256:<64 hex>),
  MODEL_FETCH_TIMEOUT_SECONDS (one deadline for the whole fetch, default 600),
  MODEL_FETCH_REPORT (a file for the JSON report; default /dev/termination-log when it is writable).

The files land in a staging directory inside MODEL_DIR and move into place only once the digest matches, so a
failed fetch leaves nothing the server would load. Exit codes: see `modelserver.errors.ExitCode`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelserver.digest import FETCH_RECORD, parse_digest, tree_digest
from modelserver.errors import (
    DigestMismatchError,
    ExitCode,
    FetchError,
    FetchTimeoutError,
    UnreachableError,
    UsageError,
)
from modelserver.redact import Redactor, display_uri

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("modelserver.fetch")

DEFAULT_MODEL_DIR = "/mnt/models"
DEFAULT_TIMEOUT_SECONDS = 600.0
TERMINATION_LOG = "/dev/termination-log"
REPORT_LIMIT = 4096  # the kubelet keeps at most 4 KiB of a termination message
STAGING_PREFIX = ".fetch-staging-"
CONCURRENCY = 4


@dataclass(frozen=True)
class FetchConfig:
    uri: str
    model_dir: Path
    digest: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    report: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> FetchConfig:
        """From MODEL_* variables; a flag given on the command line (not None) wins."""

        def pick(key: str, variable: str, default: str | None = None) -> str | None:
            value = overrides.get(key)
            return str(value) if value is not None else env.get(variable, default)

        uri = (pick("uri", "MODEL_URI") or "").strip()
        if not uri:
            raise UsageError("MODEL_URI is not set: say which model to fetch")
        pin = pick("digest", "MODEL_DIGEST")
        raw_timeout = pick("timeout", "MODEL_FETCH_TIMEOUT_SECONDS", str(DEFAULT_TIMEOUT_SECONDS)) or ""
        try:
            timeout = float(raw_timeout)
        except ValueError:
            timeout = math.nan
        if not math.isfinite(timeout) or timeout <= 0:
            raise UsageError(f"MODEL_FETCH_TIMEOUT_SECONDS must be a positive number of seconds, got {raw_timeout!r}")
        try:
            digest = parse_digest(pin) if pin and pin.strip() else None
        except ValueError as error:
            raise UsageError(str(error)) from error
        report = pick("report", "MODEL_FETCH_REPORT")
        return cls(
            uri=uri,
            model_dir=Path(pick("model_dir", "MODEL_DIR", DEFAULT_MODEL_DIR) or DEFAULT_MODEL_DIR),
            digest=digest,
            timeout=timeout,
            report=Path(report) if report else (default_report() if report is None else None),
        )


def default_report() -> Path | None:
    """/dev/termination-log when there is one to write (in a container); else no report file."""
    path = Path(TERMINATION_LOG)
    return path if path.exists() and os.access(path, os.W_OK) else None


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


@dataclass
class Progress:
    """Counts bytes; logs a line at each further 10% of the total, or every `interval` seconds."""

    total: int | None
    interval: float = 5.0
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    started: float = field(init=False)
    last_logged: float = field(init=False)
    next_tenth: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        self.started = self.last_logged = self.clock()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = f"{human(self.done / elapsed)}/s"
        if self.total:
            percent = 100 * self.done // self.total
            return f"{human(self.done)} of {human(self.total)} ({percent}%), {rate}"
        return f"{human(self.done)}, {rate}"

    def add(self, count: int) -> None:
        self.done += count
        now = self.clock()
        tenth_due = bool(self.total) and self.done * 10 >= self.next_tenth * (self.total or 1)
        if tenth_due or now - self.last_logged >= self.interval:
            log.info("%s", self.line(now))
            self.last_logged = now
            if self.total:
                self.next_tenth = min(10, self.done * 10 // self.total) + 1


@dataclass(frozen=True)
class Result:
    uri: str
    digest: str | None
    bytes: int
    seconds: float
    files: int = 0
    resolved: dict[str, str] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "uri": display_uri(self.uri),
            "digest": self.digest,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }
        if self.resolved:
            out["resolved"] = self.resolved
        return out


def encode_report(report: Mapping[str, Any], redact: Redactor) -> str:
    """Compact JSON under REPORT_LIMIT bytes: long strings are shortened until it fits."""
    limit = 1024
    while True:
        shortened = {k: _shorten(v, limit) for k, v in report.items()}
        text = redact(json.dumps(shortened, separators=(",", ":"), sort_keys=False))
        if len(text.encode()) <= REPORT_LIMIT or limit <= 32:
            return text
        limit //= 2


def _shorten(value: Any, limit: int) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    return value


def write_report(path: Path | None, report: Mapping[str, Any], redact: Redactor) -> None:
    if path is None:
        return
    try:
        path.write_text(encode_report(report, redact) + "\n")
    except OSError as error:
        log.warning("cannot write the fetch report to %s: %s", path, error)


def prepare_model_dir(model_dir: Path) -> None:
    """MODEL_DIR exists and holds nothing but, perhaps, an earlier fetch (which is removed)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    entries = [p for p in model_dir.iterdir() if p.name != "lost+found"]
    for stale in [p for p in entries if p.name.startswith(STAGING_PREFIX)]:
        shutil.rmtree(stale, ignore_errors=True)
    entries = [p for p in entries if not p.name.startswith(STAGING_PREFIX)]
    if not entries:
        return
    if not (model_dir / FETCH_RECORD).exists():
        names = ", ".join(sorted(p.name for p in entries)[:5])
        raise UsageError(
            f"MODEL_DIR {model_dir} is not empty and holds no earlier fetch ({names}): give an empty directory"
        )
    for entry in entries:  # an earlier fetch, e.g. before the pod's init containers ran again
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


async def _download(
    entry: Any, staging: Path, progress: Progress, hashes: dict[str, str], limit: asyncio.Semaphore
) -> None:
    async with limit:
        target = staging / entry.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with target.open("wb") as handle:
            async for chunk in entry.open():
                view = memoryview(chunk)
                digest.update(view)
                handle.write(view)
                progress.add(view.nbytes)
        hashes[entry.relative] = digest.hexdigest()


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    for leaf in leaves:
        if isinstance(leaf, FetchError):
            return leaf
    return leaves[0]


async def fetch(
    config: FetchConfig, env: Mapping[str, str], transport: httpx.AsyncBaseTransport | None = None
) -> Result:
    """Fetch config.uri into config.model_dir; raises FetchError (with its exit code) when it cannot.
    `transport` replaces httpx's network transport (tests)."""
    from modelserver.sources import Context, resolve, scheme_of  # obstore loads only for a real fetch

    shown = display_uri(config.uri)
    scheme = scheme_of(config.uri)
    if scheme == "builtin":
        log.info("%s is built into the server: nothing to fetch", shown)
        return Result(config.uri, None, 0, 0.0)
    if scheme == "pvc":
        raise UsageError(
            f"{shown} is a PersistentVolumeClaim: the operator mounts it at MODEL_DIR, there is nothing to fetch"
        )
    started = time.monotonic()
    prepare_model_dir(config.model_dir)
    staging = config.model_dir / f"{STAGING_PREFIX}{os.getpid()}"
    staging.mkdir()
    progress: Progress | None = None
    deadline = asyncio.timeout(config.timeout)
    try:
        try:
            async with deadline, AsyncExitStack() as stack:
                artifact = await resolve(config.uri, Context(env, config.timeout, stack, transport))
                sizes = [e.size for e in artifact.entries]
                total = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
                files = len(artifact.entries)
                described = f"{files} file{'s' if files != 1 else ''}" + (f", {human(total)}" if total else "")
                via = (
                    f" ({artifact.resolved['model']} version {artifact.resolved['version']})"
                    if artifact.resolved
                    else ""
                )
                log.info("fetching %s%s: %s into %s", shown, via, described, config.model_dir)
                progress = Progress(total)
                hashes: dict[str, str] = {}
                limit = asyncio.Semaphore(CONCURRENCY)
                try:
                    async with asyncio.TaskGroup() as group:
                        for entry in artifact.entries:
                            group.create_task(_download(entry, staging, progress, hashes, limit))
                except BaseExceptionGroup as errors:
                    raise _first_error(errors) from None
        except TimeoutError as error:
            if not deadline.expired():  # a library's own timeout, not the fetch's deadline
                raise UnreachableError(f"timed out talking to the store for {shown}: {error or 'no answer'}") from error
            arrived = progress.done if progress else 0
            of = f" of {progress.total}" if progress and progress.total else ""
            raise FetchTimeoutError(
                f"timeout: fetching {shown} did not finish within {config.timeout:g} s "
                f"(MODEL_FETCH_TIMEOUT_SECONDS); {arrived}{of} bytes had arrived"
            ) from error
        single = "sha256:" + hashes[artifact.entries[0].relative] if artifact.single else ""
        digest = single or tree_digest(hashes.items())
        if config.digest and config.digest != digest:
            raise DigestMismatchError(
                f"digest mismatch: spec pins {config.digest}, the artifact at {shown} is {digest}; "
                "nothing was left in MODEL_DIR"
            )
        seconds = time.monotonic() - started
        result = Result(config.uri, digest, progress.done, seconds, files, artifact.resolved)
        # The record first: if the moves below are cut short, the next run knows the directory is its own.
        (config.model_dir / FETCH_RECORD).write_text(json.dumps(result.report(), indent=1) + "\n")
        for child in staging.iterdir():
            os.replace(child, config.model_dir / child.name)
        rate = f"{human(result.bytes / max(seconds, 1e-9))}/s"
        log.info(
            "fetched %s: %s, %d bytes in %d file%s, %.2f s (%s), into %s",
            shown,
            digest,
            result.bytes,
            files,
            "s" if files != 1 else "",
            seconds,
            rate,
            config.model_dir,
        )
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run(
    overrides: Mapping[str, Any],
    env: Mapping[str, str],
    redact: Redactor,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """The `fetch` command: the exit code, the report written, one clear line on failure."""
    uri = str(overrides.get("uri") or env.get("MODEL_URI", ""))
    report_path = Path(overrides["report"]) if overrides.get("report") else _report_path(env)
    try:
        config = FetchConfig.from_env(env, **overrides)
        report_path, uri = config.report, config.uri
        result = asyncio.run(fetch(config, env, transport))
    except FetchError as error:
        message, code = str(error), int(error.code)
    except Exception as error:
        log.debug("fetch failed", exc_info=True)
        message, code = f"fetch failed: {type(error).__name__}: {error}", int(ExitCode.ERROR)
    else:
        write_report(report_path, result.report(), redact)
        return int(ExitCode.OK)
    log.error("%s", message)
    write_report(report_path, {"uri": display_uri(uri), "error": message, "exitCode": code}, redact)
    return code


def _report_path(env: Mapping[str, str]) -> Path | None:
    value = env.get("MODEL_FETCH_REPORT")
    if value is None:
        return default_report()
    return Path(value) if value else None
