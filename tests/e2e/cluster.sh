#!/usr/bin/env bash
# tests/e2e/cluster.sh up|down|guard|env|forensics
#   up     build (cached) the kind node image and create the one-node kind cluster `ember-e2e`,
#          kubeconfig in $EMBER_E2E_KUBECONFIG (default .ember/e2e/kubeconfig), then wait for Ready
#   down   delete it
#   guard  exit non-zero unless that kubeconfig's current context is kind-ember-e2e
#   env    print `export KUBECONFIG=...` and PATH lines for a shell (kind, kubectl)
#   forensics  `kind export logs` (node journal, kubelet, containers) into .ember/e2e/forensics/kind
# Works with no registry: every image the cluster runs is built locally (images/kind-node/build.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../cluster/versions.env
source "$repo/tests/cluster/versions.env"
cache=${EMBER_CACHE:-$HOME/.cache/ember}
name=ember-e2e
context=kind-$name
kubeconfig=${EMBER_E2E_KUBECONFIG:-$repo/.ember/e2e/kubeconfig}
kind=$cache/kind/$KIND_VERSION/kind
kubectl=$cache/k8s/$K8S_VERSION/kubectl
say() { echo "e2e-cluster: $*" >&2; }

guard() {
  local cur
  cur=$("$kubectl" --kubeconfig "$kubeconfig" config current-context 2>/dev/null || true)
  if [ "$cur" != "$context" ]; then
    say "refusing: the current context of $kubeconfig is '${cur:-none}', not $context"
    return 1
  fi
}

# grep reads to the end (no -q): an early exit would kill kind with SIGPIPE, failing under pipefail
exists() { "$kind" get clusters 2>/dev/null | grep -Fx "$name" >/dev/null; }

up() {
  local t0=$SECONDS image
  image=$(bash "$repo/images/kind-node/build.sh" | tail -1)
  say "node image $image ready after $((SECONDS - t0)) s"
  mkdir -p "$(dirname "$kubeconfig")"
  if exists; then
    say "cluster $name exists; reusing it"
    "$kind" export kubeconfig --name "$name" --kubeconfig "$kubeconfig" >/dev/null
  else
    local t1=$SECONDS
    # the docker shim adds --runtime=ember-runc to kind's privileged `docker run` (images/kind-node/runc-bounded)
    PATH=$repo/images/kind-node/docker-shim:$PATH "$kind" create cluster --name "$name" --image "$image" \
      --config "$here/kind-config.yaml" --kubeconfig "$kubeconfig" --wait 180s
    say "cluster created in $((SECONDS - t1)) s"
  fi
  "$kubectl" --kubeconfig "$kubeconfig" config use-context "$context" >/dev/null
  guard
  "$kubectl" --kubeconfig "$kubeconfig" wait --for=condition=Ready node --all --timeout=180s
  "$kubectl" --kubeconfig "$kubeconfig" -n kube-system rollout status deployment/coredns --timeout=180s
  say "ready: export KUBECONFIG=$kubeconfig (context $context); total $((SECONDS - t0)) s"
}

down() {
  if exists; then "$kind" delete cluster --name "$name" --kubeconfig "$kubeconfig"; else say "no cluster $name"; fi
  rm -f "$kubeconfig"
}

forensics() {
  local out=$repo/.ember/e2e/forensics
  mkdir -p "$out"
  exists && "$kind" export logs "$out/kind" --name "$name" >&2
  say "forensics in $out (the tests write events, pods, InferenceServices and operator logs there too)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  guard) guard ;;
  forensics) forensics ;;
  env) echo "export KUBECONFIG=$kubeconfig"; echo "export PATH=$(dirname "$kind"):$(dirname "$kubectl"):\$PATH" ;;
  *) echo "usage: $0 up|down|guard|env" >&2; exit 2 ;;
esac
