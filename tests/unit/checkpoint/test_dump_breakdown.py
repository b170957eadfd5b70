"""What a dump records of the memory it writes (issue 20 item 2: what the image holds), and the host
heap trim before an asleep dump."""

from __future__ import annotations

import os
from pathlib import Path

from ember_checkpoint import weights
from ember_checkpoint.lifecycle import process_memory
from ember_checkpoint.manifest import Sizes


def _status(proc: Path, pid: int, name: str, anon_kib: int, shmem_kib: int) -> None:
    d = proc / str(pid)
    d.mkdir(parents=True)
    (d / "status").write_text(
        f"Name:\t{name}\nUmask:\t0022\nState:\tS (sleeping)\nVmRSS:\t{anon_kib + shmem_kib + 100} kB\n"
        f"RssAnon:\t{anon_kib} kB\nRssFile:\t100 kB\nRssShmem:\t{shmem_kib} kB\n"
    )


def test_each_process_is_named_with_its_anonymous_and_shared_memory_largest_first(tmp_path: Path) -> None:
    _status(tmp_path, 10, "vllm", 900_000, 4)
    _status(tmp_path, 11, "VLLM::EngineCore", 3_600_000, 65_536)
    _status(tmp_path, 12, "python3", 2_000, 0)
    got = process_memory({10, 11, 12, 13}, {11: 2_120_000_000}, proc=tmp_path)  # 13 is gone
    assert [(m.pid, m.name) for m in got] == [(11, "VLLM::EngineCore"), (10, "vllm"), (12, "python3")]
    assert got[0].anon_bytes == 3_600_000 * 1024
    assert got[0].shmem_bytes == 65_536 * 1024
    assert got[0].gpu_bytes == 2_120_000_000
    assert got[1].gpu_bytes == 0


def test_this_process_reads_back_as_itself() -> None:
    (me,) = process_memory([os.getpid()], {})
    assert me.anon_bytes > 0
    assert me.name


def test_a_manifest_written_before_the_breakdown_existed_still_reads() -> None:
    old = Sizes.model_validate({"image_bytes": 10, "gpu_state_bytes": 0})
    assert old.processes == []


def test_the_heap_trim_gives_back_the_holes_freed_blocks_leave_in_the_heap() -> None:
    # blocks below glibc's mmap threshold live in the heap; freeing every other one leaves holes that
    # free() alone does not return (they are not at the heap's top): only a trim gives them back
    blocks = [bytearray(96 * 1024) for _ in range(3000)]  # ~280 MiB, zero-filled so resident
    kept = blocks[1::2]
    del blocks
    out = weights.trim_host_heap()
    assert out["trimmed"] is True
    assert out["rss_anon_before"] - out["rss_anon_after"] > 64 * 1024 * 1024, out
    assert out["trim_s"] >= 0
    assert len(kept) == 1500


API_SERVER_LIKE = """
import asyncio, signal, sys, threading
from ember_checkpoint import vllm_entry
blocks = [bytearray(96 * 1024) for _ in range(3000)]
kept = blocks[1::2]
del blocks
signal.signal(vllm_entry.TRIM_SIGNAL, vllm_entry._on_trim)
threading.Thread(target=lambda: threading.Event().wait(), daemon=True).start()  # a second thread
async def main():
    print("ready", flush=True)
    await asyncio.sleep(120)  # idle in epoll, as a served API server between requests
asyncio.run(main())
"""


def test_an_api_server_run_through_vllm_entry_gives_its_free_heap_back_when_asked() -> None:
    import subprocess
    import sys

    from ember_checkpoint.lifecycle import trim_api_servers

    server = subprocess.Popen(
        [sys.executable, "-c", API_SERVER_LIKE, "ember_checkpoint.vllm_entry"],
        stdout=subprocess.PIPE,
        text=True,
    )
    other = subprocess.Popen(["sleep", "60"])  # not ours: SIGUSR2 would kill it, so it is not sent one
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        (r,) = trim_api_servers({server.pid, other.pid})
        assert r["pid"] == server.pid and r["trimmed"] is True, r
        assert r["rss_anon_before"] - r["rss_anon_after"] > 64 * 1024 * 1024, r
        assert server.poll() is None and other.poll() is None
    finally:
        for p in (server, other):
            p.kill()
            p.wait()
