#!/usr/bin/env bash
# The README's first command: installs what is missing, then runs `modeldeploy demo` (arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh
exec python3 -m modeldeploy demo "$@"
