"""Supervised child processes: each in its own process group, logging to a file, stopped cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class ComponentFailed(RuntimeError):
    """A component could not be built or started; the message names it and its log file."""

    def __init__(self, component: str, log: Path | str, detail: str = "") -> None:
        tail = ""
        try:
            lines = Path(log).read_text(errors="replace").splitlines()[-15:]
            tail = "\n  | " + "\n  | ".join(lines) if lines else ""
        except OSError:
            pass
        super().__init__(f"{component} failed{': ' + detail if detail else ''}; read {log}{tail}")
        self.component = component
        self.log = Path(log)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


def spawn(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    if not os.access(argv[0], os.X_OK):
        raise ComponentFailed(name, log, f"binary {argv[0]} is missing (run `make cluster-binaries`)")
    fh = open(log, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    fh.write(f"\n=== {time.strftime('%F %T')} {' '.join(argv)}\n".encode())
    fh.flush()
    p = subprocess.Popen(
        argv,
        stdout=fh,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped as a whole, never orphaned
        env={**os.environ, **(env or {})},
    )
    fh.close()
    return Proc(name, p, log)


def wait_until(proc: Proc | None, what: str, check: Callable[[], bool], timeout_s: float, log: Path) -> None:
    """Poll `check` until it is true; fail fast with the log if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise ComponentFailed(what, log, f"exited with code {proc.popen.returncode} while starting")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise ComponentFailed(what, log, f"not ready after {timeout_s:.0f}s")


def stop_pid(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the process group of `pid`, then SIGKILL it if it has not gone after `grace_s`."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        try:  # reap if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
