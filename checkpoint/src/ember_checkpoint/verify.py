"""Verify a checkpoint: restore it where it cannot disturb anything, ask the canary, compare.

The scratch place is a fresh pid + network + mount namespace (`unshare`, util-linux) running
`ember_checkpoint.scratch` as its PID 1: the image keeps its original pids and port there even while
the engine it came from still runs here. Only a matching answer marks the checkpoint verified; a
mismatch or a failed restore is recorded as the failure, and gc deletes such checkpoints.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ember_checkpoint.criu import Criu
from ember_checkpoint.manifest import Manifest, Verification
from ember_checkpoint.scratch import ScratchRequest, ScratchResult
from ember_checkpoint.storage import Storage

ScratchRunner = Callable[[Sequence[str], float], str]


def unshare_argv(python: str = sys.executable) -> list[str]:
    unshare = shutil.which("unshare") or "unshare"
    return [
        unshare,
        "--pid",
        "--net",
        "--mount",
        "--fork",
        "--mount-proc",
        python,
        "-m",
        "ember_checkpoint.scratch",
    ]


def _run_scratch(argv: Sequence[str], timeout_s: float) -> str:
    p = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
    )
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return ScratchResult(
            ok=False, error=f"scratch exited {p.returncode}: {p.stderr.strip()[-1500:]}"
        ).model_dump_json()
    return lines[-1]


def judge(manifest: Manifest, result: ScratchResult, now: datetime) -> Verification:
    """Pure: the verification outcome of one canary restore."""
    expected = manifest.canary.output if manifest.canary else None
    if not result.ok:
        failure = f"canary restore failed: {result.error}"
    elif expected is None:
        failure = "no canary output was recorded at dump time"
    elif result.output != expected:
        failure = (
            f"canary answer differs: dump time {expected[:200]!r}, restored {str(result.output)[:200]!r}"
        )
    else:
        return Verification(verified=True, verified_at=now, canary_restore_s=result.first_answer_s)
    return Verification(
        verified=False, verified_at=now, failure=failure, canary_restore_s=result.first_answer_s
    )


def verify(
    checkpoint_id: str,
    storage: Storage,
    criu: Criu,
    *,
    timeout_s: float = 600.0,
    runner: ScratchRunner = _run_scratch,
) -> Manifest:
    manifest = storage.read_manifest(checkpoint_id)
    path = storage.get(checkpoint_id)
    if manifest.canary is None or manifest.engine_port is None:
        result = ScratchResult(ok=False, error="the manifest has no canary request or engine port")
    else:
        logs = path / "logs"
        logs.mkdir(exist_ok=True)
        req = ScratchRequest(
            criu_argv=criu.argv,
            criu_version=criu.version,
            criu_network_lock=criu.network_lock,
            images=str(path / "images"),
            log_dir=str(logs),
            shell_job=manifest.criu_shell_job,
            engine_port=manifest.engine_port,
            canary=manifest.canary,
            gpu_pids=manifest.gpu_pids,
            after_restore=manifest.after_restore,
            timeout_s=timeout_s,
        )
        result = ScratchResult.model_validate_json(
            runner([*unshare_argv(), req.model_dump_json()], timeout_s + 30)
        )
    updated = manifest.model_copy(update={"verification": judge(manifest, result, datetime.now(UTC))})
    storage.write_manifest(checkpoint_id, updated)
    return updated


def images_path(storage: Storage, checkpoint_id: str) -> Path:
    return storage.get(checkpoint_id) / "images"
