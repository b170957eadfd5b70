"""The reverse proxy (aiohttp server and client): hold, forward, or refuse with a reason.

Every path is forwarded unchanged (method, path, query, body, headers minus hop-by-hop ones), and
the replica's answer is streamed back byte for byte (SSE included, no decompression), so clients see
vLLM's own API and errors: malformed JSON, an unknown model or an unknown path get exactly vLLM's
answer. The activator answers itself only when it must, always with vLLM's error shape
`{"error": {"message", "type", "param", "code"}}` and the header `X-Ember-Reason`:

- 413 BodyTooLarge: the body exceeds `max_body_bytes` (before anything is held);
- 404 UnknownService: the Host names no InferenceService the activator knows;
- 429 QueueFull: the service already holds `max_held_per_service`; `Retry-After` is the expected
  time to ready of the start path the operator chose, less the time the activation has been going;
- 503 HoldTimeout: no replica served within `hold_timeout_seconds`;
- 502 ReplicaUnreachable: replicas were chosen twice and neither could be connected to.

A streaming request (`"stream": true`) held while its service opted in (header
`X-Ember-Hold-Keepalive: true`, or the InferenceService annotation serving.ember.dev/hold-keepalive)
gets `200 text/event-stream` at once and an SSE comment every `keepalive_seconds` while it waits
(`: held, replica expected in 12 s`); the replica's stream follows on the same response. A refusal
after that point is sent as an SSE `data: {"error": ...}` event, as vLLM reports errors mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from ember_activator.catalog import SERVICE_HEADER, Catalog, Key
from ember_activator.config import Settings
from ember_activator.hold import Hold, HoldTimeout, QueueFull, Replica
from ember_activator.metrics import Metrics

log = logging.getLogger("ember.activator")
HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
}  # fmt: skip
KEEPALIVE_HEADER = "X-Ember-Hold-Keepalive"
CONNECT_ATTEMPTS = 2


class Refusal(Exception):
    def __init__(self, code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.headers = code, reason, message, headers or {}

    def body(self) -> dict[str, Any]:
        kind = {413: "BadRequestError", 404: "NotFoundError", 429: "RateLimitError"}.get(
            self.code, "ServiceUnavailableError"
        )
        return {"error": {"message": self.message, "type": kind, "param": None, "code": self.code}}

    def response(self) -> web.Response:
        return web.json_response(
            self.body(), status=self.code, headers={"X-Ember-Reason": self.reason, **self.headers}
        )


class Proxy:
    def __init__(self, settings: Settings, catalog: Catalog, hold: Hold, metrics: Metrics,
                 push: Callable[[Key, int], None] = lambda k, n: None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.s, self.catalog, self.hold, self.metrics, self.clock = settings, catalog, hold, metrics, clock
        self.push = push
        self.activation_started: dict[Key, float] = {}
        self.session: aiohttp.ClientSession | None = None
        hold.on_change = self.held_changed

    def held_changed(self, key: Key, held: int) -> None:
        """The hold queue's count moved: gauge, demand push (at once), and the activation line."""
        self.metrics.held.labels(*key).set(held)
        if held == 1 and key not in self.activation_started and not self.catalog.replicas(key):
            self._activation(key)
        if held == 0:
            self.activation_started.pop(key, None)
        self.push(key, held)

    # ---- wiring -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.s.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _: web.Application) -> None:
        timeout = aiohttp.ClientTimeout(total=self.s.upstream_timeout_seconds, sock_connect=5)
        conn = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(timeout=timeout, connector=conn, auto_decompress=False)

    async def _close(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    # ---- the request path ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = self.catalog.resolve(request.host, request.headers.get(SERVICE_HEADER))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(
                key, Refusal(413, "BodyTooLarge", f"request body over {self.s.max_body_bytes} bytes")
            )
        if key is None:
            return self._refuse(
                None, Refusal(404, "UnknownService", f"no InferenceService for host {request.host!r}")
            )
        keepalive = self._keepalive(request, key, body)
        early: web.StreamResponse | None = None  # the SSE response, once keep-alives started
        t0 = self.clock()
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                replica, early = await self._acquire(request, key, keepalive, early)
            except Refusal as r:
                return await self._refuse_late(key, r, early) if early else self._refuse(key, r)
            if attempt == 0:
                self.metrics.hold_seconds.labels(*key).observe(self.clock() - t0)
            try:
                return await self._forward(request, key, replica, body, early)
            except aiohttp.ClientConnectorError as e:
                self.hold.drop(key, replica)
                log.warning(
                    "replica unreachable",
                    extra={"object": f"{key[0]}/{key[1]}", "pod": replica.pod, "error": str(e)},
                )
        gone = Refusal(502, "ReplicaUnreachable", "no replica could be connected to")
        return await self._refuse_late(key, gone, early) if early else self._refuse(key, gone)

    async def _acquire(
        self, request: web.Request, key: Key, keepalive: bool, early: web.StreamResponse | None
    ) -> tuple[Replica, web.StreamResponse | None]:
        """A replica for this request, holding it as long as it takes (see the module docstring)."""
        task = asyncio.ensure_future(self.hold.acquire(key, self.s.hold_timeout_seconds))
        try:
            if keepalive:
                early = await self._keep_alive(request, key, task, early)
            return await task, early
        except QueueFull:
            eta = self.eta_s(key)
            raise Refusal(429, "QueueFull", f"{self.s.max_held_per_service} requests already wait for a replica of "
                          f"{key[0]}/{key[1]}; retry in {eta} s", {"Retry-After": str(eta)}) from None  # fmt: skip
        except HoldTimeout:
            raise Refusal(503, "HoldTimeout", f"no replica of {key[0]}/{key[1]} served within "
                          f"{self.s.hold_timeout_seconds:g} s") from None  # fmt: skip
        finally:
            if not task.done():
                task.cancel()  # the client left: the waiter leaves the queue at once

    async def _keep_alive(
        self, request: web.Request, key: Key, task: asyncio.Future[Replica], early: web.StreamResponse | None
    ) -> web.StreamResponse | None:
        done, _ = await asyncio.wait({task}, timeout=0.05)
        if done:  # not held (or refused at once): the replica's own response, status and all
            return early
        if early is None:
            early = web.StreamResponse(
                status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await early.prepare(request)
        while not task.done():
            await early.write(f": held, replica expected in {self.eta_s(key)} s\n\n".encode())
            await asyncio.wait({task}, timeout=self.s.keepalive_seconds)
        return early

    async def _forward(
        self, request: web.Request, key: Key, replica: Replica, body: bytes, early: web.StreamResponse | None
    ) -> web.StreamResponse:
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP and k != SERVICE_HEADER}
        url = f"http://{replica.address}{request.rel_url}"
        answered = False
        try:
            async with self.session.request(request.method, url, data=body, headers=headers) as up:
                answered = True
                self.metrics.forwarded.labels(*key, str(up.status)).inc()
                if early is not None:
                    await self._pipe_into_stream(up, early)
                    return early
                resp = web.StreamResponse(status=up.status, reason=up.reason)
                for k, v in up.headers.items():
                    if k.lower() not in HOP:
                        resp.headers.add(k, v)
                if up.content_length is not None:
                    resp.content_length = up.content_length
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        finally:
            self.hold.release(key, replica, answered)

    async def _pipe_into_stream(self, up: aiohttp.ClientResponse, resp: web.StreamResponse) -> None:
        if up.status != 200:  # the stream already said 200: the replica's error goes as an SSE event
            await resp.write(b"data: " + (await up.read()).replace(b"\n", b" ") + b"\n\n")
        else:
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
        await resp.write_eof()

    # ---- helpers ------------------------------------------------------------------------------

    def _keepalive(self, request: web.Request, key: Key, body: bytes) -> bool:
        opted = request.headers.get(KEEPALIVE_HEADER, "").lower() == "true"
        info = self.catalog.services.get(key)
        if not (opted or (info is not None and info.keepalive)):
            return False
        try:
            return bool(json.loads(body).get("stream"))
        except (ValueError, AttributeError):
            return False

    def _activation(self, key: Key) -> None:
        now = self.clock()
        self.activation_started[key] = now
        info = self.catalog.services.get(key)
        path = (info.start_path if info else None) or "unknown"
        self.metrics.activations.labels(*key).inc()
        log.info(
            "activation", extra={"object": f"{key[0]}/{key[1]}", "start_path": path, "eta_s": self.eta_s(key)}
        )

    def eta_s(self, key: Key) -> int:
        """Whole seconds until a replica is expected to serve (at least 1)."""
        info = self.catalog.services.get(key)
        ttr = (info.time_to_ready_s if info else None) or self.s.default_time_to_ready_seconds
        started = self.activation_started.get(key, self.clock())
        return max(1, math.ceil(ttr - (self.clock() - started)))

    def _refuse(self, key: Key | None, r: Refusal) -> web.Response:
        ns, name = key or ("", "")
        self.metrics.refused.labels(ns, name, str(r.code), r.reason).inc()
        log.info("refused", extra={"object": f"{ns}/{name}", "code": r.code, "reason": r.reason})
        return r.response()

    async def _refuse_late(self, key: Key, r: Refusal, resp: web.StreamResponse) -> web.StreamResponse:
        self.metrics.refused.labels(*key, str(r.code), r.reason).inc()
        await resp.write(b"data: " + json.dumps(r.body()).encode() + b"\n\n")
        await resp.write_eof()
        return resp
