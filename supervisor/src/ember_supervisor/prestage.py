"""`ember-supervisor prestage`: make a node ready for the replica that will replace a warm-buffer
placeholder there (the placeholder's init container runs it, in the replica image, see
operator/src/ember/kube/placeholders.py):

    ember-supervisor prestage --model URI --revision REV --cache DIR [--checkpoints DIR]

Running in the replica image already puts the image on the node. Then it reads into the node's page
cache what the replica's start will read:
- the model: a local path (`file://` or a plain path: a model baked into the image, whose layer
  files the replica shares, or a hostPath) is read as it is; an `hf://` model is downloaded into
  `DIR/hf` with huggingface_hub (when the image has it and the hub is reachable) and read;
  a `pvc://` model is not mounted in the placeholder and is skipped, saying so;
- with `--checkpoints`: the newest verified checkpoint of this model (manifest identity
  `model_digest` == `URI@REV`, as the operator writes it, or `--model-digest`) in that directory (the hostPath the
  replicas mount), image files and manifest; the restore then reads them from memory. Its image is
  verified against the manifest's checksum while in page cache and stamped (`checksum.verify_image`),
  so the restore trusts it unchanged instead of re-hashing it.
Files are read sequentially after `posix_fadvise(WILLNEED)`. Page cache is charged to the reading
container's memory cgroup, so what exceeds the init container's memory limit is evicted while it is
read: the report gives that limit and says when the staged bytes exceed it.

It prints one JSON line (what was staged, bytes, seconds, what was skipped and why) and exits 0, also
when there is nothing to stage or a read fails: a placeholder that cannot pre-stage still holds its
GPUs, and an init container that fails would only restart in a loop. It exits 2, naming the argument,
on a bad invocation (a usage error of the operator, not a runtime problem).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ember_checkpoint import checksum
from ember_checkpoint.manifest import Manifest
from ember_checkpoint.storage import LocalDirStorage

CHUNK = 8 << 20
CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")


@dataclass
class Staged:
    what: str
    path: str | None = None
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    skipped: str | None = None
    errors: list[str] = field(default_factory=list)
    checksum: str | None = None  # a checkpoint: verified here and stamped, or why not


def read_into_cache(paths: Iterable[Path], staged: Staged) -> Staged:
    """Read every file (recursively under directories) once, sequentially; counts into `staged`."""
    t0 = time.monotonic()
    buf = bytearray(CHUNK)
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            try:
                fd = os.open(f, os.O_RDONLY)
            except OSError as e:
                staged.errors.append(f"{f}: {e.strerror}")
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                with os.fdopen(fd, "rb", buffering=0, closefd=False) as fh:
                    while n := fh.readinto(buf):
                        staged.bytes += n
                staged.files += 1
            except OSError as e:
                staged.errors.append(f"{f}: {e.strerror}")
            finally:
                os.close(fd)
    staged.seconds = round(staged.seconds + time.monotonic() - t0, 3)
    return staged


def newest_verified(checkpoints: Path, model_digest: str) -> Manifest | None:
    storage = LocalDirStorage(checkpoints)
    found = []
    for cid in storage.list():
        try:
            m = storage.read_manifest(cid)
        except ValueError:
            continue  # unreadable: the restore would refuse it too
        if m.verified and m.identity.model_digest == model_digest:
            found.append(m)
    return max(found, key=lambda m: (m.created, m.checkpoint_id), default=None)


def hf_download(repo: str, revision: str, cache: Path) -> Path:
    """The model's snapshot directory in `cache` (huggingface_hub; raises on any failure)."""
    from huggingface_hub import snapshot_download  # in the replica image with vLLM, not in Ember's deps

    return Path(snapshot_download(repo_id=repo, revision=revision, cache_dir=str(cache)))


def stage_model(
    uri: str, revision: str, cache: Path, download: Callable[[str, str, Path], Path] = hf_download
) -> Staged:
    staged = Staged(what="model")
    if uri.startswith("pvc://"):
        staged.skipped = "pvc:// models are mounted only in replica pods, not in the placeholder"
        return staged
    if uri.startswith("hf://"):
        try:
            path = download(uri.removeprefix("hf://"), revision, cache / "hf")
        except Exception as e:  # no huggingface_hub, offline, unknown repo: reported, never fatal
            staged.skipped = f"cannot download {uri}@{revision}: {type(e).__name__}: {str(e)[:300]}"
            return staged
    else:
        path = Path(uri.removeprefix("file://"))
    staged.path = str(path)
    if not path.exists():
        staged.skipped = f"{path} does not exist on this node"
        return staged
    return read_into_cache([path], staged)


