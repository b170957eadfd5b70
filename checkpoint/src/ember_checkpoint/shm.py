"""The /dev/shm files an engine maps, carried inside its checkpoint.

CRIU saves a shared file mapping as a reference to the file, not its bytes; only unlinked files
(with --link-remap) go into the image. vLLM maps named POSIX shared memory (/dev/shm/psm_*: the
ring buffers between the API server, engine core and workers), so an image restored where those
files are missing fails (`criu restore`: cannot open the mapping), and one restored where they hold
another run's state reads stale queues. A new pod has an empty /dev/shm: the files travel with the
image, in `images/ember-shm/`, so the content checksum covers them.

So do CRIU's own `link_remap.N` files: with --link-remap, CRIU keeps an open file whose name was
unlinked but whose inode lives on under another name (vLLM's POSIX semaphores) as a new hard link
`link_remap.N` next to it, outside the image, and the first restore removes it: without a copy, an
image restores once, and never in a new pod.

They are copied by a CRIU `post-dump` action script, which runs while the tree is still frozen: on a
live dump the engine changes them again as soon as it resumes. A restore writes them back first.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

SHM = Path("/dev/shm")
SUBDIR = "ember-shm"


def mapped_shm_files(pids: set[int], proc: Path = Path("/proc"), shm: Path = SHM) -> list[Path]:
    """Files under shm (still linked) that the processes map or hold open."""
    found: set[Path] = set()
    prefix = str(shm).rstrip("/") + "/"
    for pid in pids:
        try:
            maps = (proc / str(pid) / "maps").read_text()
        except OSError:
            continue  # exited while we looked
        for line in maps.splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith(prefix) and not parts[5].endswith(" (deleted)"):
                found.add(Path(parts[5]))
        try:
            fds = list((proc / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = str(fd.readlink())
            except OSError:
                continue
            if target.startswith(prefix) and not target.endswith(" (deleted)"):
                found.add(Path(target))
    return sorted(p for p in found if p.parent == shm)


def link_remaps(shm: Path = SHM) -> list[str]:
    """CRIU link-remap files present now (taken before a dump: those are not this dump's)."""
    return sorted(p.name for p in shm.glob("link_remap.*"))


def remove_stale_link_remaps(shm: Path = SHM) -> list[str]:
    """Remove the link_remap.* files present before a dump; returns their names.

    They are never needed there: a dump copies the ones it makes into its image, and a restore
    writes them back from the image and CRIU removes them once the tree is up. What remains is left
    by an earlier dump (a live one, or one that failed), and it collides with the next dump, which
    numbers its own from 0 again (`Can't link remap to /dev/shm/...: File exists`,
    docs/benchmarks-gpu.md). Files that cannot be removed stay, and the capture script skips them."""
    removed = []
    for name in link_remaps(shm):
        try:
            (shm / name).unlink()
        except FileNotFoundError:
            continue
        except OSError:
            continue
        removed.append(name)
    return removed


def capture_script(files: list[Path], images: Path, old_remaps: list[str], shm: Path = SHM) -> str:
    """A shell script for CRIU's --action-script (run at every stage) that, at post-dump, copies files
    and the link_remap.* files this dump made (not in old_remaps) into images/ember-shm."""
    dest = shlex.quote(str(images / SUBDIR))
    copy = f"cp --sparse=always {' '.join(shlex.quote(str(f)) for f in files)} {dest}/ && " if files else ""
    skip = "|".join(shlex.quote(n) for n in old_remaps) or "''"
    remaps = shlex.quote(str(shm)) + "/link_remap.*"
    return (
        "#!/bin/sh\n"
        f'if [ "$CRTOOLS_SCRIPT_ACTION" = post-dump ]; then mkdir -p {dest} && {copy}'
        f'for f in {remaps}; do [ -e "$f" ] || continue; '
        f'case "${{f##*/}}" in {skip}) ;; *) cp --sparse=always "$f" {dest}/ || exit 1;; esac; done; fi'
    )


def write_capture_script(path: Path, files: list[Path], images: Path, old_remaps: list[str]) -> Path:
    """CRIU execs the action script itself (no shell): write it as an executable file."""
    path.write_text(capture_script(files, images, old_remaps))
    path.chmod(0o755)
    return path


def reinstate(images: Path, shm: Path = SHM) -> list[str]:
    """Write the saved files back into shm (overwriting: the image expects dump-time content).
    Raises OSError."""
    saved = images / SUBDIR
    if not saved.is_dir():
        return []
    names = []
    for f in sorted(saved.iterdir()):
        tmp = shm / f".{f.name}.ember-tmp"
        # sparse (the ring buffers are mostly holes), then rename: never a half-written file
        done = subprocess.run(
            ["cp", "--sparse=always", "--preserve=mode", str(f), str(tmp)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise OSError(f"cp {f} {tmp}: {done.stderr.strip()[:300]}")
        tmp.replace(shm / f.name)
        names.append(f.name)
    return names
