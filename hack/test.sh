#!/usr/bin/env bash
# Installs everything modeldeploy needs and runs every check: lint, types, layering, unit and end-to-end tests.
# The end-to-end tests start a real local control plane (built from Go modules on first use, then cached).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

command -v go >/dev/null || { echo "error: Go >= 1.26 is needed to build the local control plane" >&2; exit 1; }

step "dependencies: Python packages, Prometheus"
bash hack/install-deps.sh

step "lint (ruff), types (mypy), layering (import-linter)"
ruff check operator tests hack
ruff format --check operator tests hack
mypy
lint-imports

step "control plane binaries (cached under ${MODELDEPLOY_CACHE:-~/.cache/modeldeploy})"
python3 -m modeldeploy cluster build

step "tests"
set +e
python3 -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests; the suite is broken or over-filtered" >&2
fi
exit "$status"
