"""A dumped tree's root is a zombie until reaped: the lifecycle must not take it for a live engine."""

from __future__ import annotations

import os
import time

from ember_checkpoint.lifecycle import _alive, parse_state


def test_parse_state_with_odd_comm() -> None:
    assert parse_state("42 (a (b) c) Z 1 42 42 0 -1") == "Z"
    assert parse_state("7 (python3) S 1 7 7 0 -1") == "S"


def test_zombie_is_not_alive() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _alive(pid)  # exited, not yet reaped: a zombie
    finally:
        os.waitpid(pid, 0)
    assert not _alive(pid)
    assert _alive(os.getpid())
