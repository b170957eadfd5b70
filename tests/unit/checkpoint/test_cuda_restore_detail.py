"""A refused GPU restore names the process the driver refused and the state the driver reports for
every GPU process (on the H200 the injected supervisor's restore failed with a bare
`CUDA_ERROR_OPERATING_SYSTEM`, which said neither). The driver is replaced at our own seam."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest
from ember_checkpoint import cuda, lifecycle
from ember_checkpoint.errors import Reason, RestoreRefused
from ember_checkpoint.manifest import Identity, Manifest, Sizes, Timings

IDENT = Identity(model_digest="m@1", engine_version="e", criu_version="4.2.1", dtype="f", max_model_len=1)


class Driver:
    """Gives back the first process's GPU state, refuses the second's as the H200's driver did."""

    def __init__(self) -> None:
        self.states = {11: cuda.ProcessState.CHECKPOINTED, 12: cuda.ProcessState.CHECKPOINTED}

    def resume(self, pid: int) -> float:
        if pid == 12:
            raise cuda.CudaError("cuCheckpointProcessRestore", 304, "CUDA_ERROR_OPERATING_SYSTEM")
        self.states[pid] = cuda.ProcessState.RUNNING
        return 0.0

    def state(self, pid: int) -> cuda.ProcessState:
        return self.states[pid]


def test_the_refused_process_and_every_driver_state_are_in_the_detail() -> None:
    restored = subprocess.Popen(["sleep", "60"])  # stands in for the tree CRIU restored: killed on failure
    manifest = Manifest(
        checkpoint_id="ck",
        identity=IDENT,
        identity_hash=IDENT.hash(),
        created=datetime.now(UTC),
        sizes=Sizes(image_bytes=1, gpu_state_bytes=1),
        timings=Timings(),
        content_checksum="sha256:0",
        gpu_pids=[11, 12],
    )
    with pytest.raises(RestoreRefused) as e:
        lifecycle._after_criu_restore(restored.pid, manifest, Driver(), 1.0, {})  # type: ignore[arg-type]
    assert e.value.reason is Reason.CUDA_RESTORE_FAILED
    assert "CUDA_ERROR_OPERATING_SYSTEM (304)" in e.value.detail
    assert "at pid 12" in e.value.detail
    assert "11=running" in e.value.detail and "12=checkpointed" in e.value.detail
    assert restored.wait(timeout=10) != 0  # the half-restored tree does not run on
