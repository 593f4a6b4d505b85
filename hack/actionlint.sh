#!/usr/bin/env bash
# Checks every GitHub Actions workflow (the repository's and the examples') with actionlint, built from Go modules
# on first use and cached outside the repository, like the control plane's binaries. actionlint also runs
# shellcheck on `run:` scripts when shellcheck is installed (it is on GitHub's runners; Debian package `shellcheck`).
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_VERSION=1.7.12
CACHE="${MODELDEPLOY_CACHE:-$HOME/.cache/modeldeploy}"
BIN="$CACHE/bin/actionlint-$ACTIONLINT_VERSION"

if [ ! -x "$BIN/actionlint" ]; then
  command -v go >/dev/null || { echo "error: Go is needed to build actionlint" >&2; exit 1; }
  echo "[actionlint] v$ACTIONLINT_VERSION: go install (cached in $BIN)" >&2
  mkdir -p "$BIN"
  GOBIN="$BIN" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
    "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
fi

mapfile -t workflows < <(
  find .github/workflows examples -type f \( -name '*.yaml' -o -name '*.yml' \) \
    \( -path '.github/workflows/*' -o -path '*/.github/workflows/*' \) | sort
)
[ "${#workflows[@]}" -gt 0 ] || { echo "error: no workflows found" >&2; exit 1; }
"$BIN/actionlint" "$@" "${workflows[@]}"
echo "actionlint: ${#workflows[@]} workflows pass"
