#!/usr/bin/env bash
# Installs everything modeldeploy needs and runs every check: lint, types, layering, workflows, unit and end-to-end
# tests.
# Python tools run from the project's virtual environment .venv (hack/install-deps.sh creates it).
# The end-to-end tests start a real local control plane (built from Go modules on first use, then cached).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

command -v go >/dev/null || { echo "error: Go >= 1.26 is needed to build the local control plane" >&2; exit 1; }

step "dependencies: the virtual environment .venv (requirements/dev.lock), Prometheus"
bash hack/install-deps.sh
bin=.venv/bin

step "lint (ruff), types (mypy), layering (import-linter)"
"$bin/ruff" check operator tests hack examples
"$bin/ruff" format --check operator tests hack examples
"$bin/mypy"
"$bin/mypy" --config-file tests/mypy.ini tests
"$bin/lint-imports"

step "workflows (actionlint, built from Go modules and cached under ${MODELDEPLOY_CACHE:-~/.cache/modeldeploy})"
bash hack/actionlint.sh

step "control plane binaries (cached under ${MODELDEPLOY_CACHE:-~/.cache/modeldeploy})"
"$bin/modeldeploy-dev" cluster build

step "tests"
set +e
"$bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests; the suite is broken or over-filtered" >&2
fi
exit "$status"
