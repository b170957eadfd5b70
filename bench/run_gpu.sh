#!/usr/bin/env bash
# Runs the GPU start-path benchmark on the device machine, in steps that fit its limits (64 MiB carried
# per call, 10 min per command, files kept only while the machine stays warm). From the repo root:
#   step a (carry .carry/a): unpack CRIU, vLLM's Python files, flash-attn 3 and the wheels it lacks;
#            check the environment; build the random Llama-3-8B-shaped model; measure the floor.
#   step b (carry .carry/b): add vLLM's _C kernels; then the named phases of bench/gpu_start_paths.py
#   e.g.  bash bench/run_gpu.sh a ;  bash bench/run_gpu.sh b cold sleep ;  bash bench/run_gpu.sh p criu criu-sleep
# bench/pack_carry.sh fills .carry/ here (a machine that reaches PyPI and Debian).
set -uo pipefail
W=${EMBER_BENCH_WORK:-/tmp/ember-bench}
OUT=${OUT:-$W/out}
mkdir -p "$W/site" "$W/results" "$W/logs" "$OUT"
# the code that runs: this checkout, or a carried copy of one (EMBER_BENCH_SRC=.carry/NAME: the device
# gets the lead's checkout, so a branch's code travels as a carry path of its own)
SRC=${EMBER_BENCH_SRC:-$PWD}
# the carried dependencies: .carry/{a,b,c}, or EMBER_BENCH_CARRY/{a,b,c} (a helper's own copy beside others')
C=${EMBER_BENCH_CARRY:-.carry}
export PYTHONPATH=$W/site:$SRC/checkpoint/src:$SRC/supervisor/src PYTHONUNBUFFERED=1 EMBER_CRIU=$W/criu
# phase inject: the ember-checkpoint and ember-supervisor wheels the operator image installs (pack_carry.sh)
export EMBER_BENCH_INJECT_WHEELS=${EMBER_BENCH_INJECT_WHEELS:-$PWD/$C/b/inject-wheels}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# CRIU cannot dump an io_uring; on the GPU the EngineCore opened one (source not identified): refuse new
# io_urings in this VM so every user falls back (libuv to epoll). Kernel 6.6+.
[ "${EMBER_BENCH_NO_IOURING:-1}" = 1 ] && sysctl -w kernel.io_uring_disabled=2
step=$1; shift
t0=$(date +%s)
case "$step" in
a)
  nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max --format=csv
  uname -r; nproc; free -g | sed -n 1,2p; df -h /tmp | tail -1
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$W/site" $C/a/deps/*.whl || exit 1
  tar -C "$W/site" -xJf $C/a/vllm_py.tar.xz && xz -dc $C/a/fa3.so.xz > "$W/site/vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so"
  mkdir -p "$W/criu" && tar -C "$W/criu" -xJf $C/a/criu.tar.xz
  "$W/criu/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$W/criu/usr/lib/x86_64-linux-gnu" "$W/criu/usr/sbin/criu" check 2>&1 | tail -5
  [ "${EMBER_BENCH_PROBE:-1}" = 1 ] && python3 $SRC/bench/import_probe.py 2>&1 | tail -25
  python3 $SRC/bench/build_model.py "$W/model" || exit 1
  [ "${EMBER_BENCH_FLOOR:-1}" = 1 ] && python3 $SRC/bench/gpu_start_paths.py floor --out "$W/results"
  ;;
b)
  [ -d $C/c ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$W/site" $C/c/*.whl
  if [ -f $C/b/C.so.xz ]; then xz -dc $C/b/C.so.xz > "$W/site/vllm/_C_stable_libtorch.abi3.so"; fi
  timeout 560 python3 $SRC/bench/gpu_start_paths.py env "$@" --out "$W/results" 2>&1 | tee "$OUT/log-$(date +%H%M%S).txt"
  ;;
p)  # phases only, everything already unpacked on this (warm) machine
  [ -d $C/c ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$W/site" $C/c/*.whl
  timeout 560 python3 $SRC/bench/gpu_start_paths.py "$@" --out "$W/results" 2>&1 | tee "$OUT/log-$(date +%H%M%S).txt"
  ;;
esac
cp "$W"/results/*.json "$W"/results/*.txt "$OUT"/ 2>/dev/null
tar -C "$W/logs" -czf "$OUT/engine-logs.tgz" . 2>/dev/null
echo "step $step took $(( $(date +%s) - t0 )) s"
