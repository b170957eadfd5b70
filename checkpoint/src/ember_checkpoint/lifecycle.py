"""Dump, restore, verify and gc: the checkpoint lifecycle, on top of CRIU, the CUDA driver and a Storage.

dump:    preflight (no io_uring in the tree) -> canary (record one deterministic answer) -> quiesce -> CUDA lock+checkpoint of every process
         in the tree that holds GPU state -> CRIU dump -> (live dump: CUDA restore+unlock) ->
         checksum -> manifest -> atomic publish.
restore: every check that needs no side effect first (manifest, identity, verified, CRIU, GPU,
         checksum), so a refusal leaves nothing behind; then CRIU restore -> CUDA restore+unlock ->
         wait for health. A failure after CRIU has restored anything kills the restored tree, so the
         caller's fallback (a cold start) finds the port and the pids free.
verify:  a canary restore in a scratch place (fresh pid and network namespaces, see `scratch`), the
         canary request there, and the answer compared with the one recorded at dump time.
gc:      `gc.plan_gc`, then delete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx

from ember_checkpoint import checksum, cuda, engine_http, preflight, shm
from ember_checkpoint.criu import (
    Criu,
    CriuFailed,
    CriuNotFound,
    CriuTooOld,
    needs_shell_job,
    parse_proc_stat,
    process_tree,
)
from ember_checkpoint.errors import DumpFailed, Reason, RestoreRefused
from ember_checkpoint.gc import plan_gc
from ember_checkpoint.manifest import Canary, HttpStep, Identity, Manifest, ProcessMemory, Sizes, Timings
from ember_checkpoint.resume import resume_tree
from ember_checkpoint.storage import CheckpointNotFound, Storage, write_manifest_file

log = logging.getLogger("ember.checkpoint")
WeightLoader = Literal["vllm", "ember"]


@dataclass
class DumpRequest:
    pid: int
    checkpoint_id: str
    identity: Identity
    engine_port: int | None = None
    health_path: str = "/health"
    canary: Canary | None = None
    leave_running: bool = False  # a live checkpoint: the engine keeps serving afterwards
    # vLLM sleep level to put the engine in before the GPU checkpoint (None: dump it awake). Level 1
    # drops the KV cache and keeps one copy of the weights, in host memory: the image shrinks by the
    # KV cache, and after the restore `POST /wake_up` copies the weights back at pinned-memory speed.
    sleep_level: int | None = None
    # Who re-reads the weights after a level-2 restore: "ember" is `weights.EmberWorkerExtension`
    # (the engine must run with `--worker-extension-cls`, see `weights.WORKER_EXTENSION`), with vLLM's
    # `reload_weights` as its fallback; "vllm" is vLLM's alone.
    weight_loader: WeightLoader = "ember"
    # A live dump of an asleep engine wakes it afterwards (the manifest's `after_restore` steps); False
    # leaves it asleep for the caller to wake, e.g. after a verify that restores the image beside it
    # (the GPU then holds the verify copy and the asleep original, never two awake engines).
    wake_after: bool = True
    timeout_s: float = 600.0


VLLM_RELOAD = HttpStep(method="POST", path="/collective_rpc", json_body={"method": "reload_weights"})
EMBER_RELOAD = HttpStep(
    method="POST", path="/collective_rpc", json_body={"method": "ember_reload_weights"}, fallback=VLLM_RELOAD
)
# Before the GPU checkpoint of an asleep engine: return the blocks PyTorch's caching allocators keep
# (GPU and pinned host) so the image does not carry them; best effort (an engine without Ember's
# worker extension answers an error and is dumped as it is).
RELEASE_CACHED = HttpStep(method="POST", path="/collective_rpc", json_body={"method": "ember_release_memory"})


def wake_steps(sleep_level: int, weight_loader: WeightLoader = "ember") -> list[HttpStep]:
    """What a restored engine that was dumped asleep needs before it serves. Level 1 kept the weights
    in host memory: `POST /wake_up` copies them back. Level 2 discarded them (the image holds no weights
    at all): after the wake they are uninitialised memory, and the weights are re-read from the model's
    files (dev-mode `POST /collective_rpc`): by Ember's parallel pinned loader, falling back to vLLM's
    `reload_weights` on any error, or by vLLM's alone; the canary of a verify catches a missing reload."""
    if sleep_level not in (1, 2):
        raise DumpFailed(f"sleep_level {sleep_level}: vLLM has levels 1 and 2")
    if weight_loader not in ("vllm", "ember"):
        raise DumpFailed(f"weight_loader {weight_loader!r}: 'vllm' or 'ember'")
    steps = [HttpStep(method="POST", path="/wake_up")]
    if sleep_level == 2:
        steps.append(EMBER_RELOAD if weight_loader == "ember" else VLLM_RELOAD)
    return steps


