#!/usr/bin/env bash
# Pins the development and test dependencies in requirements/dev.lock: pyproject.toml's runtime dependencies, the
# extras in EXTRAS and the `dev` dependency group. Run it after changing any dependency in pyproject.toml; a unit test fails
# while the lock misses one. Existing pins are kept unless you pass --upgrade (or --upgrade-package NAME).
# The lock is universal (any OS and architecture) for Python >= 3.11; hack/install-deps.sh installs with it.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
EXTRAS=(server aws onnx report)
bash hack/install-deps.sh --python-only
.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
.venv/bin/uv pip compile pyproject.toml \
  "${EXTRAS[@]/#/--extra=}" --group dev --universal --python-version 3.11 --quiet \
  --custom-compile-command "bash hack/lock.sh" -o requirements/dev.lock "$@"
echo "requirements/dev.lock updated; commit it with the pyproject.toml change"
