"""Both checksum schemes: what changes the digest, and that a digest verifies with its own scheme."""

from __future__ import annotations

from pathlib import Path

import pytest
from ember_checkpoint import checksum


def image(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    (d / "pages-1.img").write_bytes(bytes(range(256)) * 40)  # 10240 bytes: several segments of 4 KiB
    (d / "core-1.img").write_bytes(b"core")
    (d / "stats-restore").write_bytes(b"written by every restore")
    return d


SEG = 4096


@pytest.mark.parametrize("scheme", [checksum.SERIAL, checksum.SEGMENTED])
def test_digest_is_stable_and_prefixed(tmp_path: Path, scheme: str) -> None:
    d = image(tmp_path)
    a = checksum.content_checksum(d, scheme, segment_bytes=SEG)
    assert a.startswith(scheme + ":")
    assert a == checksum.content_checksum(d, scheme, segment_bytes=SEG, workers=1)
    (d / "stats-restore").write_bytes(b"another restore")  # not part of the image
    assert a == checksum.content_checksum(d, scheme, segment_bytes=SEG)


@pytest.mark.parametrize("scheme", [checksum.SERIAL, checksum.SEGMENTED])
@pytest.mark.parametrize("offset", [0, SEG + 7, 10239])
def test_one_flipped_byte_in_any_segment_changes_it(tmp_path: Path, scheme: str, offset: int) -> None:
    d = image(tmp_path)
    before = checksum.content_checksum(d, scheme, segment_bytes=SEG)
    data = bytearray((d / "pages-1.img").read_bytes())
    data[offset] ^= 1
    (d / "pages-1.img").write_bytes(bytes(data))
    assert checksum.content_checksum(d, scheme, segment_bytes=SEG) != before


@pytest.mark.parametrize("scheme", [checksum.SERIAL, checksum.SEGMENTED])
def test_rename_and_truncate_change_it(tmp_path: Path, scheme: str) -> None:
    d = image(tmp_path)
    before = checksum.content_checksum(d, scheme, segment_bytes=SEG)
    (d / "core-1.img").rename(d / "core-2.img")
    renamed = checksum.content_checksum(d, scheme, segment_bytes=SEG)
    assert renamed != before
    (d / "pages-1.img").write_bytes((d / "pages-1.img").read_bytes()[:SEG])
    assert checksum.content_checksum(d, scheme, segment_bytes=SEG) not in (before, renamed)


def test_matches_uses_the_digest_own_scheme(tmp_path: Path) -> None:
    d = image(tmp_path)
    old = checksum.content_checksum(d, checksum.SERIAL)  # a manifest written before the segmented scheme
    new = checksum.content_checksum(d)
    assert new.startswith("sha256-seg:") and old.startswith("sha256:")
    assert checksum.matches(d, old) == (True, old)
    assert checksum.matches(d, new) == (True, new)
    assert checksum.matches(d, "sha256:" + "0" * 64)[0] is False
    with pytest.raises(ValueError):
        checksum.matches(d, "md5:abc")


# ---------------------------------------------------------------- the verify-once stamp


def _image(tmp_path: Path) -> Path:
    images = tmp_path / "ck" / "images"
    images.mkdir(parents=True)
    (images / "pages-1.img").write_bytes(b"a" * 5000)
    (images / "core-1.img").write_bytes(b"c" * 100)
    return images


def test_a_stamped_unchanged_image_is_trusted_without_hashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _image(tmp_path)
    digest = checksum.content_checksum(images)
    assert checksum.verify_image(images, digest) == (True, digest, False)  # hashed, then stamped
    assert (images.parent / checksum.STAMP_FILE).exists()

    def no_hashing(*a: object, **k: object) -> str:
        raise AssertionError("hashed although the stamp holds")

    monkeypatch.setattr(checksum, "content_checksum", no_hashing)
    assert checksum.verify_image(images, digest) == (True, digest, True)
    (images / "stats-restore").write_bytes(b"criu writes this on every restore")  # not image
    assert checksum.verify_image(images, digest) == (True, digest, True)


@pytest.mark.parametrize("tamper", ["same_size_same_mtime", "replaced", "added", "removed"])
def test_a_changed_image_is_rehashed_and_refused(tmp_path: Path, tamper: str) -> None:
    import os
    import time

    images = _image(tmp_path)
    digest = checksum.content_checksum(images)
    assert checksum.write_stamp(images, digest)
    time.sleep(0.05)  # past the filesystem's timestamp granularity
    f = images / "pages-1.img"
    if tamper == "same_size_same_mtime":
        st = f.stat()
        with f.open("r+b") as fh:
            fh.seek(100)
            fh.write(b"b")
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back: the ctime still moves
    elif tamper == "replaced":
        tmp = images / "x.tmp"
        tmp.write_bytes(f.read_bytes()[:-1] + b"z")
        os.replace(tmp, f)
    elif tamper == "added":
        (images / "pages-2.img").write_bytes(b"new")
    else:
        (images / "core-1.img").unlink()
    assert not checksum.stamp_holds(images, digest)
    same, actual, trusted = checksum.verify_image(images, digest)
    assert (same, trusted) == (False, False) and actual != digest
    assert not (images.parent / checksum.STAMP_FILE).exists()  # the stale stamp is gone


def test_a_stamp_for_another_digest_is_not_trusted(tmp_path: Path) -> None:
    images = _image(tmp_path)
    checksum.write_stamp(images, "sha256-seg:" + "0" * 64)
    digest = checksum.content_checksum(images)
    assert not checksum.stamp_holds(images, digest)
    assert checksum.verify_image(images, digest) == (True, digest, False)
