"""The CUDA driver's process checkpoint API, through ctypes on libcuda.so.1 (driver 570+).

A checkpointer process (us) drives another process's GPU state:
  lock (block its CUDA calls) -> checkpoint (GPU memory to host memory, device handles released)
  ... CRIU dumps or restores the now GPU-free process ...
  restore (host memory back to the GPU) -> unlock (its CUDA calls run again).
Signatures (CUDA driver API, "CUDA Checkpointing"):
  CUresult cuCheckpointProcessLock(int pid, CUcheckpointLockArgs *args)
  CUresult cuCheckpointProcessCheckpoint(int pid, CUcheckpointCheckpointArgs *args)
  CUresult cuCheckpointProcessRestore(int pid, CUcheckpointRestoreArgs *args)
  CUresult cuCheckpointProcessUnlock(int pid, CUcheckpointUnlockArgs *args)
  CUresult cuCheckpointProcessGetState(int pid, CUprocessState *state)
CUcheckpointLockArgs is {unsigned timeoutMs; unsigned reserved0; cuuint64_t reserved1[7]}; the other
args are optional (NULL): no GPU remapping on restore, no custom storage. The driver requires cuInit
(or persistence mode) in the caller before a restore, so `load()` calls cuInit(0).

Without libcuda.so.1 (a CPU machine) `load()` returns None and the lifecycle skips the GPU step. A
process that never touched CUDA reports an error from GetState: `has_cuda_state` says False for it.
"""

from __future__ import annotations

import ctypes
import enum
import time
from dataclasses import dataclass
from typing import Any

CUDA_SUCCESS = 0


class ProcessState(enum.IntEnum):
    RUNNING = 0
    LOCKED = 1
    CHECKPOINTED = 2
    FAILED = 3


class CuCheckpointLockArgs(ctypes.Structure):
    _fields_ = [
        ("timeoutMs", ctypes.c_uint),
        ("reserved0", ctypes.c_uint),
        ("reserved1", ctypes.c_uint64 * 7),
    ]


class CudaError(RuntimeError):
    def __init__(self, call: str, code: int, name: str) -> None:
        super().__init__(f"{call} failed: {name} ({code})")
        self.call = call
        self.code = code


@dataclass(frozen=True)
class GpuInfo:
    driver_version: str  # e.g. "13.0" from cuDriverGetVersion (13000)
    gpu_model: str  # name of device 0, e.g. "NVIDIA H100 80GB HBM3"


class CudaDriver:
    """Thin wrapper: one method per driver call, errors raised as CudaError."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        for name in (
            "cuCheckpointProcessLock",
            "cuCheckpointProcessCheckpoint",
            "cuCheckpointProcessRestore",
            "cuCheckpointProcessUnlock",
        ):
            getattr(lib, name).argtypes = [ctypes.c_int, ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_int
        lib.cuCheckpointProcessGetState.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.cuCheckpointProcessGetState.restype = ctypes.c_int

    def _check(self, call: str, code: int) -> None:
        if code != CUDA_SUCCESS:
            raw = ctypes.c_char_p()
            self._lib.cuGetErrorName(code, ctypes.byref(raw))
            raise CudaError(call, code, (raw.value or b"?").decode())

    def info(self) -> GpuInfo:
        v = ctypes.c_int()
        self._check("cuDriverGetVersion", self._lib.cuDriverGetVersion(ctypes.byref(v)))
        dev = ctypes.c_int()
        self._check("cuDeviceGet", self._lib.cuDeviceGet(ctypes.byref(dev), 0))
        name = ctypes.create_string_buffer(256)
        self._check("cuDeviceGetName", self._lib.cuDeviceGetName(name, 256, dev))
        return GpuInfo(
            driver_version=f"{v.value // 1000}.{v.value % 1000 // 10}", gpu_model=name.value.decode()
        )

    def state(self, pid: int) -> ProcessState:
        s = ctypes.c_int()
        self._check(
            "cuCheckpointProcessGetState", self._lib.cuCheckpointProcessGetState(pid, ctypes.byref(s))
        )
        return ProcessState(s.value)

    def has_cuda_state(self, pid: int) -> bool:
        try:
            self.state(pid)
        except CudaError:
            return False
        return True

    def lock(self, pid: int, timeout_ms: int) -> None:
        args = CuCheckpointLockArgs(timeoutMs=timeout_ms)
        self._check("cuCheckpointProcessLock", self._lib.cuCheckpointProcessLock(pid, ctypes.byref(args)))

    def checkpoint(self, pid: int) -> None:
        self._check("cuCheckpointProcessCheckpoint", self._lib.cuCheckpointProcessCheckpoint(pid, None))

    def restore(self, pid: int) -> None:
        self._check("cuCheckpointProcessRestore", self._lib.cuCheckpointProcessRestore(pid, None))

    def unlock(self, pid: int) -> None:
        self._check("cuCheckpointProcessUnlock", self._lib.cuCheckpointProcessUnlock(pid, None))

    def suspend(self, pid: int, lock_timeout_ms: int = 30_000) -> float:
        """lock + checkpoint; returns seconds."""
        t0 = time.monotonic()
        self.lock(pid, lock_timeout_ms)
        self.checkpoint(pid)
        return time.monotonic() - t0

    def resume(self, pid: int) -> float:
        """restore + unlock; returns seconds."""
        t0 = time.monotonic()
        self.restore(pid)
        self.unlock(pid)
        return time.monotonic() - t0


def load(libname: str = "libcuda.so.1") -> CudaDriver | None:
    """The driver, or None when this machine has no NVIDIA driver (CPU: the GPU step is skipped)."""
    try:
        lib = ctypes.CDLL(libname)
    except OSError:
        return None
    if not hasattr(lib, "cuCheckpointProcessLock"):
        return None  # a driver older than the checkpoint API: treated as no GPU support
    if lib.cuInit(0) != CUDA_SUCCESS:
        return None  # driver present but no usable device (e.g. a container without the GPU)
    return CudaDriver(lib)


def gpu_memory_bytes(pid: int) -> int:
    """GPU memory a process holds, from nvidia-smi's accounting (0 when unknown)."""
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    total = 0
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
            total += int(parts[1]) * 1024 * 1024
    return total
