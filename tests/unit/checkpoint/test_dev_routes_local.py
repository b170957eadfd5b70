"""vLLM's dev-mode routes (sleep, wake, collective_rpc, cache resets) are served only to loopback
clients by `ember_checkpoint.vllm_entry` (the real vLLM server is checked in
tests/integration/checkpoint/test_vllm_cpu_sleep.py)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from ember_checkpoint.vllm_entry import LocalOnly, local_only_paths


def _endpoint(module: str) -> Any:
    def f() -> None: ...

    f.__module__ = module
    return f


APP = SimpleNamespace(
    routes=[
        SimpleNamespace(path="/v1/completions", endpoint=_endpoint("vllm.entrypoints.openai.api_server")),
        SimpleNamespace(path="/pause", endpoint=_endpoint("vllm.entrypoints.serve.dev.pause.api_router")),
        SimpleNamespace(path="/metrics", endpoint=_endpoint("prometheus_client")),
    ]
)


def call(path: str, client: tuple[str, int] | None) -> tuple[int, Any]:
    reached: list[str] = []
    sent: list[dict[str, Any]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "http", "path": path, "client": client}
    asyncio.run(LocalOnly(inner, APP)(scope, None, send))
    body = next((m["body"] for m in sent if m["type"] == "http.response.body"), b"")
    return sent[0]["status"], (json.loads(body) if body else None) if not reached else "reached"


def test_dev_routes_answer_403_to_a_client_off_loopback_and_reach_the_app_from_loopback() -> None:
    for path in ("/sleep", "/wake_up", "/collective_rpc", "/reset_prefix_cache", "/pause", "/sleep/"):
        status, body = call(path, ("10.244.0.7", 51000))
        assert status == 403, path
        assert "loopback" in body["error"]
        for local in (("127.0.0.1", 4000), ("::1", 4000), ("::ffff:127.0.0.1", 4000)):
            assert call(path, local) == (200, "reached"), (path, local)


def test_everything_else_is_served_to_anyone() -> None:
    for path in ("/v1/completions", "/metrics", "/health", "/v1/models"):
        assert call(path, ("10.244.0.7", 51000)) == (200, "reached"), path


def test_a_request_with_no_client_address_is_not_local() -> None:
    assert call("/sleep", None)[0] == 403


def test_the_paths_are_the_named_ones_and_the_dev_routers_own() -> None:
    paths = local_only_paths(APP)
    assert "/pause" in paths and "/collective_rpc" in paths
    assert "/v1/completions" not in paths and "/metrics" not in paths
