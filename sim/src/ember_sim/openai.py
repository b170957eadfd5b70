"""vLLM's OpenAI-compatible API on a simulated replica's HTTP server (`ember-sim live --serve-http`).

Requests that arrive over HTTP go through the same queueing model as the replayed trace, on the
replica the caller chose (the activator, or a test talking to it directly): prompt tokens are the
prompt's characters / 4 (at least 1), output tokens are `max_tokens` (default 16). The answer
comes when the model says the request finished; with `"stream": true` it is streamed as vLLM
does, as SSE `data:` chunks while tokens are generated, then `data: [DONE]`. A replica removed
while the request is in it closes the connection without an answer, as a killed pod would.

Shapes follow vLLM's OpenAI server: `text_completion` / `chat.completion(.chunk)` objects, and the
error shape `{"error": {"message", "type", "param", "code"}}` for malformed JSON (400) and an
unknown model (404). Text is filler ("tok tok ..."): the simulator models time, not language.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from ember_sim.fleet import Fleet
from ember_sim.records import Outcome, Request, RequestRecord

POLL_S = 0.01


def error(code: int, kind: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class OpenAIFront:
    """Binds one replica of the fleet to HTTP; `lock` is the live runner's."""

    fleet: Fleet
    replica_id: str
    lock: threading.Lock
    now: Callable[[], float]
    served_names: tuple[str, ...]

    def handle(self, h: BaseHTTPRequestHandler, path: str, body: bytes | None) -> None:
        if path == "/health":
            return _send(h, 200, b"", "text/plain")
        if path == "/v1/models" and body is None:
            data = [
                {"id": n, "object": "model", "owned_by": "vllm", "root": n} for n in self.served_names[:1]
            ]
            return _json(h, 200, {"object": "list", "data": data})
        if path not in ("/v1/completions", "/v1/chat/completions") or body is None:
            return _json(h, 404, {"detail": "Not Found"})  # FastAPI's answer to an unknown route
        try:
            req = json.loads(body)
            assert isinstance(req, dict)
        except (ValueError, AssertionError):
            return _json(h, 400, error(400, "BadRequestError", "Expecting value: malformed JSON body"))
        if req.get("model") not in self.served_names:
            msg = f"The model `{req.get('model')}` does not exist."
            return _json(h, 404, error(404, "NotFoundError", msg, "model"))
        self._serve(h, path, req)

    def _serve(self, h: BaseHTTPRequestHandler, path: str, req: dict[str, Any]) -> None:
        chat = path.endswith("chat/completions")
        text = json.dumps(req.get("messages")) if chat else str(req.get("prompt", ""))
        out = max(1, int(req.get("max_tokens") or 16))
        rid = f"http-{uuid.uuid4().hex[:12]}"
        with self.lock:
            r = Request(rid, max(self.now(), self.fleet.now_s), max(1, len(text) // 4), out)
            self.fleet.submit_to(self.replica_id, r)
        if req.get("stream"):
            self._stream(h, rid, chat, req["model"], out)
            return
        rec = self._wait(rid)
        if rec is None or not rec.ok:
            h.close_connection = True  # gone with its replica: no answer, as from a killed pod
            return
        _json(h, 200, _final(rid, chat, req["model"], out))

    def _record(self, rid: str) -> RequestRecord | None:
        slot = self.fleet.slots.get(self.replica_id)
        if slot is None:
            return None
        for rec in reversed(slot.replica.records[-256:]):
            if rec.request.id == rid:
                return rec
        return next((x for x in slot.replica.records if x.request.id == rid), None)

    def _wait(self, rid: str) -> RequestRecord | None:
        while True:
            with self.lock:
                rec = self._record(rid)
                gone = self.fleet.slots[self.replica_id].removed_s is not None
            if rec is not None or gone:
                return rec
            time.sleep(POLL_S)

    def _tokens(self, rid: str) -> tuple[int, RequestRecord | None]:
        """(tokens generated so far, the record once finished), under the lock."""
        with self.lock:
            rec = self._record(rid)
            rep = self.fleet.slots[self.replica_id].replica
            seq = rep._decoding.get(rid)  # the model's own progress: one token per step
            n = 0 if seq is None else min(seq.req.output_tokens, 1 + rep._steps - seq.first_step)
            if rec is None and self.fleet.slots[self.replica_id].removed_s is not None:
                rec = RequestRecord(Request(rid, 0.0, 1, 1), self.replica_id, Outcome.REPLICA_REMOVED, 0.0)
        return n, rec

    def _stream(self, h: BaseHTTPRequestHandler, rid: str, chat: bool, model: str, out: int) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream; charset=utf-8")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        sent = 0
        while True:
            n, rec = self._tokens(rid)
            if rec is not None:
                if not rec.ok:
                    h.close_connection = True
                    return
                n = out
            if n > sent:
                h.wfile.write(b"data: " + json.dumps(_chunk(rid, chat, model, n - sent)).encode() + b"\n\n")
                h.wfile.flush()
                sent = n
            if rec is not None:
                h.wfile.write(
                    b"data: " + json.dumps(_chunk(rid, chat, model, 0, "length")).encode() + b"\n\n"
                )
                h.wfile.write(b"data: [DONE]\n\n")
                h.wfile.flush()
                return
            time.sleep(POLL_S)


def _final(rid: str, chat: bool, model: str, out: int) -> dict[str, Any]:
    text = " ".join(["tok"] * out)
    choice: dict[str, Any] = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
        if chat
        else {"index": 0, "text": text, "logprobs": None, "finish_reason": "length", "stop_reason": None}
    )
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{rid}", "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()), "model": model, "choices": [choice],
        "usage": {"completion_tokens": out},
    }  # fmt: skip


def _chunk(rid: str, chat: bool, model: str, tokens: int, finish: str | None = None) -> dict[str, Any]:
    text = " tok" * tokens
    choice: dict[str, Any] = (
        {"index": 0, "delta": {"content": text} if tokens else {}, "finish_reason": finish}
        if chat
        else {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    )
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{rid}", "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()), "model": model, "choices": [choice],
    }  # fmt: skip


def _send(h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
    h.send_response(code)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def _json(h: BaseHTTPRequestHandler, code: int, obj: dict[str, Any]) -> None:
    _send(h, code, json.dumps(obj).encode(), "application/json")
