#!/usr/bin/env bash
# Builds a local Kubernetes control plane from Go modules and caches it outside the repository.
# Output: $MODELDEPLOY_CACHE/bin/k8s-$K8S_VERSION/{etcd,kube-apiserver,kube-controller-manager,
#         kube-scheduler,kubectl,kwok,helm}. A warm cache rebuilds nothing.
set -euo pipefail

# Versions are pinned in modeldeploy_dev/cluster.py (VERSIONS); `modeldeploy-dev cluster build` passes them.
: "${K8S_VERSION:?run through modeldeploy-dev cluster build}" "${ETCD_VERSION:?}" "${KWOK_VERSION:?}" "${HELM_VERSION:?}"
CACHE="${MODELDEPLOY_CACHE:-$HOME/.cache/modeldeploy}"
BIN="$CACHE/bin/k8s-$K8S_VERSION"
WORK="$CACHE/build"

step() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not installed. Install Go >= 1.26 and retry."
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
[ "${go_minor:-0}" -ge 26 ] || die "Go >= 1.26 is needed (found $(go env GOVERSION))."

mkdir -p "$BIN" "$WORK"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0

have() { for b in "$@"; do [ -x "$BIN/$b" ] || return 1; done; }

# Fails early, with a clear reason, when the module proxy cannot be reached.
check_proxy() {
  local probe
  step "checking the Go module proxy ($(go env GOPROXY))"
  probe=$(cd "$WORK" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" 2>&1) \
    || die "cannot download k8s.io/kubernetes@v$K8S_VERSION from the Go module proxy ($(go env GOPROXY)): $probe"
}

build_kubernetes() {
  have kube-apiserver kube-controller-manager kube-scheduler kubectl && { step "kubernetes v$K8S_VERSION: cached"; return; }
  local dir="$WORK/k8s-$K8S_VERSION" upstream_mod
  mkdir -p "$dir"
  upstream_mod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's|.*"GoMod": "\(.*\)".*|\1|p')
  step "kubernetes v$K8S_VERSION: writing wrapper module (staging replaces from the tag's own go.mod)"
  {
    echo "module local/k8s-bins"
    echo
    grep -E '^go [0-9.]+$' "$upstream_mod"
    grep -E '^godebug ' "$upstream_mod" || true
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*|\1|p' "$upstream_mod" \
      | while read -r m; do echo "	$m => $m v0.${K8S_VERSION#1.}"; done
    echo ")"
  } > "$dir/go.mod"
  printf 'package tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n)\n' > "$dir/tools.go"
  step "kubernetes v$K8S_VERSION: resolving modules (first run downloads several hundred MB)"
  (cd "$dir" && go mod tidy >/dev/null)
  local ldflags="" pkg
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X '$pkg.gitVersion=v$K8S_VERSION' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)'"
    ldflags+=" -X '$pkg.gitTreeState=clean'"
  done
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$BIN/$cmd" ] && { step "$cmd: cached"; continue; }
    step "$cmd: compiling (a cold build takes several minutes)"
    (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  done
}

build_etcd() {
  have etcd && { step "etcd v$ETCD_VERSION: cached"; return; }
  local dir="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  step "etcd v$ETCD_VERSION: wrapper module"
  printf 'module local/etcd-bin\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "$ETCD_VERSION" > "$dir/go.mod"
  printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\n' > "$dir/tools.go"
  (cd "$dir" && go mod tidy >/dev/null) || die "cannot resolve go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  step "etcd v$ETCD_VERSION: compiling"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

go_install() { # name module-path version
  have "$1" && { step "$1 v$3: cached"; return; }
  step "$1 v$3: go install"
  GOBIN="$WORK/gobin-$1-$3" go install -trimpath -ldflags "-s -w" "$2@v$3" \
    || die "go install $2@v$3 failed"
  mv "$WORK/gobin-$1-$3/$1" "$BIN/$1"
}

started=$(date +%s)
have etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm || check_proxy
build_etcd
build_kubernetes
go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
step "done in $(( $(date +%s) - started ))s: $BIN"
echo "$BIN"
