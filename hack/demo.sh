#!/usr/bin/env bash
# The README's first command: installs what is missing (into the project's .venv), then runs
# `modeldeploy-dev demo` (arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh
exec .venv/bin/modeldeploy-dev demo "$@"
