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


def test_terminate_reaps_a_process_that_became_a_zombie_after_the_last_reap(monkeypatch) -> None:
    """The tree's last process dies between terminate's reap and its check: the check sees a zombie
    (not running), and terminate must not return leaving it. A zombie keeps its pid, and a restore of
    a checkpoint with that pid then fails (CRIU: "Can't fork for <pid>: File exists")."""
    # sh exits 0.2 s after SIGTERM: after the reap that follows the signal, before the check ends
    root = subprocess.Popen(["sh", "-c", "trap 'sleep 0.2; exit 0' TERM; while :; do sleep 0.05; done"])
    root.returncode = 0
    real_running = procs.running

    def checked_after_it_died(pid: int) -> bool:
        deadline = time.monotonic() + 5
        while real_running(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        return real_running(pid)

    monkeypatch.setattr(procs, "running", checked_after_it_died)
    procs.terminate(root.pid, grace_s=5)
    assert not Path(f"/proc/{root.pid}").exists(), "left as a zombie: its pid is still taken"


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


def test_the_engine_env_turns_off_the_nccl_store_polling_unless_set(tmp_path: Path) -> None:
    """A restored engine's TCPStore connection is broken; with TORCH_NCCL_DUMP_ON_TIMEOUT on, PyTorch's
    heartbeat monitor polls it (and logs a Broken pipe) once a second."""
    for env, want in ((None, "0"), ({"PATH": "/usr/bin:/bin", "TORCH_NCCL_DUMP_ON_TIMEOUT": "1"}, "1")):
        log = tmp_path / f"engine-{want}.log"
        pid = procs.start_engine(["sh", "-c", "echo dump=$TORCH_NCCL_DUMP_ON_TIMEOUT"], log, env=env)
        deadline = time.monotonic() + 10
        while procs.running(pid) and time.monotonic() < deadline:
            procs.reap(None)
            time.sleep(0.02)
        assert log.read_text().strip() == f"dump={want}"


def test_cold_argv_adds_embers_worker_extension_to_a_vllm_engine_only() -> None:
    from ember_checkpoint.weights import WORKER_EXTENSION
    from ember_supervisor.config import SupervisorConfig

    def cfg(argv: list[str], loader: str = "ember") -> SupervisorConfig:
        return SupervisorConfig.model_validate(
            {
                "engine_argv": argv,
                "engine_port": 1,
                "identity": {},
                "state_dir": "/tmp",
                "weight_loader": loader,
            }
        )

    vllm = ["python", "-m", "ember_checkpoint.vllm_entry", "--model", "/m"]
    assert cfg(vllm).cold_argv == [*vllm, "--worker-extension-cls", WORKER_EXTENSION]
    assert cfg(vllm, "vllm").cold_argv == vllm
    own = [*vllm, "--worker-extension-cls=my.Ext"]
    assert cfg(own).cold_argv == own
    assert cfg(["python", "counter_server.py"]).cold_argv == ["python", "counter_server.py"]
