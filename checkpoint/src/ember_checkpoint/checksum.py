"""Content checksum over a checkpoint's image files.

sha256 over, for each file in sorted relative-path order: the path, a NUL, the size as decimal, a
NUL, the bytes. Paths and sizes are in the digest so that renaming or truncating a file changes it
even when the bytes would hash alike. Only `images/` is covered: logs and the manifest change after
the dump (restore logs, the verified flag) and must not invalidate the image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK_BYTES = 4 * 1024 * 1024  # large reads: the image is GBs on a GPU, hashing is I/O bound
# CRIU writes these into the images directory on every restore (statistics, a path cache): they are
# not part of the image and would make every restore after the first look corrupted.
_NOT_IMAGE = frozenset({"stats-restore", "irmap-cache"})


def image_files(images_dir: Path) -> list[Path]:
    return sorted(
        p for p in images_dir.rglob("*") if p.is_file() and not p.is_symlink() and p.name not in _NOT_IMAGE
    )


def content_checksum(images_dir: Path) -> str:
    h = hashlib.sha256()
    for path in image_files(images_dir):
        rel = path.relative_to(images_dir).as_posix()
        h.update(rel.encode() + b"\0" + str(path.stat().st_size).encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK_BYTES):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def total_bytes(images_dir: Path) -> int:
    return sum(p.stat().st_size for p in image_files(images_dir))
