#!/usr/bin/env bash
# Build the operator image locally (no registry): prints its tag, ember/operator:<content key>.
# The same image runs the activator (command `ember-activator`; charts/ember/templates/activator.yaml).
# The key covers uv.lock, the operator's sources and this folder, so an unchanged tree re-uses the
# image. The wheelhouse comes from the host's pip (which reaches PyPI), pinned by uv.lock.
# The image also holds the injected supervisor tree at /opt/ember-inject (ember_supervisor/inject.py:
# the supervisor, the checkpoint library, pure-Python fallbacks and CRIU's relocatable prefix), which
# the chart's replica pods copy in with an init container (EMBER_SUPERVISOR_IMAGE).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
uv=${UV:-$HOME/.local/bin/uv}
cd "$root"
bash images/docker-up.sh
bash tests/cluster/fetch-tools.sh criu >&2
criu=$(readlink -f "${EMBER_CACHE:-$HOME/.cache/ember}/deb/criu/current")
key=$( { cat uv.lock images/operator/Dockerfile images/operator/build.sh operator/pyproject.toml activator/pyproject.toml \
           checkpoint/pyproject.toml supervisor/pyproject.toml; basename "$criu"; \
         find operator/src activator/src checkpoint/src supervisor/src -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
           | sort -z | xargs -0 cat; } | sha256sum | cut -c1-12)
tag=ember/operator:$key
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi
base=$(bash images/rootfs.sh bookworm ember/python-base:bookworm python3 python3-venv ca-certificates)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
"$uv" export --frozen --package ember-activator --no-dev --no-hashes --no-emit-workspace -q -o "$ctx/requirements.txt" >&2
"$uv" build --package ember --wheel -q -o "$ctx/wheels" >&2
"$uv" build --package ember-activator --wheel -q -o "$ctx/wheels" >&2
"$uv" build --package ember-checkpoint --wheel -q -o "$ctx/inject-wheels" >&2
"$uv" build --package ember-supervisor --wheel -q -o "$ctx/inject-wheels" >&2
cp -a "$criu" "$ctx/criu"
"$uv" tool run --quiet pip download -q --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --platform any -d "$ctx/wheels" -r "$ctx/requirements.txt" >&2
cp images/operator/Dockerfile "$ctx/"
docker build -q --build-arg BASE="$base" -t "$tag" "$ctx" >&2
echo "$tag"
