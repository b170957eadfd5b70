"""vLLM's OpenAI server on the standard asyncio loop: uvloop's libuv opens an io_uring, which CRIU
cannot dump (shared/design/components.md). Same arguments as `python -m vllm.entrypoints.openai.api_server`."""

import asyncio
import runpy

import uvloop


def _asyncio_run(main, **kwargs):  # uvloop.run's signature: (main, *, loop_factory=None, debug=None)
    return asyncio.run(main, debug=kwargs.get("debug"))


uvloop.run = _asyncio_run
uvloop.new_event_loop = asyncio.new_event_loop
uvloop.install = lambda: None

if __name__ == "__main__":
    runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)
