"""A restored tree gets its GPU state back before anything can send it work (real CRIU, the driver
replaced at our own seam: there is no GPU here; the GPU run is in docs/benchmarks-gpu.md).

On the H200 a restore through the injected supervisor failed with CUDA_ERROR_OPERATING_SYSTEM: CRIU
had let the whole tree run, a client polling the port reached the restored API server, which handed
the request to EngineCore, and EngineCore's first CUDA call, before the driver had given it its GPU
state back, segfaulted. Here a two-process tree (a parent that serves HTTP, as vLLM's API server
does, and a child, as its EngineCore) is dumped and restored with both marked as GPU processes; the
stand-in driver looks at the tree each time it is asked to resume one: the child must be first, and
while it is resumed the parent must be stopped and its port must not answer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ember_checkpoint import cuda, lifecycle
from ember_checkpoint.criu import Criu, process_tree
from ember_checkpoint.manifest import Canary, Identity
from ember_checkpoint.storage import LocalDirStorage
from ember_checkpoint.testing import free_port, wait_up

pytestmark = pytest.mark.integration

PARENT = """
import http.server, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(0.05)"])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        data = str(child.pid).encode()
        self.send_response(200); self.send_header("content-length", str(len(data))); self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def state(pid: int) -> str:
    """The process's state letter from /proc: T = stopped."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


class Driver:
    """Records, at each resume, the state of every process of the tree and whether the port answers."""

    def __init__(self, root: int, port: int) -> None:
        self.root, self.port, self.seen = root, port, []  # type: ignore[var-annotated]

    def resume(self, pid: int) -> float:
        try:
            answered = httpx.get(f"http://127.0.0.1:{self.port}/", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            answered = False
        self.seen.append((pid, {p: state(p) for p in sorted(process_tree(self.root))}, answered))
        return 0.0

    def state(self, pid: int) -> cuda.ProcessState:
        return cuda.ProcessState.RUNNING


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    with open(os.devnull) as devnull, (tmp_path / "tree.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(port)],
            stdin=devnull,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    wait_up(port)
    yield proc, port
    if proc.poll() is None:
        lifecycle.kill_tree(proc.pid)


def test_gpu_processes_resume_deepest_first_while_the_rest_is_stopped(
    tree: tuple[subprocess.Popen[bytes], int], tmp_path: Path, criu: Criu, identity: Identity
) -> None:
    proc, port = tree
    child = int(httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text)
    storage = LocalDirStorage(tmp_path / "checkpoints")
    req = lifecycle.DumpRequest(
        pid=proc.pid, checkpoint_id="t1", identity=identity, engine_port=port, canary=Canary(path="/")
    )
    lifecycle.dump(req, storage, criu, gpu=None)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10  # the child, reparented when its parent died, is reaped by init
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    m = storage.read_manifest("t1")
    # both processes as GPU processes, in the order the dump records them (sorted pids: parent first)
    storage.write_manifest("t1", m.model_copy(update={"gpu_pids": sorted([proc.pid, child])}))
    drv = Driver(proc.pid, port)
    res = lifecycle.restore(
        "t1",
        storage,
        identity,
        criu_finder=lambda: criu,
        gpu=drv,
        require_verified=False,  # type: ignore[arg-type]
    )
    try:
        assert [pid for pid, _, _ in drv.seen] == [child, proc.pid]  # the deepest first
        _, states, answered = drv.seen[0]
        assert states[proc.pid] == "T", f"the parent ran while the child got its GPU state back: {states}"
        assert states[child] != "T", states  # the one being resumed runs (the driver needs its thread)
        assert not answered, "the port answered before the GPU state was back"
        _, states, _ = drv.seen[1]
        assert states[child] != "T" and states[proc.pid] != "T", states
        # afterwards every process runs and the server answers as it did
        assert all(state(p) != "T" for p in process_tree(res.pid))
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == str(child)
        assert "cuda_restore" in res.phases_s
    finally:
        lifecycle.kill_tree(res.pid)
