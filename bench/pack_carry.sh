#!/usr/bin/env bash
# Fills .carry/a and .carry/b (ignored, <= 64 MiB each) with what the GPU machine lacks for
# bench/run_gpu.sh: vLLM 0.25.1 split in two (its 76 MB _C kernels alone in b), its missing pure-Python
# and small binary dependencies, and CRIU 4.2.1 from Debian sid. Run here (PyPI and Debian reachable).
# Left out on purpose: flashinfer, tilelang, cutlass-dsl, quack, humming, torchcodec, PyNvVideoCodec
# (GBs; imported lazily, and VLLM_USE_FLASHINFER_SAMPLER=0 keeps the sampler off flashinfer), FA2 and
# the MoE kernels (FA3 serves Hopper; a dense model needs no MoE), the Rust frontend binary.
set -euo pipefail
cd "$(dirname "$0")/.."
# .whl/ and .carry/ must stay out of git (and so travel only when carried); .gitignore says so. In a
# worktree .git is a file, so the exclude file is found through git, and written only when needed.
for d in .whl .carry; do
  if ! git check-ignore -q "$d/x"; then
    excl=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$excl")"; echo "/$d/" >> "$excl"
  fi
done
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64
      --platform manylinux_2_5_x86_64 --platform manylinux_2_31_x86_64)
dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" "$@"; }
mkdir -p .whl .carry/a/deps .carry/b
dl -d .whl vllm==0.25.1
DEPS=(annotated-types astor blake3 cachetools cbor2 cffi "compressed-tensors==0.17.0" "depyf==0.20.0" dill
  "diskcache==5.6.3" distro "fastapi>=0.133,<0.137" httptools ijson interegular jiter jmespath jsonschema
  jsonschema-specifications "lark==1.2.2" "llguidance>=1.7,<1.8" "lm-format-enforcer==0.11.3" loguru
  mistral-common model-hosting-container-standards msgspec "openai>=2,<3" openai-harmony "outlines-core==0.2.14"
  partial-json-parser prometheus-fastapi-instrumentator pybase64 pycparser pydantic pydantic-core
  pydantic-extra-types python-dotenv python-json-logger python-multipart pyzmq referencing rpds-py
  setproctitle sniffio starlette supervisor typing-inspection uvicorn watchfiles websockets
  "xgrammar==0.2.8" "apache-tvm-ffi>=0.1.11,<0.2")
dl -d .carry/a/deps "${DEPS[@]}"
tmp=$(mktemp -d); (cd "$tmp" && unzip -q "$OLDPWD"/.whl/vllm-0.25.1-*.whl)
rm -f "$tmp"/vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so "$tmp"/vllm/_moe_C_stable_libtorch.abi3.so "$tmp"/vllm/vllm-rs \
  "$tmp"/vllm/third_party/deep_gemm/_C.cpython-31[01345]*
xz -T0 -6 -c "$tmp"/vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so > .carry/a/fa3.so.xz
xz -T0 -6 -c "$tmp"/vllm/_C_stable_libtorch.abi3.so > .carry/b/C.so.xz
rm "$tmp"/vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so "$tmp"/vllm/_C_stable_libtorch.abi3.so
tar -C "$tmp" -cJf .carry/a/vllm_py.tar.xz vllm vllm-0.25.1.dist-info
rm -rf "$tmp"
# phase inject: the two pure-Python wheels the operator image installs before laying out the tree
rm -rf .carry/b/inject-wheels
"${UV:-$HOME/.local/bin/uv}" build --package ember-checkpoint --wheel -q -o .carry/b/inject-wheels
"${UV:-$HOME/.local/bin/uv}" build --package ember-supervisor --wheel -q -o .carry/b/inject-wheels
bash tests/cluster/fetch-tools.sh criu
tar -C "$(readlink -f "${EMBER_CACHE:-$HOME/.cache/ember}/deb/criu/current")" -cJf .carry/a/criu.tar.xz .
du -sh .carry/a .carry/b
