"""The restore's checksum step with the verify-once stamp: an image the dump or prestage verified is
trusted while unchanged; a changed one is re-hashed and refused (lifecycle.restore, real files; CRIU
is replaced at our own seam, the finder, since the refusal comes before it runs)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ember_checkpoint import checksum, lifecycle
from ember_checkpoint.errors import Reason, RestoreRefused
from ember_checkpoint.manifest import Identity, Manifest, Sizes, Timings, Verification
from ember_checkpoint.storage import LocalDirStorage, write_manifest_file
from ember_supervisor import prestage

IDENT = Identity(model_digest="m@1", engine_version="e", criu_version="4.2.1", dtype="f", max_model_len=1)


class FakeCriu:
    restored = 0

    def restore(self, *a: object, **k: object) -> int:
        FakeCriu.restored += 1
        return os.getpid()


def publish(root: Path, stamp: bool) -> LocalDirStorage:
    storage = LocalDirStorage(root)
    staging = storage.staging("ck")
    (staging / "images").mkdir()
    (staging / "images/pages-1.img").write_bytes(os.urandom(70_000))
    digest = checksum.content_checksum(staging / "images")
    if stamp:
        checksum.write_stamp(staging / "images", digest)  # as lifecycle.dump does
    write_manifest_file(
        staging,
        Manifest(
            checkpoint_id="ck",
            identity=IDENT,
            identity_hash=IDENT.hash(),
            created=datetime.now(UTC),
            sizes=Sizes(image_bytes=70_000, gpu_state_bytes=0),
            timings=Timings(),
            content_checksum=digest,
            verification=Verification(verified=True),
        ),
    )
    storage.publish(staging, "ck")
    return storage


def restore(storage: LocalDirStorage) -> lifecycle.RestoreResult:
    return lifecycle.restore(
        "ck",
        storage,
        IDENT,
        criu_finder=lambda: FakeCriu(),
        require_verified=False,  # type: ignore[arg-type,return-value]
    )


def test_an_unchanged_stamped_image_is_trusted_and_a_tampered_one_rehashed_and_refused(
    tmp_path: Path,
) -> None:
    storage = publish(tmp_path / "store", stamp=True)
    res = restore(storage)
    assert "checksum_stamp" in res.phases_s and "checksum" not in res.phases_s
    f = storage.get("ck") / "images/pages-1.img"
    st = f.stat()
    with f.open("r+b") as fh:  # one byte, same size, mtime set back
        fh.seek(123)
        b = fh.read(1)
        fh.seek(123)
        fh.write(bytes([b[0] ^ 1]))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = FakeCriu.restored
    with pytest.raises(RestoreRefused) as e:
        restore(storage)
    assert e.value.reason == Reason.CHECKSUM_MISMATCH
    assert FakeCriu.restored == before  # refused before CRIU ran


def test_an_unstamped_image_is_hashed_once_then_trusted(tmp_path: Path) -> None:
    storage = publish(tmp_path / "store", stamp=False)
    first = restore(storage)
    assert "checksum" in first.phases_s
    assert "checksum_stamp" in restore(storage).phases_s


def test_prestage_verifies_and_stamps_the_checkpoint_it_reads(tmp_path: Path) -> None:
    storage = publish(tmp_path / "store", stamp=False)
    ck = prestage.stage_checkpoint(storage.root, "m@1")
    assert ck.checksum == "verified and stamped"
    assert "checksum_stamp" in restore(storage).phases_s  # the restore then trusts it
    assert prestage.stage_checkpoint(storage.root, "m@1").checksum.startswith("stamp holds")
    (storage.get("ck") / "images/pages-1.img").write_bytes(b"x" * 70_000)
    assert prestage.stage_checkpoint(storage.root, "m@1").checksum.startswith("mismatch")
