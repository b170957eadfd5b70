"""The io_uring pre-dump check (ember_checkpoint.preflight): on a fake /proc, and on a real process
that opens a real io_uring (io_uring_setup through ctypes) where this kernel allows it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ember_checkpoint.errors import DumpFailed
from ember_checkpoint.preflight import IO_URING, IoUringHolder, check_no_io_uring, io_uring_holders


def fake_proc(root: Path, pid: int, comm: str, fds: dict[str, str], maps: list[str] = ()) -> None:  # type: ignore[assignment]
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "comm").write_text(comm + "\n")
    (d / "maps").write_text("".join(f"7f00-7f01 rw-s 00000000 00:0e 42 {m}\n" for m in maps))
    for fd, target in fds.items():
        os.symlink(target, d / "fd" / fd)


def test_holders_are_named_by_fd_or_by_their_ring_mapping(tmp_path: Path) -> None:
    fake_proc(tmp_path, 10, "python3", {"0": "/dev/null", "3": "socket:[1]"})
    fake_proc(tmp_path, 11, "VLLM::EngineCor", {"0": "/dev/null", "12": IO_URING})
    fake_proc(tmp_path, 12, "worker", {}, maps=[IO_URING])
    assert io_uring_holders({10, 11, 12, 99}, tmp_path) == [
        IoUringHolder(11, "VLLM::EngineCor", "fd 12"),
        IoUringHolder(12, "worker", "mapping 7f00-7f01"),
    ]
    with pytest.raises(DumpFailed, match=r"pid 11 \(VLLM::EngineCor, fd 12\), pid 12 \(worker"):
        check_no_io_uring({10, 11, 12}, tmp_path)
    check_no_io_uring({10, 99}, tmp_path)  # no holder (99 exited): nothing raised


_RING = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, params)  # io_uring_setup(entries=4, params)
print(fd, ctypes.get_errno(), flush=True)
time.sleep(60)
"""


def test_a_real_io_uring_is_found_and_named() -> None:
    p = subprocess.Popen([sys.executable, "-c", _RING], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        fd, errno = map(int, p.stdout.readline().split())
        if fd < 0:
            pytest.skip(f"io_uring_setup failed here (errno {errno}; kernel.io_uring_disabled?)")
        time.sleep(0.05)
        with pytest.raises(DumpFailed, match=rf"pid {p.pid} \(python[0-9.]*, fd {fd}\)"):
            check_no_io_uring({os.getpid(), p.pid})
    finally:
        p.kill()
        p.wait()


def test_the_node_transparent_huge_page_mode_is_the_bracketed_word(tmp_path: Path) -> None:
    from ember_checkpoint.preflight import transparent_hugepages

    f = tmp_path / "enabled"
    for text, mode in (
        ("always [madvise] never\n", "madvise"),
        ("[always] madvise never\n", "always"),
        ("always madvise [never]\n", "never"),
        ("garbage\n", "unknown"),
    ):
        f.write_text(text)
        assert transparent_hugepages(f) == mode
    assert transparent_hugepages(tmp_path / "absent") == "unknown"
    assert transparent_hugepages() in ("always", "madvise", "never", "unknown")  # this machine's