def dump(
    req: DumpRequest,
    storage: Storage,
    criu: Criu,
    gpu: cuda.CudaDriver | None,
    quiesce: Callable[[], None] | None = None,
) -> Manifest:
    t_start = time.monotonic()
    preflight.check_no_io_uring(process_tree(req.pid))  # before anything touches the engine
    timings = Timings()
    canary = req.canary
    if canary is not None:
        if req.engine_port is None:
            raise DumpFailed("a canary needs the engine's port")
        output = engine_http.run_canary(f"http://127.0.0.1:{req.engine_port}", canary)
        canary = canary.model_copy(update={"output": output})
    if quiesce is not None:
        t0 = time.monotonic()
        quiesce()
        timings.quiesce_s = time.monotonic() - t0
    wake: list[HttpStep] = []
    if req.sleep_level is not None:
        if req.engine_port is None:
            raise DumpFailed("putting the engine to sleep needs the engine's port")
        wake = wake_steps(
            req.sleep_level, req.weight_loader
        )  # refuses bad values before the engine is touched
        timings.sleep_s = engine_http.sleep(f"http://127.0.0.1:{req.engine_port}", req.sleep_level)
        if req.weight_loader == "ember":
            _release_cached(f"http://127.0.0.1:{req.engine_port}", req.timeout_s)
    tree = process_tree(req.pid)
    trim_api_servers(tree)
    root = parse_proc_stat(Path(f"/proc/{req.pid}/stat").read_text())
    shell_job = needs_shell_job(root, tree)
    gpu_pids = sorted(p for p in tree if gpu is not None and gpu.has_cuda_state(p))
    gpu_by_pid = {p: cuda.gpu_memory_bytes(p) for p in gpu_pids}  # before the driver moves it out
    gpu_bytes = sum(gpu_by_pid.values())
    staging = storage.staging(req.checkpoint_id)
    stale = shm.remove_stale_link_remaps()
    if stale:
        log.warning(json.dumps({"event": "removed_stale_link_remaps", "files": stale}))
    shm_files, old_remaps = shm.mapped_shm_files(tree), shm.link_remaps()
    try:
        timings.cuda_checkpoint_s = sum(gpu.suspend(p) for p in gpu_pids) if gpu else 0.0
        memory = process_memory(tree, gpu_by_pid)
        try:
            timings.criu_dump_s = criu.dump(
                req.pid,
                staging / "images",
                staging / "logs/dump.log",
                shell_job=shell_job,
                leave_running=req.leave_running,
                timeout_s=req.timeout_s,
                action_script=str(
                    shm.write_capture_script(
                        (staging / "shm-capture.sh").resolve(),
                        shm_files,
                        (staging / "images").resolve(),
                        old_remaps,
                    )
                ),
            )
        finally:
            # The engine keeps running after a live dump or a failed one: give its GPU state back.
            if req.leave_running or _alive(req.pid):
                if gpu:
                    for p in gpu_pids:
                        gpu.resume(p)
                if wake and req.wake_after and req.engine_port is not None:
                    engine_http.run_steps(f"http://127.0.0.1:{req.engine_port}", wake, req.timeout_s)
        t0 = time.monotonic()
        digest = checksum.content_checksum(staging / "images")
        checksum.write_stamp(staging / "images", digest)  # hashed where it lands: a restore here trusts it
        timings.checksum_s = time.monotonic() - t0
        timings.total_s = time.monotonic() - t_start
        manifest = Manifest(
            checkpoint_id=req.checkpoint_id,
            identity=req.identity,
            identity_hash=req.identity.hash(),
            created=datetime.now(UTC),
            sizes=Sizes(
                image_bytes=checksum.total_bytes(staging / "images"),
                gpu_state_bytes=gpu_bytes,
                processes=memory,
            ),
            timings=timings,
            content_checksum=digest,
            engine_port=req.engine_port,
            health_path=req.health_path,
            criu_shell_job=shell_job,
            gpu_pids=gpu_pids,
            canary=canary,
            engine_sleep_level=req.sleep_level,
            after_restore=wake,
        )
        write_manifest_file(staging, manifest)
        storage.publish(staging, req.checkpoint_id)
        return manifest
    except BaseException:
        _remove_tree(staging)
        raise


def _signal_main_thread(pid: int, sig: int) -> None:
    """tgkill(pid, pid, sig): to the process's main thread, where Python runs signal handlers; a
    process-directed signal may land on a native thread and wait for the loop's next wake-up."""
    import ctypes
    import platform

    nr = {"x86_64": 234, "aarch64": 131}.get(platform.machine())
    if nr is not None:
        with contextlib.suppress(OSError, AttributeError):
            if ctypes.CDLL(None, use_errno=True).syscall(nr, pid, pid, int(sig)) == 0:
                return
    os.kill(pid, sig)


