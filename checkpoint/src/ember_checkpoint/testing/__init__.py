"""Helpers for tests that run real processes under real CRIU (no fakes here): a small stateful HTTP
server started the way the supervisor starts an engine, and the HTTP/port probes the tests use."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_TEST_PORT = 10000


def ephemeral_low(path: Path = EPHEMERAL_RANGE) -> int:
    """The lowest port the kernel hands out for a bind to port 0 or an outgoing connection."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A free port below the kernel's ephemeral range, so it cannot be one the kernel chose.

    A checkpointed engine holds listening sockets on ports the kernel chose (vLLM's internal
    listeners, a dozen of them, are in that range even with VLLM_PORT set). After that engine is gone, a bind to port 0 may
    hand the same port to the next test's supervisor, and the restore then fails on it
    ("Can't bind inet socket: Address already in use"); in a pod the supervisor's port is fixed,
    below that range. Ports here come from [10000, the range's start), checked free."""
    return _free_in(LOWEST_TEST_PORT, max(ephemeral_low(), LOWEST_TEST_PORT + 1000))


def _free_in(lo: int, hi: int) -> int:
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(lo, hi)
        if all(_bindable(host, port) for host in ("127.0.0.1", "0.0.0.0")):
            return port
    raise RuntimeError(f"no free port in [{lo}, {hi}) after 200 tries")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_is_free(port: int) -> bool:
    """True when nothing listens on the port (SO_REUSEADDR: TIME_WAIT leftovers do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_up(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(f"server on port {port} did not come up in {timeout_s}s")


def get(port: int, path: str) -> str:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5.0).text


def counter_server_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "ember_checkpoint.testing.counter_server", str(port)]


class CounterEngine:
    """The counter server in its own session with stdio in files, as the supervisor starts engines:
    CRIU cannot dump a pipe to a process outside the tree, nor a tree whose session leader is outside."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        with open(os.devnull) as devnull, log.open("ab") as out:
            self.proc = subprocess.Popen(
                counter_server_argv(self.port), stdin=devnull, stdout=out, stderr=out, start_new_session=True
            )
        wait_up(self.port)

    @property
    def pid(self) -> int:
        return self.proc.pid
