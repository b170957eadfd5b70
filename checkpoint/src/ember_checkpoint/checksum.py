"""Content checksum over a checkpoint's image files.

Two schemes, told apart by the digest's prefix (a manifest written by either still verifies):

- `sha256:` (the first one): sha256 over, for each file in sorted relative-path order: the path, a NUL,
  the size as decimal, a NUL, the bytes. One core hashes everything: ~1.5-2 GB/s, so a GPU image of
  tens of GB costs tens of seconds on every restore.
- `sha256-seg:` (the default for new dumps): each file is cut into 64 MiB segments, the segments are
  hashed in parallel threads (hashlib releases the GIL on large buffers, reads use os.pread), and the
  digest is sha256 over, for each file in the same order: the path, a NUL, the size, a NUL, then the
  32-byte digest of each segment in order. Paths and sizes are in both, so renaming or truncating a
  file changes the digest even when the bytes would hash alike.

Only `images/` is covered: logs and the manifest change after the dump (restore logs, the verified
flag) and must not invalidate the image.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_CHUNK_BYTES = 4 * 1024 * 1024  # large reads: the image is GBs on a GPU, hashing is I/O bound
SEGMENT_BYTES = 64 * 1024 * 1024
SERIAL = "sha256"
SEGMENTED = "sha256-seg"
DEFAULT_SCHEME = SEGMENTED
# CRIU writes these into the images directory on every restore (statistics, a path cache): they are
# not part of the image and would make every restore after the first look corrupted.
_NOT_IMAGE = frozenset({"stats-restore", "irmap-cache"})


def image_files(images_dir: Path) -> list[Path]:
    return sorted(
        p for p in images_dir.rglob("*") if p.is_file() and not p.is_symlink() and p.name not in _NOT_IMAGE
    )


def scheme_of(digest: str) -> str:
    scheme = digest.split(":", 1)[0]
    if scheme not in (SERIAL, SEGMENTED):
        raise ValueError(f"unknown checksum scheme in {digest[:40]!r}")
    return scheme


def content_checksum(
    images_dir: Path,
    scheme: str = DEFAULT_SCHEME,
    *,
    workers: int | None = None,
    segment_bytes: int = SEGMENT_BYTES,
) -> str:
    if scheme == SERIAL:
        return _serial(images_dir)
    if scheme == SEGMENTED:
        return _segmented(images_dir, workers or min(32, (os.cpu_count() or 1)), segment_bytes)
    raise ValueError(f"unknown checksum scheme {scheme!r}")


def matches(images_dir: Path, expected: str) -> tuple[bool, str]:
    """Recompute the checksum with the scheme `expected` was made with; (equal?, actual)."""
    actual = content_checksum(images_dir, scheme_of(expected))
    return actual == expected, actual


def _header(images_dir: Path, path: Path, size: int) -> bytes:
    return path.relative_to(images_dir).as_posix().encode() + b"\0" + str(size).encode() + b"\0"


def _serial(images_dir: Path) -> str:
    h = hashlib.sha256()
    for path in image_files(images_dir):
        h.update(_header(images_dir, path, path.stat().st_size))
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK_BYTES):
                h.update(chunk)
    return f"{SERIAL}:" + h.hexdigest()


def _segment_digest(path: Path, offset: int, length: int) -> bytes:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        end = offset + length
        while offset < end:
            chunk = os.pread(fd, min(_CHUNK_BYTES, end - offset), offset)
            if not chunk:
                raise OSError(f"{path} shrank while being hashed")
            h.update(chunk)
            offset += len(chunk)
    finally:
        os.close(fd)
    return h.digest()


def _segmented(images_dir: Path, workers: int, segment_bytes: int) -> str:
    files = [(p, p.stat().st_size) for p in image_files(images_dir)]
    jobs = [
        (p, off, min(segment_bytes, size - off)) for p, size in files for off in range(0, size, segment_bytes)
    ]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = iter(pool.map(lambda j: _segment_digest(*j), jobs))
    h = hashlib.sha256()
    for p, size in files:
        h.update(_header(images_dir, p, size))
        for _ in range(0, size, segment_bytes):
            h.update(next(digests))
    return f"{SEGMENTED}:" + h.hexdigest()


def total_bytes(images_dir: Path) -> int:
    return sum(p.stat().st_size for p in image_files(images_dir))
