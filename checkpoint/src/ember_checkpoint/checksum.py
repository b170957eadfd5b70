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


# ---------------------------------------------------------------- verify once, then trust a stamp
#
# Re-hashing the image on every restore cost 0.42 s of a 7 s restore (4.7 GB). The image is hashed
# when it lands on the node (the dump that wrote it, or the prestage that read it into page cache),
# and the stamp `images.stamp.json` beside `images/` records the digest with every image file's
# size, mtime, ctime, inode and device. A restore trusts the digest only while every one of those is
# unchanged and the file set is the same; anything else (a write, even one that keeps the size and
# resets the mtime: the ctime moves and cannot be set back; a copy or a replaced file: new inode; a
# file added or removed) re-hashes, and a mismatch is refused as before. What it does not cover: a
# process that can write the checkpoint directory and the node's clock, which could rewrite the
# manifest just as well.

STAMP_FILE = "images.stamp.json"


def _states(images_dir: Path) -> dict[str, list[int]]:
    out = {}
    for p in image_files(images_dir):
        st = p.stat()
        rel = p.relative_to(images_dir).as_posix()
        out[rel] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
    return out


def write_stamp(images_dir: Path, digest: str) -> bool:
    """Record that `images_dir` hashed to `digest` as its files are now; False if it cannot be written
    (read-only storage: every restore then re-hashes)."""
    import json

    path = images_dir.parent / STAMP_FILE
    tmp = path.with_name(f".{STAMP_FILE}.tmp")
    try:
        tmp.write_text(json.dumps({"digest": digest, "files": _states(images_dir)}))
        os.replace(tmp, path)
    except OSError:
        return False
    return True


def stamp_holds(images_dir: Path, digest: str) -> bool:
    import json

    try:
        stamp = json.loads((images_dir.parent / STAMP_FILE).read_text())
        return bool(stamp.get("digest") == digest and stamp.get("files") == _states(images_dir))
    except (OSError, ValueError, AttributeError):
        return False


def verify_image(images_dir: Path, expected: str) -> tuple[bool, str, bool]:
    """(matches, actual digest, trusted from the stamp without hashing). A successful hash stamps the
    image for the next restore; a failed one removes a stale stamp."""
    if stamp_holds(images_dir, expected):
        return True, expected, True
    same, actual = matches(images_dir, expected)
    if same:
        write_stamp(images_dir, expected)
    else:
        (images_dir.parent / STAMP_FILE).unlink(missing_ok=True)
    return same, actual, False