def trim_api_servers(tree: set[int], wait_s: float = 3.0, proc: Path = Path("/proc")) -> list[dict]:
    """Ask every process of the tree that runs `ember_checkpoint.vllm_entry` (only those: they answer
    vllm_entry.TRIM_SIGNAL, which would kill any other) to give its free heap back before the dump,
    and wait up to `wait_s` for each one's result. Best effort: a dump never fails for it."""
    from ember_checkpoint import vllm_entry

    results = []
    for pid in sorted(tree):
        try:
            argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if vllm_entry.MODULE.encode() not in argv:
            continue
        path = vllm_entry.trim_result_path(pid, proc / str(pid) / "root")
        with contextlib.suppress(OSError):
            path.unlink()
        try:
            _signal_main_thread(pid, vllm_entry.TRIM_SIGNAL)
        except OSError as e:
            results.append({"pid": pid, "error": str(e)})
            continue
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                results.append({"pid": pid, **json.loads(path.read_text())})
                path.unlink()
                break
            except (OSError, ValueError):
                time.sleep(0.02)
        else:
            results.append({"pid": pid, "error": f"no answer within {wait_s} s"})
    for r in results:
        log.info(json.dumps({"event": "trim_api_server", **r}))
    return results


def _kib(fields: dict[str, str], key: str) -> int:
    v = fields.get(key, "").split()
    return int(v[0]) * 1024 if v else 0


def process_memory(
    pids: set[int] | list[int], gpu_bytes: dict[int, int], proc: Path = Path("/proc")
) -> list[ProcessMemory]:
    """Name, resident anonymous and shared memory of each process (from /proc/<pid>/status), largest
    first: the breakdown of what a dump writes. A process that is gone or unreadable is left out."""
    out = []
    for pid in pids:
        try:
            fields = dict(
                line.split(":", 1)
                for line in (proc / str(pid) / "status").read_text().splitlines()
                if ":" in line
            )
        except OSError:
            continue

        out.append(
            ProcessMemory(
                pid=pid,
                name=fields.get("Name", "").strip(),
                anon_bytes=_kib(fields, "RssAnon"),
                shmem_bytes=_kib(fields, "RssShmem"),
                gpu_bytes=gpu_bytes.get(pid, 0),
            )
        )
    return sorted(out, key=lambda m: (-m.anon_bytes, m.pid))


@dataclass
class RestoreResult:
    pid: int
    manifest: Manifest
    phases_s: dict[str, float] = field(default_factory=dict)


def check_restorable(
    manifest: Manifest, expected: Identity, *, require_verified: bool, gpu: cuda.CudaDriver | None
) -> None:
    """The checks that need no I/O beyond the manifest (pure): raise RestoreRefused with the reason."""
    if manifest.identity.hash() != manifest.identity_hash:
        raise RestoreRefused(Reason.MANIFEST_INVALID, "identity_hash does not match the identity it claims")
    if manifest.identity_hash != expected.hash():
        diffs = expected.differences(manifest.identity)
        detail = ", ".join(f"{k}: here {a!r}, checkpoint {b!r}" for k, (a, b) in sorted(diffs.items()))
        raise RestoreRefused(Reason.IDENTITY_MISMATCH, detail)
    if require_verified and not manifest.verified:
        raise RestoreRefused(
            Reason.NOT_VERIFIED, manifest.verification.failure or "no canary restore passed yet"
        )
    if manifest.gpu_pids and gpu is None:
        raise RestoreRefused(
            Reason.GPU_UNAVAILABLE, "the image holds GPU state and this machine has no CUDA driver"
        )


def find_criu(finder: Callable[[], Criu]) -> Criu:
    try:
        return finder()
    except CriuTooOld as e:
        raise RestoreRefused(Reason.CRIU_TOO_OLD, str(e)) from e
    except (CriuNotFound, OSError) as e:
        raise RestoreRefused(Reason.CRIU_MISSING, str(e)) from e


