"""The supervisor stops the engine's whole tree, not only its root (real processes)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from ember_checkpoint.criu import process_tree
from ember_supervisor import procs

# a root whose child ignores SIGTERM and outlives it: only SIGKILL after the grace period stops it
_TREE = "trap '' TERM; sh -c \"trap '' TERM; sleep 60 & wait\" & sleep 60 & wait"


def test_terminate_returns_only_when_every_process_of_the_tree_is_gone() -> None:
    root = subprocess.Popen(["sh", "-c", _TREE], start_new_session=True)
    root.returncode = 0  # the reaper in procs owns the exit status, as for a real engine
    deadline = time.monotonic() + 5
    while len(process_tree(root.pid)) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    tree = process_tree(root.pid)
    assert len(tree) >= 4, tree
    t0 = time.monotonic()
    procs.terminate(root.pid, grace_s=0.5)
    assert time.monotonic() - t0 >= 0.5  # SIGTERM was ignored: it waited, then killed
    assert not any(procs.running(p) for p in tree)


def test_running_is_false_for_a_zombie_and_a_missing_pid() -> None:
    p = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while procs.running(p.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not procs.running(p.pid)  # exited, not yet reaped: a zombie
    p.wait()
    assert not procs.running(p.pid)


def test_the_engine_pid_floor_only_ever_raises_the_next_pid(tmp_path: Path) -> None:
    f = tmp_path / "ns_last_pid"
    f.write_text("41\n")
    assert procs.raise_next_pid(10000, f) and f.read_text() == "9999"
    f.write_text("12345\n")
    assert procs.raise_next_pid(10000, f) and f.read_text() == "12345\n"  # already above: untouched
    assert not procs.raise_next_pid(10000, tmp_path / "missing")
