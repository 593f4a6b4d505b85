#!/usr/bin/env bash
# Builds a pinned Go tool from Go modules on first use, caches it outside the repository like the control plane's
# binaries, and prints its path:  bash hack/go-tool.sh actionlint|yq
#   actionlint checks the GitHub Actions workflows (hack/actionlint.sh);
#   yq (mikefarah's) is what the GitOps example's workflow edits YAML with, as GitHub's runners ship it; the
#   example's test runs the workflow's own script with it.
set -euo pipefail

case "${1:-}" in
  actionlint) module=github.com/rhysd/actionlint/cmd/actionlint version=1.7.12 ;;
  yq) module=github.com/mikefarah/yq/v4 version=4.54.3 ;;
  *) echo "usage: $0 actionlint|yq" >&2; exit 2 ;;
esac
bin="${MODELDEPLOY_CACHE:-$HOME/.cache/modeldeploy}/bin/$1-$version"

if [ ! -x "$bin/$1" ]; then
  command -v go >/dev/null || { echo "error: Go is needed to build $1" >&2; exit 1; }
  echo "[$1] v$version: go install (cached in $bin)" >&2
  mkdir -p "$bin"
  GOBIN="$bin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$module@v$version" >&2
fi
echo "$bin/$1"