def restore(
    checkpoint_id: str,
    storage: Storage,
    expected: Identity,
    *,
    criu_finder: Callable[[], Criu] = Criu.find,
    gpu: cuda.CudaDriver | None = None,
    require_verified: bool = True,
    verify_checksum: bool = True,
    health_timeout_s: float = 300.0,
    log_dir: Path | None = None,
) -> RestoreResult:
    phases: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        manifest = storage.read_manifest(checkpoint_id)
        path = storage.get(checkpoint_id)
    except CheckpointNotFound as e:
        raise RestoreRefused(Reason.NOT_FOUND, str(e)) from e
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise RestoreRefused(Reason.MANIFEST_INVALID, str(e)[:500]) from e
    check_restorable(manifest, expected, require_verified=require_verified, gpu=gpu)
    criu = find_criu(criu_finder)
    if verify_checksum:
        t1 = time.monotonic()
        try:
            same, actual, trusted = checksum.verify_image(path / "images", manifest.content_checksum)
        except ValueError as e:
            raise RestoreRefused(Reason.MANIFEST_INVALID, str(e)) from e
        phases["checksum_stamp" if trusted else "checksum"] = time.monotonic() - t1
        if not same:
            raise RestoreRefused(
                Reason.CHECKSUM_MISMATCH, f"image is {actual}, manifest says {manifest.content_checksum}"
            )
    try:
        shm.reinstate(path / "images")
    except OSError as e:
        raise RestoreRefused(
            Reason.CRIU_RESTORE_FAILED, f"cannot write the image's /dev/shm files: {e}"
        ) from e
    logs = log_dir or _writable(path / "logs")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    t1 = time.monotonic()
    try:
        pid = criu.restore(
            path / "images",
            logs / f"restore-{stamp}.log",
            logs / f"restore-{stamp}.pid",
            shell_job=manifest.criu_shell_job,
            timeout_s=health_timeout_s,
            leave_stopped=True,  # continued by resume_tree, GPU state first
        )
    except CriuFailed as e:
        raise RestoreRefused(Reason.CRIU_RESTORE_FAILED, e.log_tail[-1500:]) from e
    phases["criu_restore"] = time.monotonic() - t1
    _after_criu_restore(pid, manifest, gpu, health_timeout_s, phases)
    phases["total"] = time.monotonic() - t0
    return RestoreResult(pid=pid, manifest=manifest, phases_s=phases)


def _after_criu_restore(
    pid: int,
    manifest: Manifest,
    gpu: cuda.CudaDriver | None,
    health_timeout_s: float,
    phases: dict[str, float],
) -> None:
    at: list[int] = []  # the pid whose GPU state is being given back, for the failure's detail
    try:
        t1 = time.monotonic()
        resume_tree(pid, gpu, manifest.gpu_pids, at)
        if gpu is not None and manifest.gpu_pids:
            phases["cuda_restore"] = time.monotonic() - t1
        if manifest.after_restore and manifest.engine_port is not None:
            base = f"http://127.0.0.1:{manifest.engine_port}"
            phases["wake"] = engine_http.run_steps(base, manifest.after_restore, health_timeout_s)
        if manifest.engine_port is not None:
            url = f"http://127.0.0.1:{manifest.engine_port}{manifest.health_path}"
            phases["health"] = engine_http.wait_healthy(url, health_timeout_s)
    except cuda.CudaError as e:
        detail = str(e) if not at or gpu is None else f"{e}; {_driver_view(gpu, at[-1], manifest.gpu_pids)}"
        kill_tree(pid)
        raise RestoreRefused(Reason.CUDA_RESTORE_FAILED, detail) from e
    except (TimeoutError, httpx.HTTPStatusError) as e:
        kill_tree(pid)
        raise RestoreRefused(Reason.HEALTH_TIMEOUT, str(e)) from e


def _driver_view(gpu: cuda.CudaDriver, failed: int, pids: list[int]) -> str:
    """Which process's GPU state the driver refused, and the state it reports for each GPU process
    (a failed restore leaves the rest unrestored): the evidence a failed restore's record needs."""
    states = []
    for p in pids:
        try:
            states.append(f"{p}={gpu.state(p).name.lower()}")
        except cuda.CudaError as e:
            states.append(f"{p}=unknown ({e.code})")
    return f"at pid {failed}; driver states {', '.join(states)}"


def gc(storage: Storage, keep: int) -> list[str]:
    manifests = []
    for cid in storage.list():
        try:
            manifests.append(storage.read_manifest(cid))
        except ValueError:
            continue  # an unreadable manifest is reported by `inspect`, never deleted blindly
    doomed = plan_gc(manifests, keep)
    for cid in doomed:
        storage.delete(cid)
    return doomed


def _release_cached(base_url: str, timeout_s: float) -> None:
    try:
        engine_http.run_steps(base_url, [RELEASE_CACHED], timeout_s)
    except (httpx.HTTPError, TimeoutError) as e:
        log.warning(json.dumps({"event": "release_cached_memory_failed", "reason": str(e)[:300]}))


def kill_tree(pid: int) -> None:
    for p in sorted(process_tree(pid), reverse=True):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (a zombie is not: after a successful dump CRIU kills the tree, and until its parent
    reaps it the root answers kill(pid, 0); resuming its GPU state then fails and discards the image)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return parse_state(Path(f"/proc/{pid}/stat").read_text()) not in ("Z", "X")
    except OSError:
        return False


def parse_state(stat_text: str) -> str:
    """The state letter of a /proc/PID/stat line (comm may hold spaces and parentheses)."""
    return stat_text.rpartition(")")[2].split()[0]


def _writable(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    import tempfile

    return Path(tempfile.mkdtemp(prefix="ember-restore-logs-"))


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
