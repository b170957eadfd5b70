"""The activator's proxy in process, in front of a simulated replica that serves vLLM's API over
HTTP (ember_sim's OpenAI front on its queueing model): holding, release, refusals with reasons,
streaming passed through byte for byte, a client that leaves frees its slot. The routing events
(which replicas receive traffic) are fed to the catalog directly: that seam is ours."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from ember_activator.catalog import Catalog, ServiceInfo
from ember_activator.config import Settings
from ember_activator.hold import Hold
from ember_activator.metrics import Metrics
from ember_activator.proxy import Proxy
from ember_sim.fleet import Fleet
from ember_sim.live import LiveRunner, StaticMembership

pytestmark = pytest.mark.anyio
K = ("ns", "chat")
HOST = "chat.ns.svc.cluster.local"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def replica() -> Iterator[str]:
    """One simulated replica serving HTTP on 127.0.0.1 (served model name: chat)."""
    runner = LiveRunner(Fleet(), [], StaticMembership.of(1), inferenceservice="chat", serve_http=True).start()
    stop = threading.Event()
    t = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    t.start()
    yield f"127.0.0.1:{runner.exporters['sim-0'].port}"
    stop.set()
    t.join(5)
    runner.close()


@dataclass
class Stack:
    proxy: Proxy
    catalog: Catalog
    hold: Hold
    url: str
    demand: list[int]

    def serve(self, addr: str) -> None:
        self.catalog.routes[K] = ("replicas", {"chat-0": addr})
        self.hold.set_replicas(K, self.catalog.replicas(K))

    def metric(self, metric: str, **labels: str) -> float:
        return self.proxy.metrics.registry.get_sample_value(metric, labels) or 0.0


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    s = Settings(max_held_per_service=3, hold_timeout_seconds=2.0, max_body_bytes=4096, keepalive_seconds=0.1)
    demand: list[int] = []
    cat = Catalog(services={K: ServiceInfo("restore", 12.0)})
    hold = Hold(s.max_held_per_service, 2)
    proxy = Proxy(s, cat, hold, Metrics.create(), push=lambda k, n: demand.append(n))
    runner = web.AppRunner(proxy.app(), handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Stack(proxy, cat, hold, f"http://127.0.0.1:{port}", demand)
    await runner.cleanup()


def completion(**kw: object) -> dict[str, object]:
    return {"model": "chat", "prompt": "hello there", "max_tokens": 8, **kw}


async def post(
    url: str, body: object, path: str = "/v1/completions", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.post(url + path, data=json.dumps(body) if not isinstance(body, bytes) else body,
                                                    headers={"Host": HOST, "Content-Type": "application/json", **headers}) as r:  # fmt: skip
        return r.status, dict(r.headers), await r.read()


async def test_held_at_zero_then_answered_when_a_replica_serves(stack: Stack, replica: str) -> None:
    reqs = [asyncio.create_task(post(stack.url, completion())) for _ in range(3)]
    await asyncio.sleep(0.3)
    assert (
        stack.hold.held(K) == 3
        and stack.metric("ember_activator_held_requests", namespace="ns", name="chat") == 3
    )
    assert stack.demand[:3] == [1, 2, 3], "each held request is pushed as demand at once"
    assert stack.metric("ember_activator_activations_total", namespace="ns", name="chat") == 1
    stack.serve(replica)
    answers = await asyncio.gather(*reqs)
    assert [a[0] for a in answers] == [200] * 3
    assert all(json.loads(a[2])["choices"][0]["text"] for a in answers)
    assert stack.hold.held(K) == 0 and stack.demand[-1] == 0
    assert stack.metric("ember_activator_hold_seconds_count", namespace="ns", name="chat") == 3
    assert stack.metric("ember_activator_hold_seconds_sum", namespace="ns", name="chat") > 0.6


async def test_past_the_bound_429_with_retry_after_from_the_time_to_ready(stack: Stack, replica: str) -> None:
    held = [asyncio.create_task(post(stack.url, completion())) for _ in range(3)]
    await asyncio.sleep(0.3)
    code, headers, body = await post(stack.url, completion())
    assert code == 429 and headers["X-Ember-Reason"] == "QueueFull"
    assert 10 <= int(headers["Retry-After"]) <= 12, "the start path's 12 s, less the time already held"
    assert json.loads(body)["error"]["code"] == 429
    stack.serve(replica)
    assert [c for c, _, _ in await asyncio.gather(*held)] == [200] * 3, "none of the held ones is lost"


async def test_past_the_hold_timeout_503_with_the_reason(stack: Stack) -> None:
    code, headers, body = await post(stack.url, completion())
    assert code == 503 and headers["X-Ember-Reason"] == "HoldTimeout"
    assert "no replica of ns/chat served within 2 s" in json.loads(body)["error"]["message"]
    assert stack.hold.held(K) == 0


async def test_oversize_body_413_before_it_is_held(stack: Stack) -> None:
    code, headers, _ = await post(stack.url, completion(prompt="x" * 5000))
    assert code == 413 and headers["X-Ember-Reason"] == "BodyTooLarge"
    assert stack.demand == [], "never held, never pushed as demand"


async def test_a_client_that_disconnects_frees_its_slot_at_once(stack: Stack) -> None:
    with pytest.raises(asyncio.TimeoutError):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as s:
            await s.post(stack.url + "/v1/completions", json=completion(), headers={"Host": HOST})
    await asyncio.sleep(0.1)
    assert stack.hold.held(K) == 0 and stack.demand == [1, 0]


async def test_vllms_own_answers_pass_through_unchanged(stack: Stack, replica: str) -> None:
    stack.serve(replica)
    direct = f"http://{replica}"
    for body, path in ((b"{not json", "/v1/completions"), (completion(model="nope"), "/v1/completions"),
                       (completion(), "/v1/unknown")):  # fmt: skip
        via = await post(stack.url, body, path)
        got = await post(direct, body, path)
        assert via[0] == got[0] and json.loads(via[2]) == json.loads(got[2]), path
    async with aiohttp.ClientSession() as s, s.get(stack.url + "/v1/models", headers={"Host": HOST}) as r:
        assert r.status == 200 and (await r.json())["data"][0]["id"] == "chat"


async def test_streaming_is_passed_through_as_sse(stack: Stack, replica: str) -> None:
    stack.serve(replica)
    code, headers, body = await post(stack.url, completion(stream=True), "/v1/chat/completions")
    assert code == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = [e for e in body.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]" and json.loads(events[0][6:])["object"] == "chat.completion.chunk"


async def test_opt_in_keepalives_for_a_held_stream(stack: Stack, replica: str) -> None:
    task = asyncio.create_task(post(stack.url, completion(stream=True), **{"X-Ember-Hold-Keepalive": "true"}))
    await asyncio.sleep(0.35)
    stack.serve(replica)
    code, _, body = await task
    text = body.decode()
    assert code == 200 and text.startswith(": held, replica expected in ")
    assert text.count(": held") >= 2 and text.rstrip().endswith("data: [DONE]")


async def test_unknown_host_is_404_with_the_reason(stack: Stack) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.get(stack.url + "/v1/models", headers={"Host": "a.b.example.com"}) as r,
    ):
        assert r.status == 404 and r.headers["X-Ember-Reason"] == "UnknownService"
