"""Child processes as PID 1 sees them: the engine, restored trees that reparent to us, and zombies.

The supervisor marks itself a child subreaper, so a tree CRIU restores (`restore -d`: CRIU's child,
orphaned when CRIU exits) becomes our child wherever the supervisor runs, and orphans from inside the
engine come to us to be reaped. Reaping uses waitpid(-1), which would also steal the exit status of a
subprocess (criu, unshare) being waited on elsewhere: `children_lock` is held around every spawn of
such a subprocess and by the reaper, so the two never overlap.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ember_checkpoint.criu import process_tree

_PR_SET_CHILD_SUBREAPER = 36

children_lock = threading.RLock()


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def raise_next_pid(floor: int, ns_last_pid: Path = NS_LAST_PID) -> bool:
    """Make the next process of this pid namespace get a pid >= floor (False when not allowed).

    CRIU restores the engine's tree with its dumped pids (and thread ids). In a container the
    supervisor is PID 1 and a new container's supervisor, its threads and CRIU itself take the low
    pids: an engine started above `floor` leaves them free, so its image restores in any new
    container of the replica (the canary restore gets a fresh pid namespace anyway)."""
    try:
        if int(ns_last_pid.read_text()) >= floor - 1:
            return True
        ns_last_pid.write_text(str(floor - 1))
    except OSError:
        # Docker and containerd mount /proc/sys read-only; a fresh procfs of this pid namespace
        # (CAP_SYS_ADMIN) has a writable one.
        return ns_last_pid == NS_LAST_PID and _write_through_fresh_proc(floor - 1)
    except ValueError:
        return False
    return True


def _write_through_fresh_proc(value: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    with tempfile.TemporaryDirectory(prefix="ember-proc-") as d:
        if libc.mount(b"proc", d.encode(), b"proc", 0, None) != 0:
            return False
        try:
            Path(d, "sys/kernel/ns_last_pid").write_text(str(value))
            return True
        except OSError:
            return False
        finally:
            libc.umount2(d.encode(), 2)  # MNT_DETACH


# Set in the engine's environment unless already set there. The engine is checkpointed and restored:
# PyTorch's ProcessGroupNCCL heartbeat monitor (one thread per process group, also vLLM's one-GPU
# group) polls the TCPStore for another rank's "dump" flag every second while
# TORCH_NCCL_DUMP_ON_TIMEOUT is on (its default); a restored engine's store connection is broken, so
# it logged `sendBytes failed ... Broken pipe` and `Failed to check the "should dump" flag on
# TCPStore` once a second, forever. Off, the monitor never polls the store; its watchdog-hang check
# (TORCH_NCCL_ENABLE_MONITORING) stays on.
ENGINE_ENV_DEFAULTS = {"TORCH_NCCL_DUMP_ON_TIMEOUT": "0"}


def engine_env(env: dict[str, str] | None = None) -> dict[str, str]:
    out = dict(os.environ if env is None else env)
    for k, v in ENGINE_ENV_DEFAULTS.items():
        out.setdefault(k, v)
    return out


def start_engine(
    argv: list[str], log: Path, env: dict[str, str] | None = None, pid_floor: int | None = None
) -> int:
    """Start the engine in its own session with stdio in a file: CRIU can dump neither a pipe to a
    process outside the tree nor a tree whose session leader is outside it. With `pid_floor`, its
    pids start there (see `raise_next_pid`). The environment is `env` (default: ours) with
    ENGINE_ENV_DEFAULTS where unset."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with children_lock, open(os.devnull) as devnull, log.open("ab") as out:
        if pid_floor is not None and not raise_next_pid(pid_floor):
            logging.getLogger("ember.supervisor").warning(
                f'{{"event": "engine_pid_floor_not_set", "floor": {pid_floor}, "file": "{NS_LAST_PID}"}}'
            )
        proc = subprocess.Popen(
            argv, stdin=devnull, stdout=out, stderr=out, start_new_session=True, env=engine_env(env)
        )
    # Popen's own bookkeeping is dropped: the reaper owns the exit status from here on.
    proc.returncode = 0
    return proc.pid


def reap(engine_pid: int | None) -> int | None:
    """Reap every exited child; returns the engine's wait status if the engine was among them."""
    status = None
    if not children_lock.acquire(blocking=False):
        return None
    try:
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == engine_pid:
                status = st
    finally:
        children_lock.release()
    return status


def terminate(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the engine's process group and every process of its tree, then SIGKILL what is left
    after the grace period; returns once the whole tree is gone (its orphans reparent to us, the
    subreaper, and are reaped here), not only its root."""
    tree = process_tree(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        for p in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            with children_lock:
                _reap_all()
            if not any(running(p) for p in tree):
                # one that died after that reap is a zombie, "not running" but holding its pid
                # (a restore of this checkpoint needs that pid): reap once more, as the subreaper
                with children_lock:
                    _reap_all()
                return
            time.sleep(0.05)


def _reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def running(pid: int, proc: Path = Path("/proc")) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
