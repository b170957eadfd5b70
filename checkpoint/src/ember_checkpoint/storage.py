"""Where checkpoints live.

`Storage` is the small interface the lifecycle needs; `LocalDirStorage` implements it on a directory,
which is also what a mounted PVC or a hostPath cache looks like. Object storage can implement the same
interface later (stage locally, upload, write the manifest last).

Publishing is atomic: a dump writes into a staging directory inside the same root (so the final step
is a rename, never a copy of GBs), and the checkpoint appears under its id only when it is whole. A
reader therefore never sees half an image. Deleting renames first, then removes, for the same reason.
"""

from __future__ import annotations

import builtins
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from ember_checkpoint.manifest import MANIFEST_NAME, Manifest

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_STAGING_PREFIX = ".staging-"
_TRASH_PREFIX = ".trash-"


class CheckpointNotFound(LookupError):
    pass


def check_id(checkpoint_id: str) -> str:
    """Ids become directory names: refuse anything that could escape the root or hide itself."""
    if not _ID_RE.match(checkpoint_id):
        raise ValueError(f"invalid checkpoint id {checkpoint_id!r}: use letters, digits, '.', '_', '-'")
    return checkpoint_id


class Storage(Protocol):
    def staging(self, checkpoint_id: str) -> Path:
        """A fresh private directory to write a checkpoint into before `publish`."""
        ...

    def publish(self, staging: Path, checkpoint_id: str) -> Path:
        """Make the staged directory visible as `checkpoint_id`, atomically; returns its path."""
        ...

    def get(self, checkpoint_id: str) -> Path:
        """A local directory holding the checkpoint (raises CheckpointNotFound)."""
        ...

    def list(self) -> list[str]: ...

    def delete(self, checkpoint_id: str) -> None: ...

    def read_manifest(self, checkpoint_id: str) -> Manifest: ...

    def write_manifest(self, checkpoint_id: str, manifest: Manifest) -> None:
        """Replace a published checkpoint's manifest atomically (e.g. to mark it verified)."""
        ...


class LocalDirStorage:
    def __init__(self, root: Path) -> None:
        # Absolute: CRIU resolves relative log and pidfile paths against the images directory.
        self.root = root.resolve()

    def staging(self, checkpoint_id: str) -> Path:
        check_id(checkpoint_id)
        if (self.root / checkpoint_id).exists():
            raise FileExistsError(f"checkpoint {checkpoint_id} already exists in {self.root}")
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{checkpoint_id}-", dir=self.root))

    def publish(self, staging: Path, checkpoint_id: str) -> Path:
        check_id(checkpoint_id)
        if not (staging / MANIFEST_NAME).is_file():
            raise ValueError(f"{staging} has no {MANIFEST_NAME}: refusing to publish half a checkpoint")
        final = self.root / checkpoint_id
        # rename(2) onto an existing non-empty directory fails: two publishers cannot both win.
        os.rename(staging, final)
        _fsync_dir(self.root)
        return final

    def get(self, checkpoint_id: str) -> Path:
        path = self.root / check_id(checkpoint_id)
        if not (path / MANIFEST_NAME).is_file():
            raise CheckpointNotFound(f"no checkpoint {checkpoint_id} in {self.root}")
        return path

    def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".") and (p / MANIFEST_NAME).is_file()
        )

    def delete(self, checkpoint_id: str) -> None:
        path = self.get(checkpoint_id)
        trash = Path(tempfile.mkdtemp(prefix=_TRASH_PREFIX, dir=self.root))
        os.rename(path, trash / checkpoint_id)
        shutil.rmtree(trash)

    def read_manifest(self, checkpoint_id: str) -> Manifest:
        return Manifest.from_json((self.get(checkpoint_id) / MANIFEST_NAME).read_text())

    def write_manifest(self, checkpoint_id: str, manifest: Manifest) -> None:
        write_manifest_file(self.get(checkpoint_id), manifest)

    def clean_stale(self) -> builtins.list[str]:
        """Remove staging and trash directories left by a crash; returns their names."""
        if not self.root.is_dir():
            return []
        stale = [p for p in self.root.iterdir() if p.name.startswith((_STAGING_PREFIX, _TRASH_PREFIX))]
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        return [p.name for p in stale]


def write_manifest_file(directory: Path, manifest: Manifest) -> None:
    tmp = directory / f".{MANIFEST_NAME}.tmp"
    with tmp.open("w") as f:
        f.write(manifest.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / MANIFEST_NAME)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
