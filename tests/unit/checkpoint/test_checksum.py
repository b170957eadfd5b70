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
