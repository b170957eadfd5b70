"""The canary restore's scratch place: run as PID 1 of fresh pid, network and mount namespaces.

`python -m ember_checkpoint.scratch REQUEST_JSON` is started by `verify` under
`unshare --pid --net --mount --fork --mount-proc`. There the image's pids and port are free even while
the original engine still runs on the host, and nothing the canary does can reach the outside. It
brings the loopback up, mounts a private /dev/shm holding the image's shm files (see `shm`),
CRIU-restores the image, resumes GPU state, runs the manifest's after-restore steps (the wake of
an image dumped asleep), asks the canary request until the engine answers, prints
one JSON line {ok, output, error, restore_s, first_answer_s} and exits; exiting as PID 1 makes the
kernel kill every restored process, so there is nothing to clean up.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import socket
import struct
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from ember_checkpoint import cuda, engine_http, shm
from ember_checkpoint.criu import Criu, CriuFailed, NetworkLock
from ember_checkpoint.manifest import Canary, HttpStep
from ember_checkpoint.resume import resume_tree

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


class ScratchRequest(BaseModel):
    criu_argv: list[str]
    criu_version: tuple[int, int, int]
    criu_network_lock: NetworkLock = "iptables"
    images: str
    log_dir: str
    shell_job: bool
    engine_port: int
    canary: Canary
    gpu_pids: list[int] = []
    # what the restored engine needs before it serves (the manifest's `after_restore`: an image dumped
    # asleep is woken, and at level 2 its weights re-read), run before the canary as a restore runs them
    after_restore: list[HttpStep] = []
    timeout_s: float = 300.0


class ScratchResult(BaseModel):
    ok: bool
    output: str | None = None
    error: str | None = None
    restore_s: float | None = None
    first_answer_s: float | None = None


def loopback_up() -> None:
    # ioctl instead of `ip link set lo up`: the replica image need not ship iproute2.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, b""))


def private_shm() -> None:
    """A fresh tmpfs on /dev/shm in this mount namespace (unshare makes mounts private): the canary
    engine gets the image's own /dev/shm files, never those of the engine still running outside."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tmpfs", str(shm.SHM).encode(), b"tmpfs", 0, b"mode=1777") != 0:
        raise OSError(ctypes.get_errno(), f"mount tmpfs on {shm.SHM}")


def run(req: ScratchRequest) -> ScratchResult:
    loopback_up()
    try:
        private_shm()
        shm.reinstate(Path(req.images))
    except OSError as e:
        return ScratchResult(ok=False, error=f"scratch /dev/shm: {e}")
    criu = Criu(argv=req.criu_argv, version=req.criu_version, network_lock=req.criu_network_lock)
    logs = Path(req.log_dir)
    t0 = time.monotonic()
    try:
        gpu = cuda.load() if req.gpu_pids else None
        if req.gpu_pids and gpu is None:
            return ScratchResult(ok=False, error="the image holds GPU state and there is no CUDA driver here")
        root = criu.restore(
            Path(req.images),
            logs / "canary-restore.log",
            logs / "canary.pid",
            shell_job=req.shell_job,
            timeout_s=req.timeout_s,
            leave_stopped=True,
        )
        resume_tree(root, gpu, req.gpu_pids)  # GPU state first, as a restore does
    except (CriuFailed, cuda.CudaError) as e:
        return ScratchResult(ok=False, error=str(e)[-2000:])
    restore_s = time.monotonic() - t0
    base = f"http://127.0.0.1:{req.engine_port}"
    deadline = time.monotonic() + req.timeout_s
    if req.after_restore:
        try:
            engine_http.run_steps(base, req.after_restore, req.timeout_s)
        except Exception as e:  # noqa: BLE001 - a wake that fails is the verify's failure, said as such
            return ScratchResult(
                ok=False, error=f"after-restore steps failed: {e}"[-2000:], restore_s=restore_s
            )
    while True:
        try:
            output = engine_http.run_canary(base, req.canary)
            return ScratchResult(
                ok=True, output=output, restore_s=restore_s, first_answer_s=time.monotonic() - t0
            )
        except Exception as e:  # connection refused while the engine comes up, or its answer
            if time.monotonic() > deadline:
                return ScratchResult(ok=False, error=f"canary got no answer: {e}", restore_s=restore_s)
            time.sleep(0.05)


def main() -> None:
    req = ScratchRequest.model_validate_json(sys.argv[1])
    print(json.dumps(run(req).model_dump()), flush=True)


if __name__ == "__main__":
    main()
