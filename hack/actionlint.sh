#!/usr/bin/env bash
# Checks every GitHub Actions workflow (the repository's and the examples') with actionlint, built from Go modules
# on first use and cached outside the repository (hack/go-tool.sh). actionlint also runs shellcheck on `run:`
# scripts when shellcheck is installed (it is on GitHub's runners; Debian package `shellcheck`).
set -euo pipefail
cd "$(dirname "$0")/.."

actionlint=$(bash hack/go-tool.sh actionlint)
mapfile -t workflows < <(
  find .github/workflows examples -type f \( -name '*.yaml' -o -name '*.yml' \) \
    \( -path '.github/workflows/*' -o -path '*/.github/workflows/*' \) | sort
)
[ "${#workflows[@]}" -gt 0 ] || { echo "error: no workflows found" >&2; exit 1; }
"$actionlint" "$@" "${workflows[@]}"
echo "actionlint: ${#workflows[@]} workflows pass"
