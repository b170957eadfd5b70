from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from ember_checkpoint.manifest import Identity, Manifest, Sizes, Timings
from ember_checkpoint.storage import CheckpointNotFound, LocalDirStorage, check_id, write_manifest_file


def a_manifest(cid: str) -> Manifest:
    ident = Identity(model_digest="d", engine_version="e", criu_version="4.2.1", dtype="f", max_model_len=1)
    return Manifest(
        checkpoint_id=cid,
        identity=ident,
        identity_hash=ident.hash(),
        created=datetime.now(UTC),
        sizes=Sizes(image_bytes=0, gpu_state_bytes=0),
        timings=Timings(),
        content_checksum="sha256:x",
    )


def test_a_staged_checkpoint_is_invisible_until_published(tmp_path: Path) -> None:
    s = LocalDirStorage(tmp_path)
    staging = s.staging("c1")
    (staging / "images").mkdir()
    write_manifest_file(staging, a_manifest("c1"))
    assert s.list() == []
    s.publish(staging, "c1")
    assert s.list() == ["c1"]
    assert s.read_manifest("c1").checkpoint_id == "c1"
    assert not staging.exists()


def test_publish_refuses_a_directory_without_manifest(tmp_path: Path) -> None:
    s = LocalDirStorage(tmp_path)
    with pytest.raises(ValueError, match="half a checkpoint"):
        s.publish(s.staging("c1"), "c1")


def test_staging_an_existing_id_is_refused_and_delete_removes_it(tmp_path: Path) -> None:
    s = LocalDirStorage(tmp_path)
    staging = s.staging("c1")
    write_manifest_file(staging, a_manifest("c1"))
    s.publish(staging, "c1")
    with pytest.raises(FileExistsError):
        s.staging("c1")
    s.delete("c1")
    assert s.list() == []
    with pytest.raises(CheckpointNotFound):
        s.get("c1")
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.parametrize(
    "bad", ["", "../x", "a/b", ".hidden", "x" * 200], ids=["empty", "dotdot", "slash", "dot", "long"]
)
def test_ids_that_could_escape_or_hide_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_id(bad)


def test_clean_stale_removes_leftover_staging(tmp_path: Path) -> None:
    s = LocalDirStorage(tmp_path)
    s.staging("c1")
    assert len(s.clean_stale()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_relative_root_is_made_absolute_because_criu_resolves_paths_against_the_images_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = LocalDirStorage(Path("rel"))
    assert s.root == tmp_path / "rel" and s.staging("c1").is_absolute()