def stage_checkpoint(checkpoints: Path, model_digest: str) -> Staged:
    staged = Staged(what="checkpoint")
    if not checkpoints.is_dir():
        staged.skipped = f"{checkpoints} is not a directory"
        return staged
    m = newest_verified(checkpoints, model_digest)
    if m is None:
        staged.skipped = f"no verified checkpoint of {model_digest} in {checkpoints}"
        return staged
    path = LocalDirStorage(checkpoints).get(m.checkpoint_id)
    staged.path = str(path)
    read_into_cache([path], staged)
    # Verify the image once, here, while it is in page cache, and stamp it: the replica's restore then
    # trusts the unchanged files instead of re-hashing them (checksum.verify_image).
    try:
        same, actual, trusted = checksum.verify_image(path / "images", m.content_checksum)
    except (OSError, ValueError) as e:
        staged.checksum = f"not verified: {type(e).__name__}: {str(e)[:200]}"
        return staged
    if trusted:
        staged.checksum = "stamp holds (verified before, files unchanged)"
    elif same:
        staged.checksum = "verified and stamped"
    else:
        staged.checksum = (
            f"mismatch: image is {actual}, manifest says {m.content_checksum}; a restore refuses it"
        )
    return staged


def memory_limit(path: Path | None = None) -> int | None:
    """This container's cgroup v2 memory limit (None: unlimited or unknown)."""
    try:
        text = (path or CGROUP_MEMORY_MAX).read_text().strip()
    except OSError:
        return None
    return None if text == "max" else int(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ember-supervisor prestage",
        description="read the model and the newest verified checkpoint into this node's page cache",
    )
    p.add_argument(
        "--model", required=True, help="the InferenceService's model URI (hf://, pvc://, file://, path)"
    )
    p.add_argument("--revision", required=True, help="the model's revision (spec.model.revision)")
    p.add_argument(
        "--cache", type=Path, required=True, help="cache directory (a hostPath, or the model cache claim)"
    )
    p.add_argument("--checkpoints", type=Path, default=None, help="checkpoint directory (hostPath)")
    p.add_argument(
        "--model-digest",
        default=None,
        help="the checkpoint identity's model_digest to stage (default URI@REV, as the operator writes it)",
    )
    return p


def run(
    args: argparse.Namespace, download: Callable[[str, str, Path], Path] = hf_download
) -> dict[str, object]:
    t0 = time.monotonic()
    notes: list[str] = []
    try:
        args.cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        notes.append(f"cannot create the cache {args.cache}: {e.strerror}")
    parts = [stage_model(args.model, args.revision, args.cache, download)]
    if args.checkpoints is not None:
        digest = args.model_digest or f"{args.model}@{args.revision}"
        parts.append(stage_checkpoint(args.checkpoints, digest))
    total = sum(s.bytes for s in parts)
    limit = memory_limit()
    if limit is not None and total > limit:
        notes.append(
            f"staged {total} bytes under a memory limit of {limit} bytes: page cache beyond the limit "
            "is evicted as it is read, so only about the last limit's worth stays cached"
        )
    if not any(s.files for s in parts):
        notes.append("nothing was staged")
    return {
        "event": "prestage",
        "staged": [s.__dict__ for s in parts],
        "bytes": total,
        "seconds": round(time.monotonic() - t0, 3),
        "memory_limit_bytes": limit,
        "notes": notes,
    }


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.cache.is_absolute():
        p.error(f"--cache must be an absolute path, got {str(args.cache)!r}")
    if args.checkpoints is not None and not args.checkpoints.is_absolute():
        p.error(f"--checkpoints must be an absolute path, got {str(args.checkpoints)!r}")
    scheme, sep, rest = args.model.partition("://")
    if sep and scheme not in ("hf", "pvc", "file"):
        p.error(f"--model: unknown scheme {scheme!r} in {args.model!r} (hf://, pvc://, file:// or a path)")
    if not (rest if sep else args.model):
        p.error("--model is empty")
    if not sep and not args.model.startswith("/"):
        p.error(f"--model: a path must be absolute, got {args.model!r}")


def main(argv: list[str]) -> int:
    p = _parser()
    args = p.parse_args(argv)
    _check(p, args)
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
