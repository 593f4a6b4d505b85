"""The model digest: what `model.digest` pins and what `modelserver fetch` checks.

- A single file: `sha256:` + the SHA-256 of its bytes (what `sha256sum model.pkl` prints).
- A directory: `sha256:` + the SHA-256 of one line per regular file under it, sorted by path,
  `"<relative path>\\0<hex SHA-256 of the file>\\n"`, where the relative path uses `/` and is compared as UTF-8
  bytes. Directories themselves, empty ones included, do not count; symbolic links to directories are not
  followed; the fetch's own record `.modelserver-fetch.json` at the top is left out.

So a directory digest depends only on the files' names and contents, not on timestamps, permissions or the order
the store listed them in. `modelserver digest PATH` prints it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
# The record `modelserver fetch` leaves beside the model (the same JSON as its report); never part of the digest.
FETCH_RECORD = ".modelserver-fetch.json"
CHUNK = 1024 * 1024


def parse_digest(value: str) -> str:
    """A pin as given in the spec, normalised to lower case; ValueError when it is not `sha256:<64 hex>`."""
    pin = value.strip().lower()
    if not DIGEST_PATTERN.match(pin):
        raise ValueError(f"MODEL_DIGEST must be sha256:<64 hex digits>, got {value.strip()[:80]!r}")
    return pin


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(files: Iterable[tuple[str, str]]) -> str:
    """The directory digest of (relative path, hex SHA-256 of the file) pairs."""
    digest = hashlib.sha256()
    for relative, file_hex in sorted(files, key=lambda item: item[0].encode()):
        digest.update(f"{relative}\0{file_hex}\n".encode())
    return "sha256:" + digest.hexdigest()


def tree_files(root: Path) -> list[tuple[str, Path]]:
    """The regular files under a directory that its digest covers, as (relative POSIX path, path)."""
    found: list[tuple[str, Path]] = []
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if relative == FETCH_RECORD or not path.is_file():
                continue
            found.append((relative, path))
    return found


def path_digest(path: Path) -> str:
    """`sha256:<hex>` of a file, or the directory digest of a directory."""
    if path.is_dir():
        return tree_digest((relative, file_sha256(file)) for relative, file in tree_files(path))
    if path.is_file():
        return "sha256:" + file_sha256(path)
    raise FileNotFoundError(f"{path} is neither a file nor a directory")
