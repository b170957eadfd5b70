"""Continuing a tree that `criu restore --leave-stopped` left stopped, GPU state first."""

from __future__ import annotations

import contextlib
import os
import signal

from ember_checkpoint import cuda
from ember_checkpoint.criu import tree_depths


def resume_tree(
    root: int, gpu: cuda.CudaDriver | None, gpu_pids: list[int], at: list[int] | None = None
) -> None:
    """After `criu restore --leave-stopped`: give each GPU process its GPU state back while the
    processes that could send it work stay stopped, then continue the rest.

    Why: a restored process whose GPU state is not back yet crashes on its first CUDA call (the UVM
    mappings are not there; CRIU's own CUDA plugin keeps tasks frozen for this reason). Restoring
    after CRIU had let the tree run, the H200 showed it: a request polled into the restored API
    server reached EngineCore, whose pinned-memory allocation segfaulted in cuEventQuery, and the
    driver's restore of that process failed with CUDA_ERROR_OPERATING_SYSTEM. So the GPU processes
    are continued one at a time, deepest first (a worker before the process that feeds it: vLLM's
    EngineCore before its API server, which owns the listening socket), each given its state back
    (restore + unlock) as soon as it runs; the other tasks are continued last, deepest first.

    CRIU restores the original pids, so the pids recorded at dump time name the same processes. `at`
    receives the GPU pid being resumed (the failure's detail)."""
    depth = tree_depths(root)
    order = sorted(depth, key=lambda p: (-depth[p], p))
    if gpu is not None:
        for p in sorted(gpu_pids, key=lambda p: (-depth.get(p, 0), p)):
            if at is not None:
                at.append(p)
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
            gpu.resume(p)
        if at is not None:
            at.clear()
    for p in order:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGCONT)
