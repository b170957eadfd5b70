"""The /dev/shm files that travel inside a checkpoint (ember_checkpoint.shm), on a fake /proc and /dev/shm;
the capture script is written and executed as a file, as CRIU runs action scripts (execvp)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ember_checkpoint import shm
from ember_checkpoint.criu import dump_argv


def fake_proc(root: Path, pid: int, maps: list[str], fds: dict[str, str]) -> None:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "maps").write_text("".join(f"7f00-7f01 rw-s 00000000 00:1a 42 {m}\n" for m in maps))
    for fd, target in fds.items():
        os.symlink(target, d / "fd" / fd)


def test_mapped_shm_files_takes_linked_files_mapped_or_open_under_shm(tmp_path: Path) -> None:
    proc, dev_shm = tmp_path / "proc", tmp_path / "shm"
    fake_proc(
        proc,
        10,
        [f"{dev_shm}/psm_a", f"{dev_shm}/sem.X1 (deleted)", "/usr/lib/libc.so.6", "[heap]"],
        {"3": f"{dev_shm}/psm_b", "4": "socket:[123]", "5": f"{dev_shm}/gone (deleted)"},
    )
    fake_proc(proc, 11, [f"{dev_shm}/psm_a"], {})
    found = shm.mapped_shm_files({10, 11, 12}, proc=proc, shm=dev_shm)  # 12 exited: skipped
    assert found == [dev_shm / "psm_a", dev_shm / "psm_b"]


def test_capture_script_copies_at_post_dump_only_and_only_this_dumps_link_remaps(tmp_path: Path) -> None:
    dev_shm, images = tmp_path / "shm", tmp_path / "my images" / "images"
    dev_shm.mkdir()
    images.mkdir(parents=True)
    (dev_shm / "psm_a").write_bytes(b"ring")
    (dev_shm / "link_remap.3").write_bytes(b"old")
    old = shm.link_remaps(dev_shm)
    (dev_shm / "link_remap.7").write_bytes(b"sem")  # made by this dump
    script = tmp_path / "capture.sh"
    script.write_text(shm.capture_script([dev_shm / "psm_a"], images, old, shm=dev_shm))
    script.chmod(0o755)

    for action in ("pre-dump", "network-lock"):
        run = subprocess.run([str(script)], env={**os.environ, "CRTOOLS_SCRIPT_ACTION": action})
        assert run.returncode == 0 and not (images / shm.SUBDIR).exists()
    run = subprocess.run([str(script)], env={**os.environ, "CRTOOLS_SCRIPT_ACTION": "post-dump"})
    assert run.returncode == 0
    assert sorted(p.name for p in (images / shm.SUBDIR).iterdir()) == ["link_remap.7", "psm_a"]


def test_capture_script_fails_the_dump_when_a_file_cannot_be_copied(tmp_path: Path) -> None:
    script = shm.write_capture_script(
        tmp_path / "capture.sh", [tmp_path / "missing"], tmp_path / "images", []
    )
    run = subprocess.run([str(script)], env={**os.environ, "CRTOOLS_SCRIPT_ACTION": "post-dump"})
    assert run.returncode != 0


def test_reinstate_overwrites_stale_files_keeping_mode_and_sparseness(tmp_path: Path) -> None:
    dev_shm, images = tmp_path / "shm", tmp_path / "images"
    (images / shm.SUBDIR).mkdir(parents=True)
    dev_shm.mkdir()
    saved = images / shm.SUBDIR / "psm_a"
    with saved.open("wb") as f:
        f.truncate(64 * 1024 * 1024)
        f.write(b"dump-time")
    saved.chmod(0o600)
    (dev_shm / "psm_a").write_bytes(b"another run's state")

    assert shm.reinstate(images, shm=dev_shm) == ["psm_a"]
    back = dev_shm / "psm_a"
    assert back.read_bytes()[:9] == b"dump-time" and back.stat().st_size == 64 * 1024 * 1024
    assert back.stat().st_mode & 0o777 == 0o600
    assert back.stat().st_blocks * 512 < 1024 * 1024  # holes stay holes
    assert not list(dev_shm.glob(".*ember-tmp"))


def test_reinstate_without_saved_files_does_nothing(tmp_path: Path) -> None:
    assert shm.reinstate(tmp_path / "images", shm=tmp_path) == []


def test_dump_argv_passes_the_action_script(tmp_path: Path) -> None:
    argv = dump_argv(
        ["criu"], 5, tmp_path, tmp_path / "d.log", shell_job=False, leave_running=True, action_script="true"
    )
    assert argv[-2:] == ["--action-script", "true"]
    assert "--action-script" not in dump_argv(
        ["criu"], 5, tmp_path, tmp_path / "d.log", shell_job=False, leave_running=True
    )


def test_stale_link_remaps_are_removed_before_a_dump(tmp_path: Path) -> None:
    for name in ("link_remap.0", "link_remap.3", "psm_abc", "sem.X"):
        (tmp_path / name).write_text("x")
    assert shm.remove_stale_link_remaps(tmp_path) == ["link_remap.0", "link_remap.3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["psm_abc", "sem.X"]
    assert shm.remove_stale_link_remaps(tmp_path) == []
