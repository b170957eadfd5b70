"""Checks before a dump that turn a CRIU failure deep in its log into a reason naming the cause.

io_uring: CRIU cannot dump one (`Unknown shit 600 (anon_inode:[io_uring])` in proc_parse.c, then
`Can't open PID's mapfile link`). A process holds one as a file descriptor whose link reads
`anon_inode:[io_uring]`, and maps its rings, which /proc/PID/maps names the same way. Seen on the
GPU EngineCore of vLLM 0.25 (docs/benchmarks-gpu.md); uvloop's libuv opens one too, which is why
engines run through `ember_checkpoint.vllm_entry` and the replica image sets UV_USE_IO_URING=0.
What turns it off for a library that cannot be told: the node's `sysctl kernel.io_uring_disabled=2`
(not namespaced: a container cannot set it), after which io_uring_setup fails and callers fall back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ember_checkpoint.errors import DumpFailed

IO_URING = "anon_inode:[io_uring]"


@dataclass(frozen=True)
class IoUringHolder:
    pid: int
    comm: str
    where: str  # "fd 12" or "mapping 7f00-7f10"


def io_uring_holders(pids: set[int], proc: Path = Path("/proc")) -> list[IoUringHolder]:
    found: list[IoUringHolder] = []
    for pid in sorted(pids):
        base = proc / str(pid)
        try:
            comm = (base / "comm").read_text().strip()
        except OSError:
            continue  # exited while we looked
        where: str | None = None
        try:
            fds = sorted(base.joinpath("fd").iterdir(), key=lambda p: int(p.name))
        except (OSError, ValueError):
            fds = []
        for fd in fds:
            try:
                if str(fd.readlink()) == IO_URING:
                    where = f"fd {fd.name}"
                    break
            except OSError:
                continue
        if where is None:
            try:
                maps = (base / "maps").read_text()
            except OSError:
                maps = ""
            for line in maps.splitlines():
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith(IO_URING):
                    where = f"mapping {parts[0]}"
                    break
        if where is not None:
            found.append(IoUringHolder(pid, comm, where))
    return found


def check_no_io_uring(pids: set[int], proc: Path = Path("/proc")) -> None:
    """Raise DumpFailed naming every process of the tree that holds an io_uring."""
    holders = io_uring_holders(pids, proc)
    if holders:
        named = ", ".join(f"pid {h.pid} ({h.comm}, {h.where})" for h in holders)
        raise DumpFailed(
            f"io_uring in the engine's process tree, which CRIU cannot dump: {named}. Turn it off "
            "where it is opened (UV_USE_IO_URING=0 and the engine on asyncio's loop via "
            "ember_checkpoint.vllm_entry for uvloop), or on the node: sysctl kernel.io_uring_disabled=2"
        )


THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def transparent_hugepages(path: Path = THP_ENABLED) -> str:
    """The node's transparent huge page mode (`always`, `madvise`, `never`), or `unknown`.

    It matters to a restore: CRIU fills a restored task's private memory by page faults, and with
    `always` those are 2 MiB pages. On an H200 the CRIU phase of an 8B engine's restore (4.7 GB image)
    took 1.58 s with `always` against 2.02 s with `madvise` in one run (n=5 each; docs/benchmarks-gpu.md).
    `madvise` (Ubuntu's and many distributions' default) gives a restored task none: CRIU advises its
    areas only after it has filled them. It is a node setting (sysfs, not namespaced)."""
    try:
        text = path.read_text()
    except OSError:
        return "unknown"
    return next((w.strip("[]") for w in text.split() if w.startswith("[") and w.endswith("]")), "unknown")
